package balance

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/wire"
)

// Config tunes a Balancer. The zero value of each field means the default
// given beside it.
type Config struct {
	// Policy chooses members; required.
	Policy Policy
	// Health tunes the failure detector.
	Health HealthConfig
	// CostDecay is the time constant of the latency EWMA (the cost): how
	// fast sparse samples replace old ones and how fast an idle member's
	// cost decays towards zero. Default 10s (Finagle's).
	CostDecay time.Duration
	// PeakEWMA makes a latency sample above the cost replace it (Finagle's
	// and Linkerd's peak EWMA) instead of moving it 1/16 of the way.
	// Default off: a single slow reply then steers work away from a
	// healthy member for many replies (see Endpoint.observe).
	PeakEWMA bool
	// InitialCost is the latency assumed for a member never measured, so a
	// new member is neither flooded nor starved. Default 10ms.
	InitialCost time.Duration
	// LoadTTL is how long a member's reported load is believed. Default 2s.
	LoadTTL time.Duration
	// Zone is the director's own zone, for the locality policy.
	Zone string
}

func (c Config) withDefaults() Config {
	c.Health = c.Health.withDefaults()
	if c.CostDecay == 0 {
		c.CostDecay = 10 * time.Second
	}
	if c.InitialCost == 0 {
		c.InitialCost = 10 * time.Millisecond
	}
	if c.LoadTTL == 0 {
		c.LoadTTL = 2 * time.Second
	}
	return c
}

// Validate reports the first field outside its range.
func (c Config) Validate() error {
	if c.Policy == nil {
		return errors.New("balance: Config.Policy is required")
	}
	if c.CostDecay < 0 || c.InitialCost < 0 || c.LoadTTL < 0 {
		return errors.New("balance: CostDecay, InitialCost and LoadTTL must be >= 0")
	}
	return c.Health.Validate()
}

// Sentinel errors.
var (
	// ErrNoMembers: a member list was empty.
	ErrNoMembers = errors.New("balance: no members")
	// ErrBadMember: a member list had an empty or duplicate URL or a bad weight.
	ErrBadMember = errors.New("balance: invalid member")
)

// Snapshot is an immutable view of the members eligible for picks.
type Snapshot struct {
	// Endpoints are the members picks choose from.
	Endpoints []*Endpoint
	// Panic is set when so few members were eligible that every member,
	// ejected or not, was made eligible again.
	Panic  bool
	picker Picker
}

// Balancer keeps the member table and its statistics and picks members for
// attempts. All methods are safe for concurrent use; Pick is lock-free.
type Balancer struct {
	cfg Config
	env Env
	rnd Rand

	snap atomic.Pointer[Snapshot]

	mu    sync.Mutex // guards epoch, all, byURL and snapshot rebuilds
	epoch uint64
	all   []*Endpoint
	byURL map[string]*Endpoint
}

// New returns a Balancer over members (at epoch 0). r must be safe for
// concurrent use if the Balancer is shared between goroutines.
func New(cfg Config, members []Member, r Rand) (*Balancer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("balance: nil Rand")
	}
	cfg = cfg.withDefaults()
	b := &Balancer{
		cfg:   cfg,
		env:   Env{Tau: float64(cfg.CostDecay), Zone: cfg.Zone, Rand: r},
		rnd:   r,
		byURL: map[string]*Endpoint{},
	}
	if err := b.setMembers(members); err != nil {
		return nil, err
	}
	return b, nil
}

// Config returns the balancer's configuration with defaults applied.
func (b *Balancer) Config() Config { return b.cfg }

// Snapshot returns the current snapshot.
func (b *Balancer) Snapshot() *Snapshot { return b.snap.Load() }

// Epoch returns the membership epoch of the current member list.
func (b *Balancer) Epoch() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.epoch
}

// Pick chooses an endpoint for one attempt and counts the attempt as in
// flight. It returns nil only when every eligible endpoint is in in.Tried.
// The caller must call Done exactly once for every endpoint Pick returned.
func (b *Balancer) Pick(in *PickInput) *Endpoint {
	e := b.snap.Load().picker.Pick(in)
	if e != nil {
		if e.inflight.Add(1) == 1 {
			e.heard.Store(in.Now)
		}
		e.picks.Add(1)
	}
	return e
}

// Acquire counts an attempt on e that was chosen outside Pick (a probe, or
// a caller that pins a member). The caller must call Done once.
func (b *Balancer) Acquire(e *Endpoint) {
	if e.inflight.Add(1) == 1 {
		e.heard.Store(-1)
	}
}

// Hold keeps a successful attempt on e counted in flight after its Done,
// while the caller still reads the reply (a long download keeps the member
// busy long after its header arrived). It does not count as silence. Call
// Unhold once, when the reply has been read or abandoned.
func (b *Balancer) Hold(e *Endpoint) { e.held.Add(1) }

// Unhold ends a Hold: the reply was read to its end or abandoned at now.
func (b *Balancer) Unhold(e *Endpoint, now int64) {
	if e.held.Add(-1) < 0 {
		panic("balance: Unhold without Hold")
	}
	if e.inflight.Load() > 0 {
		e.heard.Store(now)
	}
}

// Outcome is how an attempt ended, as far as the member's health goes.
type Outcome uint8

const (
	// Success: the member answered.
	Success Outcome = iota
	// Failure: the member failed or did not answer; counts towards ejection.
	Failure
	// Abandoned: the attempt was cancelled by the caller or lost a hedge
	// race; says nothing about the member.
	Abandoned
)

// Done ends an attempt started by Pick or Acquire: rtt is its duration.
func (b *Balancer) Done(e *Endpoint, now int64, rtt time.Duration, o Outcome) {
	e.heard.Store(now)
	e.inflight.Add(-1)
	if o == Abandoned {
		// A cancelled attempt still tells us the member took at least this
		// long; only raise the cost, never lower it.
		e.mu.Lock()
		if float64(rtt) > e.Cost(now, b.env.Tau) {
			e.observe(now, float64(rtt), b.env.Tau, b.cfg.PeakEWMA)
		}
		e.mu.Unlock()
		return
	}
	e.mu.Lock()
	var changed bool
	if o == Success {
		e.successes.Add(1)
		e.observe(now, float64(rtt), b.env.Tau, b.cfg.PeakEWMA)
		changed = e.health.result(now, true, &b.cfg.Health, b.rnd)
	} else {
		e.failures.Add(1)
		// A fast failure (a refused connection) must not make the member
		// look fast; a slow one (a timeout) should make it look slow.
		if float64(rtt) > e.Cost(now, b.env.Tau) {
			e.observe(now, float64(rtt), b.env.Tau, b.cfg.PeakEWMA)
		}
		changed = e.health.result(now, false, &b.cfg.Health, b.rnd)
	}
	e.mu.Unlock()
	if changed {
		b.rebuild()
	}
}

// Report applies a load report that arrived on a reply from e, before that
// attempt's Done, or from a poll or a push. A member not yet measured by
// this balancer takes its reported service time (l=) as its cost. It reports whether the member knows a newer membership
// epoch than the balancer, so the caller may fetch the new member list.
func (b *Balancer) Report(e *Endpoint, now int64, l wire.Load) (newerEpoch bool) {
	// The member counted our own in-flight requests, including the one
	// carrying this reply; the rest came from other clients.
	others := int64(l.InFlight) - e.InFlight()
	if others < 0 {
		others = 0
	}
	e.mu.Lock()
	e.others.Store(others)
	e.utilBits.Store(math.Float64bits(l.Util))
	e.capacity.Store(int64(l.Capacity))
	e.loadExpires.Store(now + int64(b.cfg.LoadTTL))
	e.lastLoad = l
	if !e.measured && l.LatencyMicros > 0 {
		// Until we time the member ourselves, its own service time is a
		// better guess than the median of its peers: it comes from the
		// member rather than from members it may be nothing like. Our
		// first sample still replaces it outright.
		e.costBits.Store(math.Float64bits(float64(l.LatencyMicros) * 1e3))
		e.costStamp.Store(now)
	}
	drain := l.State == wire.StateDraining
	changed := drain != e.draining
	e.draining = drain
	e.mu.Unlock()
	if changed {
		b.rebuild()
	}
	b.mu.Lock()
	newer := l.Epoch > b.epoch
	b.mu.Unlock()
	return newer
}

// SetMembers replaces the member list with members at epoch. An update
// whose epoch is not newer than the current one is ignored and reported as
// false, so a stale view never overwrites a newer one. Endpoints whose URL
// survives keep their statistics.
func (b *Balancer) SetMembers(epoch uint64, members []Member) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if epoch <= b.epoch {
		return false, nil
	}
	if err := b.setMembersLocked(members); err != nil {
		return false, err
	}
	b.epoch = epoch
	return true, nil
}

// ReplaceMembers replaces the member list with members at epoch whatever
// the current epoch: for a source that outranks membership records, such as
// a newer signed certificate, which must win even over a record whose epoch
// a member inflated.
func (b *Balancer) ReplaceMembers(epoch uint64, members []Member) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.setMembersLocked(members); err != nil {
		return err
	}
	b.epoch = epoch
	return nil
}

func (b *Balancer) setMembers(members []Member) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.setMembersLocked(members)
}

// ValidateMembers checks a member list: non-empty, every URL non-empty and
// unique, every weight finite and non-negative.
func ValidateMembers(members []Member) error {
	if len(members) == 0 {
		return ErrNoMembers
	}
	seen := make(map[string]bool, len(members))
	for i, m := range members {
		switch {
		case m.URL == "":
			return fmt.Errorf("%w: member %d has an empty URL", ErrBadMember, i)
		case seen[m.URL]:
			return fmt.Errorf("%w: %q is listed twice", ErrBadMember, m.URL)
		case m.Weight < 0 || math.IsNaN(m.Weight) || math.IsInf(m.Weight, 0):
			return fmt.Errorf("%w: %q has weight %v; want a finite value >= 0", ErrBadMember, m.URL, m.Weight)
		}
		seen[m.URL] = true
	}
	return nil
}

func (b *Balancer) setMembersLocked(members []Member) error {
	if err := ValidateMembers(members); err != nil {
		return err
	}
	all := make([]*Endpoint, 0, len(members))
	byURL := make(map[string]*Endpoint, len(members))
	initial := b.typicalCostLocked()
	for _, m := range members {
		e := b.byURL[m.URL]
		if e == nil || e.Member != m {
			ne := newEndpoint(m, initial)
			if e != nil { // same URL, new weight or zone: keep what we learned
				ne.inherit(e)
			}
			e = ne
		}
		all = append(all, e)
		byURL[m.URL] = e
	}
	b.all, b.byURL = all, byURL
	b.rebuildLocked()
	return nil
}

// typicalCostLocked is the latency a member joining now is assumed to have:
// the median of the current members' measured costs, so that a newcomer is
// neither flooded (a guess far below its peers) nor starved (far above);
// InitialCost when nothing has been measured yet.
func (b *Balancer) typicalCostLocked() float64 {
	costs := make([]float64, 0, len(b.all))
	for _, e := range b.all {
		e.mu.Lock()
		if e.measured {
			costs = append(costs, math.Float64frombits(e.costBits.Load()))
		}
		e.mu.Unlock()
	}
	if len(costs) == 0 {
		return float64(b.cfg.InitialCost)
	}
	slices.Sort(costs)
	return costs[len(costs)/2]
}

func (b *Balancer) rebuild() {
	b.mu.Lock()
	b.rebuildLocked()
	b.mu.Unlock()
}

func (b *Balancer) rebuildLocked() {
	eligible := make([]*Endpoint, 0, len(b.all))
	live := make([]*Endpoint, 0, len(b.all)) // everything not draining
	for _, e := range b.all {
		e.mu.Lock()
		st, drain := e.health.state, e.draining
		e.mu.Unlock()
		if drain {
			continue
		}
		live = append(live, e)
		if st == Healthy || st == Probing {
			eligible = append(eligible, e)
		}
	}
	// Draining members left on purpose: they do not count towards the panic
	// threshold, or a rolling restart would readmit ejected members.
	panicMode := float64(len(eligible)) < b.cfg.Health.PanicThreshold*float64(len(live))
	switch {
	case len(live) == 0:
		// Every member is draining: better a draining member than none.
		eligible, panicMode = slices.Clone(b.all), true
	case panicMode || len(eligible) == 0:
		eligible, panicMode = live, true
	}
	b.snap.Store(&Snapshot{
		Endpoints: eligible,
		Panic:     panicMode,
		picker:    b.cfg.Policy.Build(eligible, b.env),
	})
}

// Tick applies the passage of time: ejections that have ended move members
// to Probing (readmitted with one strike) or, when activeProbe is set, are
// returned for the caller to probe and report with ProbeResult; they stay
// ineligible until then. next is the earliest time at which Tick has more to
// do, or 0 if nothing is pending.
func (b *Balancer) Tick(now int64, activeProbe bool) (probe []*Endpoint, next int64) {
	b.mu.Lock()
	all := b.all
	b.mu.Unlock()
	changed := false
	for _, e := range all {
		e.mu.Lock()
		if e.health.state == Ejected {
			if now >= e.health.until {
				if activeProbe {
					e.health.until = math.MaxInt64 // until ProbeResult
					probe = append(probe, e)
				} else {
					changed = e.health.expire(now) || changed
				}
			} else if e.health.until != math.MaxInt64 && (next == 0 || e.health.until < next) {
				// (MaxInt64 marks a probe in progress: nothing for Tick to do.)
				next = e.health.until
			}
		}
		e.mu.Unlock()
	}
	if changed {
		b.rebuild()
	}
	return probe, next
}

// ProbeResult applies the outcome of an active probe of e that Tick asked for.
func (b *Balancer) ProbeResult(e *Endpoint, now int64, ok bool) {
	e.mu.Lock()
	changed := e.health.probeResult(now, ok, &b.cfg.Health, b.rnd)
	e.mu.Unlock()
	if changed {
		b.rebuild()
	}
}

// Endpoints returns every member's endpoint, eligible or not.
func (b *Balancer) Endpoints() []*Endpoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.all)
}

// Stats returns a copy of every member's statistics at now. A change of a
// member's state shows here a moment before the pick set that reflects it
// is published (Snapshot).
func (b *Balancer) Stats(now int64) []EndpointStats {
	out := make([]EndpointStats, 0, 8)
	for _, e := range b.Endpoints() {
		e.mu.Lock()
		st := e.health.state
		if e.draining {
			st = Draining
		}
		s := EndpointStats{
			Member:    e.Member,
			State:     st,
			InFlight:  e.inflight.Load(),
			CostNanos: e.Cost(now, b.env.Tau),
			Picks:     e.picks.Load(),
			Successes: e.successes.Load(),
			Failures:  e.failures.Load(),
			Ejections: e.health.total,
			LastLoad:  e.lastLoad,
		}
		e.mu.Unlock()
		out = append(out, s)
	}
	return out
}
