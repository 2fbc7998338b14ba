package sim

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/smartclient/smartclient/balance"
)

// DistKind names a service-time distribution.
type DistKind uint8

const (
	// Exponential service times with mean Dist.Mean.
	Exponential DistKind = iota
	// Constant service time Dist.Mean.
	Constant
	// HeavyTail is a two-phase hyperexponential: with probability
	// 1-TailProb an exponential with mean Mean, otherwise an exponential
	// with mean TailFactor×Mean (default 99% exp(1ms) + 1% exp(20ms)).
	HeavyTail
	// RareSlow is exponential with mean Mean, except that a share TailProb
	// of requests take exactly TailFactor×Mean: a GC pause, a cold cache, a
	// lock (bench's rare-slow members: 1% take 500 ms).
	RareSlow
)

func (k DistKind) String() string {
	switch k {
	case Exponential:
		return "exp"
	case Constant:
		return "const"
	case HeavyTail:
		return "heavy-tail"
	case RareSlow:
		return "rare-slow"
	}
	return "DistKind(" + strconv.Itoa(int(k)) + ")"
}

// Dist is the distribution of a request's work: its service time on a
// member with Slowdown 1. The work is drawn once, when the request arrives,
// so a big request is big on every member it is retried on, and every
// policy sees the same requests for the same seed.
type Dist struct {
	Kind DistKind
	// Mean is the mean of the exponential (or the constant); for HeavyTail
	// and RareSlow the mean of the common part. Default 1ms.
	Mean time.Duration
	// TailProb is HeavyTail's and RareSlow's share of tail requests. Default 0.01; range (0, 1).
	TailProb float64
	// TailFactor is how many times longer a tail request is (on average,
	// for HeavyTail).
	// Default 20; range [1, 1e6].
	TailFactor float64
	// PerAttempt draws every attempt's service time afresh, from its
	// member's own random stream, instead of letting the request carry one
	// work size to every member it is tried on: the variability then comes
	// from the member (a GC pause, a cold cache, a noisy neighbour), as in
	// package bench, and a hedge or retry elsewhere can be faster. With it,
	// policies no longer face identical request sizes, only identical
	// per-member sequences.
	PerAttempt bool
}

func (d Dist) withDefaults() Dist {
	if d.Mean == 0 {
		d.Mean = time.Millisecond
	}
	if d.TailProb == 0 {
		d.TailProb = 0.01
	}
	if d.TailFactor == 0 {
		d.TailFactor = 20
	}
	return d
}

// Validate reports the first field outside its range.
func (d Dist) Validate() error {
	switch {
	case d.Kind > RareSlow:
		return fmt.Errorf("sim: Dist.Kind %d unknown; want Exponential, Constant, HeavyTail or RareSlow", d.Kind)
	case d.Mean < 0:
		return fmt.Errorf("sim: Dist.Mean %v must be >= 0", d.Mean)
	case d.TailProb < 0 || d.TailProb >= 1 || math.IsNaN(d.TailProb):
		return fmt.Errorf("sim: Dist.TailProb %v must be in (0, 1)", d.TailProb)
	case d.TailFactor != 0 && !(d.TailFactor >= 1 && d.TailFactor <= 1e6):
		return fmt.Errorf("sim: Dist.TailFactor %v must be in [1, 1e6]", d.TailFactor)
	}
	return nil
}

// MeanWork is the distribution's mean in nanoseconds, defaults applied.
func (d Dist) MeanWork() float64 {
	d = d.withDefaults()
	m := float64(d.Mean)
	if d.Kind == HeavyTail || d.Kind == RareSlow {
		return (1-d.TailProb)*m + d.TailProb*d.TailFactor*m
	}
	return m
}

// FailMode is how a member fails during an Outage.
type FailMode uint8

const (
	// Down: the member's process is gone. Attempts that reach it are
	// refused (NotReached, always safe to retry) one network round trip
	// after they were sent; attempts it was serving or queueing when it went
	// down are reset (MaybeProcessed, retried only if idempotent).
	Down FailMode = iota
	// Hang: the member accepts connections but never answers. Attempts it
	// holds or receives get no reply and end at the attempt timeout.
	Hang
)

func (m FailMode) String() string {
	switch m {
	case Down:
		return "down"
	case Hang:
		return "hang"
	}
	return "FailMode(" + strconv.Itoa(int(m)) + ")"
}

// Outage is a period during which a member fails. From and To are
// fractions of the arrival window (0 = first arrival, 1 = last), so an
// outage stays in the middle of the run whatever Requests and Load are.
// The member comes back empty (its queue was lost) at To.
type Outage struct {
	From, To float64
	Mode     FailMode
}

// Member is one simulated server.
type Member struct {
	// Capacity is how many requests the member serves at once; more queue
	// FIFO at the member. Default 4.
	Capacity int
	// Slowdown multiplies every service time; 10 is a member ten times
	// slower than the rest. Default 1; range [0.01, 1e4].
	Slowdown float64
	// Zone is the member's locality; empty means none.
	Zone string
	// Outages lists periods of failure; they must not overlap.
	Outages []Outage
}

func (m Member) withDefaults() Member {
	if m.Capacity == 0 {
		m.Capacity = 4
	}
	if m.Slowdown == 0 {
		m.Slowdown = 1
	}
	return m
}

// Homogeneous returns n identical members with the default capacity and speed.
func Homogeneous(n int) []Member { return make([]Member, n) }

// Config is the part of director.Config the simulator models: every
// director in a scenario runs with it. The zero value of each field means
// the default given beside it, which is director.Config's except where
// noted.
type Config struct {
	// MaxAttempts bounds attempts per request, first try included. Default 3.
	MaxAttempts int
	// AttemptTimeout ends an attempt that has had no reply (the member keeps
	// working on it). Default 1s, unlike the director's none, so that hung
	// members cannot stall a run; negative means none.
	AttemptTimeout time.Duration
	// RetryBackoff is the pause before a new round once every eligible
	// member has been tried. Default 5ms.
	RetryBackoff time.Duration
	// TickInterval is how often each director readmits members whose
	// ejection ended. Default 50ms.
	TickInterval time.Duration
	// NonIdempotent makes requests non-idempotent: an attempt that timed out
	// or was reset is then not retried. Default: idempotent.
	NonIdempotent bool
	// Budget bounds retries; see balance.BudgetConfig.
	Budget balance.BudgetConfig
	// Health tunes ejection; see balance.HealthConfig.
	Health balance.HealthConfig
	// Hedge sends a second attempt to another member when an attempt of an
	// idempotent request is slower than a quantile of the director's recent
	// latency, as director.Config.Hedge does; the first success wins and
	// the others are abandoned. Off unless Hedge.Enabled.
	Hedge Hedge
	// CostDecay, PeakEWMA, InitialCost and LoadTTL: see balance.Config.
	CostDecay, InitialCost, LoadTTL time.Duration
	PeakEWMA                        bool
}

// Hedge mirrors director.HedgeConfig, with the same defaults.
type Hedge struct {
	Enabled bool
	// Quantile of recent attempt latency after which a hedge is sent.
	// Default 0.95; range (0, 1).
	Quantile float64
	// MinDelay is the shortest hedge delay. Default 1ms.
	MinDelay time.Duration
	// MinSamples is how many latencies the director must have seen before
	// it hedges. Default 50.
	MinSamples int
	// MaxHedges bounds hedges per request. Default 1; at most 8.
	MaxHedges int
}

func (h Hedge) withDefaults() Hedge {
	if h.Quantile == 0 {
		h.Quantile = 0.95
	}
	if h.MinDelay == 0 {
		h.MinDelay = time.Millisecond
	}
	if h.MinSamples == 0 {
		h.MinSamples = 50
	}
	if h.MaxHedges == 0 {
		h.MaxHedges = 1
	}
	return h
}

func (c Config) withDefaults() Config {
	c.Hedge = c.Hedge.withDefaults()
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = time.Second
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 5 * time.Millisecond
	}
	if c.TickInterval == 0 {
		c.TickInterval = 50 * time.Millisecond
	}
	return c
}

// Validate reports the first field outside its range.
func (c Config) Validate() error {
	switch {
	case c.MaxAttempts < 0 || c.MaxAttempts > 100:
		return fmt.Errorf("sim: Config.MaxAttempts %d must be in 1..100", c.MaxAttempts)
	case c.RetryBackoff < 0:
		return fmt.Errorf("sim: Config.RetryBackoff %v must be >= 0", c.RetryBackoff)
	case c.TickInterval < 0:
		return fmt.Errorf("sim: Config.TickInterval %v must be >= 0", c.TickInterval)
	case c.CostDecay < 0 || c.InitialCost < 0 || c.LoadTTL < 0:
		return errors.New("sim: Config.CostDecay, InitialCost and LoadTTL must be >= 0")
	case c.Hedge.Quantile < 0 || c.Hedge.Quantile >= 1 || math.IsNaN(c.Hedge.Quantile):
		return fmt.Errorf("sim: Config.Hedge.Quantile %v must be in (0, 1)", c.Hedge.Quantile)
	case c.Hedge.MinDelay < 0 || c.Hedge.MinSamples < 0:
		return errors.New("sim: Config.Hedge.MinDelay and MinSamples must be >= 0")
	case c.Hedge.MaxHedges < 0 || c.Hedge.MaxHedges > 8:
		return fmt.Errorf("sim: Config.Hedge.MaxHedges %d must be in 0..8", c.Hedge.MaxHedges)
	}
	if err := c.Budget.Validate(); err != nil {
		return err
	}
	return c.Health.Validate()
}

// Scenario is a cluster, a workload and the directors' configuration. The
// zero value of each field except Members means the default beside it.
type Scenario struct {
	// Name labels the scenario in results.
	Name string
	// Members are the servers; required, at most 100000.
	Members []Member
	// Service is the distribution of request work. Default exp(1ms).
	Service Dist
	// Load is the offered load as a fraction of the members' combined
	// capacity, Σ Capacity / (Service mean × Slowdown), outages ignored.
	// Default 0.7; range (0, 10].
	Load float64
	// Requests is the expected number of requests over the run; the arrival
	// window lasts Requests / rate. Default 50000; range 1..1e7.
	Requests int
	// Directors is the number of independent directors (clients), each with
	// its own Balancer, Budget and random streams and a 1/Directors share of
	// the load as its own open-loop Poisson process. Default 1; at most 10000.
	Directors int
	// DirectorZones, if set, places director i in zone DirectorZones[i%len].
	DirectorZones []string
	// Sessions is the number of distinct affinity keys requests carry
	// (uniformly); only the hash policy reads them. Default 10000.
	Sessions int
	// NetDelay is the one-way network delay between a director and a member.
	// Default 100µs.
	NetDelay time.Duration
	// CrossZoneDelay is added to NetDelay each way when director and member
	// are in different non-empty zones. Default 1ms.
	CrossZoneDelay time.Duration
	// Drain bounds how long after the arrival window the run continues for
	// requests to finish; requests still running then count as unfinished.
	// Default 60s.
	Drain time.Duration
	// Director configures every director.
	Director Config
}

func (s Scenario) withDefaults() Scenario {
	s.Service = s.Service.withDefaults()
	if s.Load == 0 {
		s.Load = 0.7
	}
	if s.Requests == 0 {
		s.Requests = 50000
	}
	if s.Directors == 0 {
		s.Directors = 1
	}
	if s.Sessions == 0 {
		s.Sessions = 10000
	}
	if s.NetDelay == 0 {
		s.NetDelay = 100 * time.Microsecond
	}
	if s.CrossZoneDelay == 0 {
		s.CrossZoneDelay = time.Millisecond
	}
	if s.Drain == 0 {
		s.Drain = 60 * time.Second
	}
	ms := make([]Member, len(s.Members))
	for i, m := range s.Members {
		ms[i] = m.withDefaults()
	}
	s.Members = ms
	s.Director = s.Director.withDefaults()
	return s
}

// Validate reports the first field outside its range.
func (s Scenario) Validate() error {
	switch {
	case len(s.Members) == 0:
		return errors.New("sim: Scenario.Members is empty")
	case len(s.Members) > 100000:
		return fmt.Errorf("sim: Scenario has %d members; at most 100000", len(s.Members))
	case !(s.Load >= 0 && s.Load <= 10):
		return fmt.Errorf("sim: Scenario.Load %v must be in (0, 10]", s.Load)
	case s.Requests < 0 || s.Requests > 1e7:
		return fmt.Errorf("sim: Scenario.Requests %d must be in 1..1e7", s.Requests)
	case s.Directors < 0 || s.Directors > 10000:
		return fmt.Errorf("sim: Scenario.Directors %d must be in 1..10000", s.Directors)
	case s.Sessions < 0:
		return fmt.Errorf("sim: Scenario.Sessions %d must be >= 1", s.Sessions)
	case s.NetDelay < 0 || s.CrossZoneDelay < 0 || s.Drain < 0:
		return errors.New("sim: Scenario.NetDelay, CrossZoneDelay and Drain must be >= 0")
	}
	if err := s.Service.Validate(); err != nil {
		return err
	}
	for i, m := range s.Members {
		switch {
		case m.Capacity < 0 || m.Capacity > 1<<20:
			return fmt.Errorf("sim: member %d: Capacity %d must be in 1..%d", i, m.Capacity, 1<<20)
		case m.Slowdown != 0 && !(m.Slowdown >= 0.01 && m.Slowdown <= 1e4):
			return fmt.Errorf("sim: member %d: Slowdown %v must be in [0.01, 1e4]", i, m.Slowdown)
		}
		for j, o := range m.Outages {
			switch {
			case !(o.From >= 0 && o.From < o.To && o.To <= 1):
				return fmt.Errorf("sim: member %d outage %d: want 0 <= From < To <= 1, got %v..%v", i, j, o.From, o.To)
			case o.Mode > Hang:
				return fmt.Errorf("sim: member %d outage %d: unknown mode %d", i, j, o.Mode)
			case j > 0 && o.From < m.Outages[j-1].To:
				return fmt.Errorf("sim: member %d outage %d overlaps or precedes the one before", i, j)
			}
		}
	}
	return s.Director.Validate()
}

// Capacity is the members' combined capacity in requests per second, as
// Load is measured against.
func (s Scenario) Capacity() float64 {
	s = s.withDefaults()
	mean := s.Service.MeanWork()
	var c float64
	for _, m := range s.Members {
		c += float64(m.Capacity) / (mean * m.Slowdown / float64(time.Second))
	}
	return c
}
