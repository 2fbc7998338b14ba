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

	inflight atomic.Int64 // attempts waiting for their reply
	// held counts replies this director is still reading (a download's
	// body): the member is still working for us, but not silent.
	held atomic.Int64
	// heard is when the member last showed life while busy: the pick that
	// made it busy (0 → 1 in flight) or the last attempt that ended. -1:
	// unknown (made busy by Acquire, which has no time), read as "just now".
	heard atomic.Int64

	// The cost: an EWMA of latency (see observe) that decays towards zero
	// while no sample arrives, with time constant tau, so that a member
	// avoided for a slow past is tried again. Read lock-free; written under mu.
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

// InFlight is the number of requests this director has outstanding at the
// member: attempts waiting for a reply plus replies still being read (see
// Balancer.Hold).
func (e *Endpoint) InFlight() int64 { return e.inflight.Load() + e.held.Load() }

// Silence is how long the member has had attempts waiting for a reply
// without any of them ending (nanoseconds; 0 when idle or unknown; replies
// being read do not count). A member whose replies
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

// Cost is the member's EWMA latency in nanoseconds, decayed to now.
func (e *Endpoint) Cost(now int64, tau float64) float64 {
	c := math.Float64frombits(e.costBits.Load())
	if dt := now - e.costStamp.Load(); dt > 0 && tau > 0 {
		c *= decay(float64(dt) / tau)
	}
	return c
}

// decay is exp(-x) for x >= 0. Picks read costs sampled moments ago, where
// x is tiny; a Taylor polynomial there (relative error under 5e-6) makes a
// scan over 16 members several times cheaper than 16 calls to math.Exp.
func decay(x float64) float64 {
	if x < 1.0/32 {
		return 1 - x*(1-x*(0.5-x/6))
	}
	return math.Exp(-x)
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

// observe folds one latency sample into the cost, an EWMA of latency. Each
// sample moves it by the weight 1-exp(-dt/tau), dt being the time since the
// previous sample, and by at least 1/16: with frequent replies the cost
// follows about the last 16 of them, with rare ones it follows time. The
// decay towards zero while idle (Cost) only changes how the member looks
// until its next sample.
//
// It is not Finagle's and Linkerd's peak EWMA, which jumps to any sample
// above it. A member's single slow reply (a GC pause, a big request) says
// little about the next one, and a peak made the member look that slow for
// the next 16 replies, so its work went to its peers: in the simulator's
// bench-like runs (sim.TestChoicesAndCost: members of capacity 4, exp(10ms)
// work) the plain average gave p99 lower by 2% with one slow member, 8%
// with 32 directors and 27% when 1 request in 200 takes 500 ms. A member
// that really turns slow still shows at once — its in-flight count grows,
// its silence (see Silence) counts, and a reply 100× slower than the cost
// raises it 7× on its own. With peak set (Config.PeakEWMA) a sample above
// the cost replaces it, as in Finagle. Caller holds e.mu.
func (e *Endpoint) observe(now int64, rtt float64, tau float64, peak bool) {
	prev := e.Cost(now, tau)
	c := rtt
	switch {
	case !e.measured:
		// The first sample replaces the initial guess outright: blending
		// towards it would take dozens of replies per member.
		e.measured = true
	case peak && rtt >= prev:
	default:
		// Blend with the stored cost, not its idle-decayed view: the time
		// weight already discounts an old estimate, and blending the decayed
		// one would settle at rtt/(1+exp(-dt/tau)), half the latency of a
		// member sampled rarely.
		old := math.Float64frombits(e.costBits.Load())
		w := 0.0
		if dt := now - e.costStamp.Load(); dt > 0 && tau > 0 {
			w = 1 - math.Exp(-float64(dt)/tau)
		}
		w = math.Max(w, 1.0/16)
		c = old + w*(rtt-old)
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
