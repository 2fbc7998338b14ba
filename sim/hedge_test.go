package sim

import (
	"fmt"
	"testing"

	"github.com/smartclient/smartclient/balance/policy"
)

// TestHedging: with hedging on, the books still balance in every standard
// scenario, with request-sized or member-drawn service times (each request
// ends once; attempts = requests + retries + hedges at most; hedges and
// retries stay within the retry budget), and where service times vary
// with the member, hedging cuts the tail.
//
// Where the request carries its work to every member (the default), a
// hedge only duplicates it: in the bench-like scenarios p99 rose (rare
// slow: 67 → 323 ms), which is why the comparison below uses PerAttempt.
func TestHedging(t *testing.T) {
	t.Parallel()
	for _, sc := range Scenarios(4000) {
		for _, per := range []bool{false, true} {
			sc.Director.Hedge.Enabled = true
			sc.Service.PerAttempt = per
			r := run(t, sc, "p2c", 5)
			name := fmt.Sprintf("%s (per-attempt %v)", sc.Name, per)
			if r.Succeeded+r.Failed+r.Unfinished != r.Offered {
				t.Errorf("%s: %d succeeded + %d failed + %d unfinished != %d offered", name, r.Succeeded, r.Failed, r.Unfinished, r.Offered)
			}
			if r.Attempts < r.Offered || r.Attempts > r.Offered+r.Retries+r.Hedges {
				t.Errorf("%s: %d attempts for %d requests, %d retries and %d hedges", name, r.Attempts, r.Offered, r.Retries, r.Hedges)
			}
			// The default budget: 20% of requests plus a small reserve.
			if r.Hedges+r.Retries > r.Offered/5+100 {
				t.Errorf("%s: %d hedges + %d retries for %d requests: over the 20%% budget", name, r.Hedges, r.Retries, r.Offered)
			}
			if r.Hedges > r.Offered {
				t.Errorf("%s: %d hedges for %d requests", name, r.Hedges, r.Offered)
			}
		}
	}

	// Where service times vary with the member (PerAttempt), a hedge lands
	// on a fresh draw elsewhere and cuts the tail: bench-like scenarios,
	// seed 1, p99.9 with and without hedging.
	for _, sc := range benchLike() {
		if sc.Name != "slow" && sc.Name != "rare-slow" {
			continue
		}
		sc.Service.PerAttempt = true
		plain, err := RunPolicy(sc, policy.P2C{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		sc.Director.Hedge.Enabled = true
		hedged, err := RunPolicy(sc, policy.P2C{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: p99 %v → %v, p99.9 %v → %v with hedging (%d hedges of %d requests)",
			sc.Name, plain.P99, hedged.P99, plain.P999, hedged.P999, hedged.Hedges, hedged.Offered)
		if plain.Hedges != 0 || hedged.Hedges == 0 {
			t.Fatalf("%s: %d hedges with hedging off, %d with it on", sc.Name, plain.Hedges, hedged.Hedges)
		}
		want := 0.8 // slow: 93 → 60 ms measured
		if sc.Name == "rare-slow" {
			want = 0.5 // 500 → 52 ms measured: the 500 ms replies are hedged away
		}
		if float64(hedged.P999) > want*float64(plain.P999) {
			t.Errorf("%s: p99.9 %v with hedging, %v without; want at most %.1f×", sc.Name, hedged.P999, plain.P999, want)
		}
		if hedged.Failed != 0 {
			t.Errorf("%s: %d failed with hedging", sc.Name, hedged.Failed)
		}
	}
}
