package policy

import "github.com/smartclient/smartclient/balance"

// P2C is the power of two choices over peak-EWMA latency and load, as in
// Finagle's and Linkerd's balancers, extended with the load members
// piggy-back on replies: it draws two members at random and sends the
// request to the one with the lower score
//
//	score = cost × (inFlight + 1) × (1 + reportedOthers/capacity) / weight
//
// where cost is the member's peak-EWMA latency, inFlight this director's
// outstanding requests at it, reportedOthers the requests other clients had
// there at its last report, and capacity the concurrency it reported. When
// the member reports no capacity the score is cost × (inFlight +
// reportedOthers + 1) / weight. Reported load is what lets many independent
// directors, each seeing only its own traffic, balance like one that sees all.
// A pick costs O(1) whatever the number of members.
type P2C struct{}

func (P2C) Name() string { return "p2c" }

func (P2C) Build(eps []*balance.Endpoint, env balance.Env) balance.Picker {
	return &p2cPicker{eps: eps, tau: env.Tau}
}

type p2cPicker struct {
	eps []*balance.Endpoint
	tau float64
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
	a, b := twoUntried(p.eps, in)
	if b == nil {
		return a
	}
	if Score(b, in.Now, p.tau) < Score(a, in.Now, p.tau) {
		return b
	}
	return a
}
