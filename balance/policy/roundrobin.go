package policy

import (
	"sync/atomic"

	"github.com/smartclient/smartclient/balance"
)

// RoundRobin gives each member the next request in turn: fair by count, blind
// to speed and load.
type RoundRobin struct{}

func (RoundRobin) Name() string { return "round-robin" }

func (RoundRobin) Build(eps []*balance.Endpoint, env balance.Env) balance.Picker {
	p := &rrPicker{eps: eps}
	// Start at a random member, or after every membership change all
	// directors would send their next request to the same one.
	if env.Rand != nil {
		p.next.Store(uint64(balance.Intn(env.Rand, len(eps))))
	}
	return p
}

type rrPicker struct {
	eps  []*balance.Endpoint
	next atomic.Uint64
}

func (p *rrPicker) Pick(in *balance.PickInput) *balance.Endpoint {
	n := uint64(len(p.eps))
	start := p.next.Add(1) - 1
	for i := range n {
		if e := p.eps[(start+i)%n]; !in.IsTried(e) {
			return e
		}
	}
	return nil
}
