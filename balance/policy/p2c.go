package policy

import "github.com/smartclient/smartclient/balance"

// P2C is the power of d choices over EWMA latency and load, as in Finagle's
// and Linkerd's balancers, extended with the load members piggy-back on
// replies: it compares d members and sends the request to the one with the
// lowest score
//
//	score = cost × (inFlight + 1) × (1 + reportedOthers/capacity) / weight
//
// where cost is the member's EWMA latency (see balance.Endpoint.Cost),
// inFlight this director's outstanding requests at it, reportedOthers the
// requests other clients had there at its last report, and capacity the
// concurrency it reported. When the member reports no capacity the score is
// cost × (inFlight + reportedOthers + 1) / weight. Reported load is what lets
// many independent directors, each seeing only its own traffic, balance like
// one that sees all.
//
// By default a pick compares every member while there are at most
// ScanLimit (16) of them, and two drawn at random beyond that, so a pick
// costs at most 16 score computations whatever the cluster's size. Two
// random choices are what keeps a pick O(1) in a large cluster, but in a
// small one they waste half the picks: with four members, one of them slow,
// half of all pairs hold the slow member, and the pick then goes to the
// other member of the pair whatever its queue. In the simulator's
// bench-like runs (sim.TestChoicesAndCost) comparing all four cut p99 from
// 52 to 49 ms for one director (the floor, one member alone at half load,
// is 48 ms) and from 59 to 54 ms for 32; with 16 members, one slow, from
// 60 to 49 ms.
// Envoy's least-request balancer makes the same trade with its choice count
// and full scan.
type P2C struct {
	// Choices is how many members a pick compares: 2 draws two distinct
	// members, a larger number draws that many with replacement, a number
	// at least the member count compares them all; 0 means all of them up
	// to ScanLimit members and 2 beyond, as does a negative number.
	Choices int
}

// ScanLimit is the member count up to which P2C{} compares every member.
const ScanLimit = 16

func (P2C) Name() string { return "p2c" }

func (p P2C) Build(eps []*balance.Endpoint, env balance.Env) balance.Picker {
	d := p.Choices
	if d <= 0 {
		d = 2
		if len(eps) <= ScanLimit {
			d = len(eps)
		}
	}
	return &p2cPicker{eps: eps, tau: env.Tau, d: min(d, len(eps))}
}

type p2cPicker struct {
	eps []*balance.Endpoint
	tau float64
	d   int // members compared per pick, 1..len(eps)
}

// Score is the figure P2C ranks members by; lower is better.
//
// Other clients' requests enter as a factor, each worth 1/capacity: the
// member serves capacity requests side by side, the report is a snapshot up
// to LoadTTL old, and cost already grows with the queue they make. Counting
// each like one of ours let an idle member ten times slower outbid a busy
// fast one at every director holding a stale report (sim, 32 directors, one
// member 10× slower, 70% load: p99.9 150ms, 26ms with this form). A lone
// director sees no others, so its picks are Finagle's.
func Score(e *balance.Endpoint, now int64, tau float64) float64 {
	// A member silent for longer than its cost is at least that slow: this
	// moves work away from a member before its first slow reply arrives
	// (32 fresh directors otherwise each queue a few requests behind a
	// member ten times slower before any of them learns it).
	cost := max(e.Cost(now, tau), float64(e.Silence(now)), 1000) // a never-measured or idle member still costs 1µs
	own := float64(e.InFlight() + 1)
	others := float64(e.ReportedOthers(now))
	var s float64
	if c := e.Capacity(); c > 0 {
		s = cost * own * (1 + others/float64(c))
	} else {
		s = cost * (own + others)
	}
	if w := e.Member.Weight; w > 0 {
		s /= w
	}
	return s
}

func (p *p2cPicker) Pick(in *balance.PickInput) *balance.Endpoint {
	if p.d == 2 || p.d == 1 {
		a, b := twoUntried(p.eps, in)
		if b == nil || p.d == 1 {
			return a
		}
		if Score(b, in.Now, p.tau) < Score(a, in.Now, p.tau) {
			return b
		}
		return a
	}
	if p.d >= len(p.eps) {
		return p.scan(in)
	}
	return p.sample(in)
}

// scan compares every untried member, starting at a random one so that
// ties (all idle at the same cost) spread evenly.
func (p *p2cPicker) scan(in *balance.PickInput) *balance.Endpoint {
	n := len(p.eps)
	off := balance.Intn(in.Rand, n)
	var best *balance.Endpoint
	var bestScore float64
	for k := range n {
		i := off + k
		if i >= n {
			i -= n
		}
		e := p.eps[i]
		if len(in.Tried) > 0 && in.IsTried(e) {
			continue
		}
		if s := Score(e, in.Now, p.tau); best == nil || s < bestScore {
			best, bestScore = e, s
		}
	}
	return best
}

// sample compares d members drawn at random with replacement (2 < d < n),
// as in the classic power-of-d-choices analysis; draws that land on a
// member already tried are skipped.
func (p *p2cPicker) sample(in *balance.PickInput) *balance.Endpoint {
	n := len(p.eps)
	var best *balance.Endpoint
	var bestScore float64
	for range p.d {
		e := p.eps[balance.Intn(in.Rand, n)]
		if len(in.Tried) > 0 && in.IsTried(e) {
			continue
		}
		if s := Score(e, in.Now, p.tau); best == nil || s < bestScore {
			best, bestScore = e, s
		}
	}
	if best == nil {
		return balance.RandomUntried(p.eps, in)
	}
	return best
}
