package balance

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// BudgetConfig tunes a retry Budget. The zero value of each field means the
// default beside it.
type BudgetConfig struct {
	// Ratio is the share of requests that may be retried or hedged: each
	// request deposits Ratio tokens and each retry or hedge withdraws one.
	// Default 0.2, so retries add at most 20% to the offered load in steady
	// state. Range (0, 10].
	Ratio float64
	// MinPerSecond tokens are added every second regardless of traffic, so a
	// director with little traffic can still retry. Default 2.
	MinPerSecond float64
	// Burst caps the tokens saved up. Default 20.
	Burst float64
}

func (c BudgetConfig) withDefaults() BudgetConfig {
	if c.Ratio == 0 {
		c.Ratio = 0.2
	}
	if c.MinPerSecond == 0 {
		c.MinPerSecond = 2
	}
	if c.Burst == 0 {
		c.Burst = 20
	}
	return c
}

// Validate reports the first field outside its range.
func (c BudgetConfig) Validate() error {
	bad := func(v float64) bool { return v < 0 || math.IsNaN(v) || math.IsInf(v, 0) }
	switch {
	case bad(c.Ratio) || c.Ratio > 10:
		return fmt.Errorf("budget: Ratio %v must be in (0, 10]", c.Ratio)
	// Tokens are counted in int64 micro-tokens, hence the upper bounds.
	case bad(c.MinPerSecond) || c.MinPerSecond > maxTokens:
		return fmt.Errorf("budget: MinPerSecond %v must be in [0, 1e9]", c.MinPerSecond)
	case bad(c.Burst) || c.Burst > maxTokens:
		return fmt.Errorf("budget: Burst %v must be in [0, 1e9]", c.Burst)
	}
	return nil
}

// Budget is a token bucket that bounds retries and hedges so that a
// brown-out never becomes a retry storm (Finagle's RetryBudget, gRPC's retry
// throttling). It is lock-free and safe for concurrent use; time is passed in.
type Budget struct {
	ratio, perSec, burst int64 // in micro-tokens
	tokens               atomic.Int64
	last                 atomic.Int64
}

const (
	microToken = 1_000_000
	maxTokens  = 1e9
)

// NewBudget returns a full Budget; cfg must be valid.
func NewBudget(cfg BudgetConfig, now int64) *Budget {
	cfg = cfg.withDefaults()
	b := &Budget{
		ratio: int64(cfg.Ratio * microToken),
		burst: int64(cfg.Burst * microToken),
	}
	b.perSec = int64(cfg.MinPerSecond * microToken)
	b.tokens.Store(b.burst)
	b.last.Store(now)
	return b
}

func (b *Budget) add(delta int64) {
	for {
		t := b.tokens.Load()
		n := min(t+delta, b.burst)
		if n == t || b.tokens.CompareAndSwap(t, n) {
			return
		}
	}
}

func (b *Budget) refill(now int64) {
	last := b.last.Load()
	dt := now - last
	if dt <= 0 {
		return
	}
	delta := float64(dt) / float64(time.Second) * float64(b.perSec)
	credit := int64(min(delta, float64(b.burst))) // capped: no overflow after a long idle time
	if credit < 1 {
		return
	}
	// Consume only the time that earned whole micro-tokens and leave the
	// rest for a later call: with calls a few hundred ns apart, each refill
	// would otherwise round most of its share away.
	next := now
	if delta < float64(b.burst) {
		next = min(now, last+int64(float64(credit)/float64(b.perSec)*float64(time.Second)))
	}
	if !b.last.CompareAndSwap(last, next) {
		return
	}
	b.add(credit)
}

// Deposit records one first attempt.
func (b *Budget) Deposit(now int64) {
	b.refill(now)
	b.add(b.ratio)
}

// Withdraw takes one token for a retry or hedge and reports whether one was
// available.
func (b *Budget) Withdraw(now int64) bool {
	b.refill(now)
	for {
		t := b.tokens.Load()
		if t < microToken {
			return false
		}
		if b.tokens.CompareAndSwap(t, t-microToken) {
			return true
		}
	}
}

// Tokens returns the tokens available now, for stats.
func (b *Budget) Tokens() float64 { return float64(b.tokens.Load()) / microToken }
