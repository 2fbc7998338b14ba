package policy

import "github.com/smartclient/smartclient/balance"

// P2C is the power of two choices over peak-EWMA latency and load, as in
// Finagle's and Linkerd's balancers, extended with the load members
// piggy-back on replies: it draws two members at random and sends the
// request to the one with the lower score
//
//	score = cost × (inFlight + reportedOthers + 1) / weight
//
// where cost is the member's peak-EWMA latency, inFlight this director's
// outstanding requests at it, and reportedOthers the requests other clients
// had there at its last report. Reported load is what lets many independent
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
func Score(e *balance.Endpoint, now int64, tau float64) float64 {
	cost := max(e.Cost(now, tau), 1000) // a never-measured or idle member still costs 1µs
	pending := float64(e.InFlight() + e.ReportedOthers(now))
	s := cost * (pending + 1)
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
