package director

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/wire"
)

// Config tunes a Director. The zero value of each field means the default
// given beside it; flags and files fill the same struct.
type Config struct {
	// Policy names the selection policy (see policy.Names). Default
	// policy.Default ("p2c").
	Policy string
	// PolicyImpl, if set, is used instead of Policy.
	PolicyImpl balance.Policy

	// MaxAttempts bounds attempts per request, first try included. Default
	// 3; 1 disables retries.
	MaxAttempts int
	// AttemptTimeout cancels one attempt that takes longer, so the request
	// can move on to another member. 0 means none: only the caller's context
	// bounds an attempt.
	AttemptTimeout time.Duration
	// RetryBackoff is the pause before a new round of attempts once every
	// eligible member has been tried; it doubles each round, with jitter.
	// Retries to an untried member do not wait. Default 5ms.
	RetryBackoff time.Duration

	// Hedge configures hedged requests for idempotent requests.
	Hedge HedgeConfig
	// Budget bounds retries and hedges together.
	Budget balance.BudgetConfig
	// Health tunes outlier ejection and the panic threshold.
	Health balance.HealthConfig

	// CostDecay, PeakEWMA, InitialCost, LoadTTL and Zone: see balance.Config.
	CostDecay   time.Duration
	PeakEWMA    bool
	InitialCost time.Duration
	LoadTTL     time.Duration
	Zone        string

	// TickInterval is how often the director readmits members whose ejection
	// ended and rotates statistics. Default 50ms.
	TickInterval time.Duration
	// Prober, if set, checks ejected members before they are readmitted.
	// Without it an ejected member is readmitted with one strike: its next
	// failure ejects it again for twice as long.
	Prober Prober
	// ProbeTimeout bounds one probe. Default 1s.
	ProbeTimeout time.Duration

	// Poller, if set, is asked for every member's load each PollInterval:
	// eager updates, for members that do not piggy-back load on replies.
	Poller LoadPoller
	// PollInterval is the time between polling rounds. Default 1s.
	PollInterval time.Duration

	// Epoch is the membership epoch of the members passed to New (from a
	// certificate or saved state), so that a record of the same epoch
	// piggy-backed on a reply is recognised as nothing new. Default 0.
	Epoch uint64

	// LearnMembers lets members replace the member list through membership
	// records piggy-backed on replies (the paper's lazy update). Default off:
	// a member could otherwise steer clients anywhere (see AcceptMembers).
	LearnMembers bool
	// AcceptMembers, if set, vets a membership record before it is applied,
	// e.g. by checking it against a signed service certificate. Returning an
	// error drops the record and counts it.
	AcceptMembers func(wire.Members) error

	// Classify maps an attempt's error to a Class. Default Classify.
	Classify func(error) Class
	// Clock is the time source. Default clock.Real.
	Clock clock.Clock
	// Rand is the randomness source; must be safe for concurrent use.
	// Default: math/rand/v2's global generator.
	Rand balance.Rand
}

// HedgeConfig tunes hedging: when an idempotent attempt is slower than a
// high percentile of recent latency, a second attempt goes to another
// member and the first reply wins; the loser is cancelled. Hedges draw on
// the same budget as retries.
type HedgeConfig struct {
	// Enabled turns hedging on. Default off.
	Enabled bool
	// Quantile of recent latency after which a hedge is sent. Default 0.95.
	Quantile float64
	// MinDelay is the shortest hedge delay. Default 1ms.
	MinDelay time.Duration
	// MinSamples is how many latencies must be seen before hedging starts.
	// Default 50.
	MinSamples int
	// MaxHedges bounds extra attempts in flight per request. Default 1.
	MaxHedges int
}

// Prober checks a member outside real traffic. Probe may block until ctx
// ends and returns nil when the member is fit for work.
type Prober interface {
	Probe(ctx context.Context, m balance.Member) error
}

func (c Config) withDefaults() Config {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 5 * time.Millisecond
	}
	if c.Hedge.Quantile == 0 {
		c.Hedge.Quantile = 0.95
	}
	if c.Hedge.MinDelay == 0 {
		c.Hedge.MinDelay = time.Millisecond
	}
	if c.Hedge.MinSamples == 0 {
		c.Hedge.MinSamples = 50
	}
	if c.Hedge.MaxHedges == 0 {
		c.Hedge.MaxHedges = 1
	}
	if c.TickInterval == 0 {
		c.TickInterval = 50 * time.Millisecond
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = time.Second
	}
	if c.Classify == nil {
		c.Classify = Classify
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Rand == nil {
		c.Rand = GlobalRand{}
	}
	return c
}

// Validate reports the first field outside its range.
func (c Config) Validate() error {
	if c.PolicyImpl == nil {
		if _, err := policy.New(c.Policy); err != nil {
			return err
		}
	}
	switch {
	case c.MaxAttempts < 0 || c.MaxAttempts > 100:
		return fmt.Errorf("director: MaxAttempts %d must be in 1..100", c.MaxAttempts)
	case c.AttemptTimeout < 0:
		return fmt.Errorf("director: AttemptTimeout %v must be >= 0", c.AttemptTimeout)
	case c.RetryBackoff < 0:
		return fmt.Errorf("director: RetryBackoff %v must be >= 0", c.RetryBackoff)
	case c.Hedge.Quantile < 0 || c.Hedge.Quantile >= 1 || math.IsNaN(c.Hedge.Quantile):
		return fmt.Errorf("director: Hedge.Quantile %v must be in (0, 1)", c.Hedge.Quantile)
	case c.Hedge.MinDelay < 0 || c.Hedge.MinSamples < 0:
		return errors.New("director: Hedge.MinDelay and Hedge.MinSamples must be >= 0")
	case c.Hedge.MaxHedges < 0 || c.Hedge.MaxHedges > 8:
		return fmt.Errorf("director: Hedge.MaxHedges %d must be in 1..8", c.Hedge.MaxHedges)
	case c.TickInterval < 0 || c.ProbeTimeout < 0 || c.PollInterval < 0:
		return errors.New("director: TickInterval, ProbeTimeout and PollInterval must be >= 0")
	}
	if err := c.Budget.Validate(); err != nil {
		return err
	}
	return c.Health.Validate()
}
