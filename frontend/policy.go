package frontend

import (
	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
)

// PolledLeastLoaded is policy.LeastLoaded for members whose load is polled
// from agents: a member with no fresh report — its agent did not answer,
// often because the whole host is gone — ranks after every member with
// one, instead of looking idle (load 0) and being tried first, where a
// black-holed host would cost a whole BannerTimeout. Among members with
// reports, and among those without, it is LeastLoaded: lowest
// policy.Load, ties to a random member. Lock-free and allocation-free.
type PolledLeastLoaded struct{}

var _ balance.Policy = PolledLeastLoaded{}

// Name is "least-loaded": the same policy, told what to make of silence.
func (PolledLeastLoaded) Name() string { return "least-loaded" }

// Build implements balance.Policy.
func (PolledLeastLoaded) Build(eps []*balance.Endpoint, _ balance.Env) balance.Picker {
	return polledPicker(eps)
}

type polledPicker []*balance.Endpoint

func (p polledPicker) Pick(in *balance.PickInput) *balance.Endpoint {
	n := len(p)
	start := balance.Intn(in.Rand, n)
	var best *balance.Endpoint
	var bestLoad float64
	bestKnown := false
	for i := range n {
		e := p[(start+i)%n]
		if in.IsTried(e) {
			continue
		}
		known := e.ReportedUtil(in.Now) >= 0
		l := policy.Load(e, in.Now)
		if best == nil || known && !bestKnown || known == bestKnown && l < bestLoad {
			best, bestLoad, bestKnown = e, l, known
		}
	}
	return best
}
