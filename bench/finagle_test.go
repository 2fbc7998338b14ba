package bench

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
)

type pcgRand struct{ r *rand.Rand }

func (p pcgRand) Uint64() uint64 { return p.r.Uint64() }

// TestFinagleP2C: the baseline compares two members by peak-EWMA cost ×
// (in flight + 1), so the worst of three is never picked, the best wins
// whenever drawn, and tried members are skipped.
func TestFinagleP2C(t *testing.T) {
	ms := []balance.Member{{URL: "http://a"}, {URL: "http://b"}, {URL: "http://c"}}
	bal, err := balance.New(balance.Config{Policy: finagleP2C{}, PeakEWMA: true}, ms, pcgRand{rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	eps := bal.Endpoints()
	now := int64(time.Second)
	for i, e := range eps {
		bal.Acquire(e)
		bal.Done(e, now, time.Duration(i+1)*time.Millisecond, balance.Success) // costs 1, 2, 3 ms
	}
	p := finagleP2C{}.Build(eps, balance.Env{Tau: float64(10 * time.Second)})
	in := &balance.PickInput{Now: now, Rand: pcgRand{rand.New(rand.NewPCG(3, 4))}}
	counts := map[string]int{}
	for range 3000 {
		counts[p.Pick(in).Member.URL]++
	}
	// Pairs {a,b},{a,c},{b,c} equally likely: a wins 2/3, b 1/3, c never.
	if counts["http://c"] != 0 || counts["http://a"] < 1800 || counts["http://b"] < 800 {
		t.Fatalf("picks %v, want a ≈ 2/3, b ≈ 1/3, c never", counts)
	}
	in.Tried = []*balance.Endpoint{eps[0]}
	for range 100 {
		if got := p.Pick(in); got == eps[0] {
			t.Fatal("picked a tried member")
		}
	}
}
