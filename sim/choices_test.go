package sim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
)

// benchLike returns scenarios shaped like package bench's: members of
// capacity 4 with exp(10ms) work at 800 req/s, the bench's p99 floor
// being one member alone at half load.
func benchLike() []Scenario {
	ms := 10 * time.Millisecond
	exp := Dist{Mean: ms}
	slow := Homogeneous(4)
	slow[3].Slowdown = 10
	rare := Dist{Kind: RareSlow, Mean: ms, TailFactor: 50, TailProb: 0.005}
	slow16 := Homogeneous(16)
	slow16[5].Slowdown = 10
	slow16[9].Slowdown = 3
	return []Scenario{
		{Name: "floor", Members: Homogeneous(1), Service: exp, Load: 0.5, Requests: 4000},
		{Name: "slow", Members: slow, Service: exp, Load: 800.0 / 1240, Requests: 16000},
		{Name: "slow-32", Members: slow, Service: exp, Load: 800.0 / 1240, Requests: 16000, Directors: 32},
		{Name: "rare-slow", Members: Homogeneous(4), Service: rare, Load: 800 / (16e9 / rare.MeanWork()), Requests: 16000},
		{Name: "slow-16x8", Members: slow16, Service: exp, Load: 0.75, Requests: 30000, Directors: 8},
	}
}

// meanP99 runs sc under p with three seeds and returns the mean p99 in ms.
func meanP99(t *testing.T, sc Scenario, p balance.Policy) float64 {
	t.Helper()
	var sum float64
	for seed := uint64(1); seed <= 3; seed++ {
		r, err := RunPolicy(sc, p, seed)
		if err != nil {
			t.Fatal(err)
		}
		sum += float64(r.P99) / float64(time.Millisecond)
	}
	return sum / 3
}

// TestChoicesAndCost compares, in bench-like scenarios, the default p2c
// (compare every member up to 16, EWMA cost) with two random choices and
// with Finagle's peak EWMA, and checks the choices the defaults encode.
func TestChoicesAndCost(t *testing.T) {
	type variant struct {
		name string
		pol  balance.Policy
		peak bool
	}
	vs := []variant{
		{"default (scan, EWMA)", policy.P2C{}, false},
		{"2 choices, EWMA", policy.P2C{Choices: 2}, false},
		{"scan, peak EWMA", policy.P2C{}, true},
		{"2 choices, peak EWMA", policy.P2C{Choices: 2}, true},
	}
	scs := benchLike()
	res := map[string]map[string]float64{}
	var b strings.Builder
	fmt.Fprintf(&b, "%-22s", "mean p99 ms (3 seeds)")
	for _, sc := range scs {
		fmt.Fprintf(&b, " %10s", sc.Name)
	}
	b.WriteString("\n")
	for _, v := range vs {
		res[v.name] = map[string]float64{}
		fmt.Fprintf(&b, "%-22s", v.name)
		for _, sc := range scs {
			sc.Director.PeakEWMA = v.peak
			p := meanP99(t, sc, v.pol)
			res[v.name][sc.Name] = p
			fmt.Fprintf(&b, " %10.1f", p)
		}
		b.WriteString("\n")
	}
	t.Log("\n" + b.String())
	def := res["default (scan, EWMA)"]
	for _, sc := range []string{"slow", "slow-32", "slow-16x8"} {
		for _, other := range []string{"2 choices, EWMA", "scan, peak EWMA", "2 choices, peak EWMA"} {
			if def[sc] > res[other][sc] {
				t.Errorf("%s: default p99 %.1f ms > %s %.1f ms", sc, def[sc], other, res[other][sc])
			}
		}
	}
}
