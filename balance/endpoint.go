package balance

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/smartclient/smartclient/wire"
)

// Member is the immutable description of one server of the service.
type Member struct {
	// URL identifies the member and says how to reach it, e.g.
	// "http://10.0.0.1:8080". Two members with the same URL are the same member.
	URL string
	// Weight is the member's static capacity, bandwidth or proximity weight;
	// 0 means 1. Only the weighted policies read it.
	Weight float64
	// Zone names the member's locality (rack, data centre, region); empty
	// means unknown. The locality policy prefers the director's own zone.
	Zone string
}

// weight returns the member's weight with the zero default applied.
func (m Member) weight() float64 {
	if m.Weight > 0 {
		return m.Weight
	}
	return 1
}

// Endpoint is a Member plus the live statistics the director keeps about it.
// Pickers read it concurrently through its accessor methods, which are
// lock-free; only the Balancer writes it.
type Endpoint struct {
	Member Member

	inflight atomic.Int64
	// heard is when the member last showed life while busy: the pick that
	// made it busy (0 → 1 in flight) or the last attempt that ended. -1:
	// unknown (made busy by Acquire, which has no time), read as "just now".
	heard atomic.Int64

	// Peak-EWMA latency (Finagle, Linkerd): the cost jumps to any sample above
	// it and decays towards newer samples, and towards zero while the member
	// is idle, with time constant tau. Read lock-free; written under mu.
	costBits  atomic.Uint64 // float64 nanoseconds
	costStamp atomic.Int64  // time of the last update

	// The last load the member reported about itself.
	others      atomic.Int64  // requests at the member from other clients at report time
	utilBits    atomic.Uint64 // float64 utilisation
	loadExpires atomic.Int64  // report is ignored at or after this time; 0 = none
	capacity    atomic.Int64

	// Counters for stats pages; never read on the pick path.
	picks     atomic.Uint64
	successes atomic.Uint64
	failures  atomic.Uint64

	mu       sync.Mutex // serialises writers of the fields above and health
	health   health
	measured bool // a latency sample has replaced the initial guess; guarded by mu
	draining bool // guarded by mu
	lastLoad wire.Load
}

func newEndpoint(m Member, initialCost float64) *Endpoint {
	e := &Endpoint{Member: m}
	e.costBits.Store(math.Float64bits(initialCost))
	return e
}

// inherit copies what the balancer learned about old, the endpoint of the
// same URL in the previous member list, into e, which no one else sees yet.
// In-flight counts stay with old: those attempts end with Done on old.
func (e *Endpoint) inherit(old *Endpoint) {
	old.mu.Lock()
	defer old.mu.Unlock()
	e.costBits.Store(old.costBits.Load())
	e.costStamp.Store(old.costStamp.Load())
	e.others.Store(old.others.Load())
	e.utilBits.Store(old.utilBits.Load())
	e.loadExpires.Store(old.loadExpires.Load())
	e.capacity.Store(old.capacity.Load())
	e.picks.Store(old.picks.Load())
	e.successes.Store(old.successes.Load())
	e.failures.Store(old.failures.Load())
	e.health = old.health
	e.measured = old.measured
	e.draining = old.draining
	e.lastLoad = old.lastLoad
}

// InFlight is the number of requests this director has outstanding at the member.
func (e *Endpoint) InFlight() int64 { return e.inflight.Load() }

// Silence is how long the member has had work in flight without any of
// it ending (nanoseconds; 0 when idle or unknown). A member whose replies
// stopped coming — slow to its first reply, hung, black-holed — shows it
// here before any reply could raise its cost.
func (e *Endpoint) Silence(now int64) int64 {
	if e.inflight.Load() <= 0 {
		return 0
	}
	h := e.heard.Load()
	if h < 0 || now <= h {
		return 0
	}
	return now - h
}

// Cost is the member's peak-EWMA latency in nanoseconds, decayed to now.
func (e *Endpoint) Cost(now int64, tau float64) float64 {
	c := math.Float64frombits(e.costBits.Load())
	if dt := now - e.costStamp.Load(); dt > 0 && tau > 0 {
		c *= math.Exp(-float64(dt) / tau)
	}
	return c
}

// ReportedOthers is the number of requests other clients had at the member
// when it last reported, or 0 when no fresh report exists.
func (e *Endpoint) ReportedOthers(now int64) int64 {
	if now >= e.loadExpires.Load() {
		return 0
	}
	return e.others.Load()
}

// ReportedUtil is the member's last reported utilisation, or -1 when no
// fresh report exists.
func (e *Endpoint) ReportedUtil(now int64) float64 {
	if now >= e.loadExpires.Load() {
		return -1
	}
	return math.Float64frombits(e.utilBits.Load())
}

// Capacity is the member's last reported concurrency capacity, 0 if unknown.
func (e *Endpoint) Capacity() int64 { return e.capacity.Load() }

// observe folds one latency sample into the peak EWMA. Caller holds e.mu.
func (e *Endpoint) observe(now int64, rtt float64, tau float64) {
	prev := e.Cost(now, tau)
	c := rtt
	if !e.measured {
		// The first sample replaces the initial guess outright: blending
		// towards it would take dozens of replies per member.
		e.measured = true
	} else if rtt < prev {
		w := 0.0
		if dt := now - e.costStamp.Load(); dt > 0 && tau > 0 {
			w = 1 - math.Exp(-float64(dt)/tau)
		}
		// A sample arriving at the same instant still moves the estimate a
		// little, so that a burst of fast replies lowers a stale peak.
		w = math.Max(w, 1.0/16)
		c = prev + w*(rtt-prev)
	}
	e.costBits.Store(math.Float64bits(c))
	e.costStamp.Store(now)
}

// EndpointStats is a point-in-time copy of an endpoint's statistics.
type EndpointStats struct {
	Member    Member
	State     State
	InFlight  int64
	CostNanos float64
	Picks     uint64
	Successes uint64
	Failures  uint64
	Ejections int
	LastLoad  wire.Load
}

// State is a member's eligibility as the failure detector sees it.
type State uint8

const (
	// Healthy members receive work.
	Healthy State = iota
	// Probing members were ejected and are being readmitted: they receive
	// work again, but one more failure ejects them for longer.
	Probing
	// Ejected members receive no work until their ejection ends (unless the
	// panic threshold is crossed).
	Ejected
	// Draining members said they are stopping: no new work, not a failure.
	Draining
)

func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Probing:
		return "probing"
	case Ejected:
		return "ejected"
	case Draining:
		return "draining"
	}
	return "unknown"
}
