package cert

import (
	"testing"
	"time"

	"github.com/smartclient/smartclient/wire"
)

func BenchmarkVerify(b *testing.B) {
	key := testKey(1)
	data := mustSign(b, testCert(), key)
	trust := trustFor(b, "chat", key)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(data, chat, trust, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRotated(b *testing.B) {
	old, cur := testKey(1), testKey(2)
	e, err := Endorse(old, pubOf(cur), "chat", t0.Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	c := testCert()
	c.Endorsements = []Endorsement{e}
	data := mustSign(b, c, cur)
	trust := trustFor(b, "chat", old)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(data, chat, trust, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// The director calls AcceptMembers for every reply that carries a
// membership record.
func BenchmarkAcceptMembers(b *testing.B) {
	accept := allowCert().DirectorConfig().AcceptMembers
	rec := wire.Members{Epoch: 8, Members: []wire.Member{
		{URL: "http://10.0.0.1:8080"}, {URL: "http://10.0.3.4:8080"}, {URL: "http://a.svc.example.com"},
	}}
	b.ReportAllocs()
	for b.Loop() {
		if err := accept(rec); err != nil {
			b.Fatal(err)
		}
	}
}
