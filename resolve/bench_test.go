package resolve_test

import (
	"testing"

	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/resolve"
)

// BenchmarkResolve measures the resolver's own overhead: three roots that
// answer at once, so nothing waits on a timer or the network.
func BenchmarkResolve(b *testing.B) {
	r := &resolve.Resolver{
		Roots:  roots(quick("a", certOf(1), nil), quick("b", certOf(3), nil), quick("c", tamper(certOf(4)), nil)),
		Verify: verifyChat,
		Clock:  clock.NewFake(epoch),
	}
	b.ReportAllocs()
	for b.Loop() {
		if res, err := r.Resolve(b.Context(), "chat"); err != nil || res.Version != 3 {
			b.Fatal(res.Version, err)
		}
	}
}

func BenchmarkDecodeTXT(b *testing.B) {
	parts := resolve.TXTStrings(padded(1, 4096))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := resolve.DecodeTXT(parts, 0); err != nil {
			b.Fatal(err)
		}
	}
}
