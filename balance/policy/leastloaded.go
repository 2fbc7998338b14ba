package policy

import "github.com/smartclient/smartclient/balance"

// LeastLoaded sends each request to the member with the lowest load, as the
// paper's telnet front-end does with polled load averages. A member's load is
// its last reported utilisation (if fresh) plus the requests in flight at it
// — this director's own and, from its reports, other clients' — divided by
// its capacity when known. It scans every member, so a pick costs O(n);
// ties go to a random member so that directors do not herd.
type LeastLoaded struct{}

func (LeastLoaded) Name() string { return "least-loaded" }

func (LeastLoaded) Build(eps []*balance.Endpoint, _ balance.Env) balance.Picker {
	return leastPicker(eps)
}

type leastPicker []*balance.Endpoint

// Load is the figure LeastLoaded ranks members by.
func Load(e *balance.Endpoint, now int64) float64 {
	l := float64(e.InFlight() + e.ReportedOthers(now))
	if c := e.Capacity(); c > 0 {
		l /= float64(c)
	}
	if u := e.ReportedUtil(now); u > 0 {
		l += u
	}
	return l
}

func (p leastPicker) Pick(in *balance.PickInput) *balance.Endpoint {
	n := len(p)
	start := balance.Intn(in.Rand, n)
	var best *balance.Endpoint
	var bestLoad float64
	for i := range n {
		e := p[(start+i)%n]
		if in.IsTried(e) {
			continue
		}
		if l := Load(e, in.Now); best == nil || l < bestLoad {
			best, bestLoad = e, l
		}
	}
	return best
}
