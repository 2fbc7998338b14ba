package balance_test

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
)

func TestBudgetValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg balance.BudgetConfig
		ok  bool
	}{
		{balance.BudgetConfig{}, true},
		{balance.BudgetConfig{Ratio: 10, MinPerSecond: 1e6, Burst: 1e6}, true},
		{balance.BudgetConfig{Ratio: 10.1}, false},
		{balance.BudgetConfig{Ratio: -1}, false},
		{balance.BudgetConfig{Ratio: math.NaN()}, false},
		{balance.BudgetConfig{MinPerSecond: -1}, false},
		{balance.BudgetConfig{MinPerSecond: math.Inf(1)}, false},
		{balance.BudgetConfig{Burst: -1}, false},
		{balance.BudgetConfig{Burst: math.NaN()}, false},
		{balance.BudgetConfig{Burst: 1e9, MinPerSecond: 1e9}, true},
		{balance.BudgetConfig{Burst: 1e300}, false}, // would overflow the micro-token count
		{balance.BudgetConfig{MinPerSecond: 1e19}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}

// TestBudgetSteadyState: however many retries are attempted, the number
// granted never exceeds Ratio per request plus the burst plus the floor
// refill over the elapsed time; and it reaches that bound (less one token
// of rounding), so the budget is not just refusing everything.
func TestBudgetSteadyState(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  balance.BudgetConfig
		n    int
		step time.Duration // between requests
	}{
		{"defaults", balance.BudgetConfig{}, 10000, time.Millisecond},
		{"ratio 0.1, tiny floor", balance.BudgetConfig{Ratio: 0.1, MinPerSecond: 1e-9, Burst: 5}, 5000, time.Millisecond},
		{"ratio 1", balance.BudgetConfig{Ratio: 1, MinPerSecond: 1e-9, Burst: 1}, 1000, time.Microsecond},
		{"floor dominates", balance.BudgetConfig{Ratio: 0.001, MinPerSecond: 10, Burst: 3}, 2000, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			b := balance.NewBudget(cfg, 0)
			if cfg.Ratio == 0 {
				cfg.Ratio, cfg.MinPerSecond, cfg.Burst = 0.2, 2, 20
			}
			if got := b.Tokens(); got != cfg.Burst {
				t.Fatalf("a new budget has %v tokens, want the burst %v", got, cfg.Burst)
			}
			now := int64(0)
			granted := 0
			for range tc.n {
				now += int64(tc.step)
				b.Deposit(now)
				for b.Withdraw(now) { // unlimited retry attempts
					granted++
				}
			}
			elapsed := float64(now) / float64(time.Second)
			bound := cfg.Ratio*float64(tc.n) + cfg.Burst + cfg.MinPerSecond*elapsed
			if float64(granted) > bound {
				t.Fatalf("granted %d retries for %d requests, bound %.1f", granted, tc.n, bound)
			}
			if float64(granted) < bound-1.5 {
				t.Fatalf("granted only %d retries for %d requests, bound %.1f", granted, tc.n, bound)
			}
			if tok := b.Tokens(); tok < 0 || tok >= 1 {
				t.Fatalf("%v tokens left after unlimited withdrawals", tok)
			}
		})
	}
}

// TestBudgetRefill: MinPerSecond tokens arrive per second without traffic,
// up to Burst, and it does not matter how often the budget is looked at.
func TestBudgetRefill(t *testing.T) {
	cfg := balance.BudgetConfig{Ratio: 0.01, MinPerSecond: 2, Burst: 10}
	b := balance.NewBudget(cfg, 0)
	for b.Withdraw(0) {
	}
	if b.Withdraw(0) {
		t.Fatal("withdrew from an empty budget")
	}
	// Half a second: one token.
	if !b.Withdraw(int64(500 * time.Millisecond)) {
		t.Fatal("no token after 0.5s at 2/s")
	}
	if b.Withdraw(int64(500 * time.Millisecond)) {
		t.Fatal("two tokens after 0.5s at 2/s")
	}
	// A long idle period fills up to the burst, no more.
	now := int64(time.Hour)
	n := 0
	for b.Withdraw(now) {
		n++
	}
	if n != 10 {
		t.Fatalf("after an hour: %d tokens, want the burst of 10", n)
	}
	// Frequent calls refill as fast as rare ones: 10000 calls 400ns apart
	// (each worth 0.8 micro-tokens at 2/s) add 0.008 tokens.
	fine := balance.NewBudget(cfg, 0)
	for fine.Withdraw(0) {
	}
	for now := int64(400); now <= 10000*400; now += 400 {
		if fine.Withdraw(now) {
			t.Fatal("withdrew a token that cannot have arrived")
		}
	}
	if got := fine.Tokens(); math.Abs(got-0.008) > 2e-6 {
		t.Fatalf("4ms of calls 400ns apart refilled %.6f tokens, want 0.008", got)
	}
}

// TestBudgetConcurrent: under concurrent use the bound still holds exactly.
func TestBudgetConcurrent(t *testing.T) {
	cfg := balance.BudgetConfig{Ratio: 0.25, MinPerSecond: 1e-9, Burst: 4}
	b := balance.NewBudget(cfg, 0)
	var granted, deposits atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5000 {
				b.Deposit(int64(i))
				deposits.Add(1)
				for range 2 {
					if b.Withdraw(int64(i)) {
						granted.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	bound := cfg.Ratio*float64(deposits.Load()) + cfg.Burst + 1e-9*5000
	// Deposits that arrive while the bucket is full are lost, so the lower
	// bound is loose; the upper one is exact.
	if g := float64(granted.Load()); g > bound || g < 0.9*bound {
		t.Fatalf("granted %v, want at most %v and not much less", g, bound)
	}
}

// TestBudgetLimits: the largest valid settings do not overflow, however
// long the budget sits idle.
func TestBudgetLimits(t *testing.T) {
	b := balance.NewBudget(balance.BudgetConfig{Ratio: 10, MinPerSecond: 1e9, Burst: 1e9}, 0)
	for range 3 {
		b.Withdraw(math.MaxInt64 / 2)
		b.Deposit(math.MaxInt64)
	}
	if got := b.Tokens(); got < 1e9-3 || got > 1e9 {
		t.Fatalf("tokens %v, want about 1e9", got)
	}
}
