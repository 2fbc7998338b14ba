package policy

import "github.com/smartclient/smartclient/balance"

// Locality prefers members in the director's own zone, choosing among them
// with Inner, and goes to another zone only when every local member is
// ineligible or already tried, or when the local choice is overloaded: its
// P2C score (latency × load, see Score) is more than SpillFactor times that
// of the best remote choice. Comparing scores rather than testing a member's
// reported load against its capacity matters: a report says how busy a
// member was when it last replied, and a member that looks full gets no more
// requests, hence no fresher report, so an absolute test would keep traffic
// away from an idle local member until the report expires.
type Locality struct {
	Inner balance.Policy
	// SpillFactor is how much worse than the remote choice the local choice
	// must score before a request leaves the zone. Default 2.
	SpillFactor float64
}

func (l Locality) Name() string { return "locality:" + l.Inner.Name() }

func (l Locality) Build(eps []*balance.Endpoint, env balance.Env) balance.Picker {
	var local, remote []*balance.Endpoint
	for _, e := range eps {
		if env.Zone != "" && e.Member.Zone == env.Zone {
			local = append(local, e)
		} else {
			remote = append(remote, e)
		}
	}
	if len(local) == 0 || len(remote) == 0 {
		return l.Inner.Build(eps, env)
	}
	spill := l.SpillFactor
	if spill <= 0 {
		spill = 2
	}
	return &localityPicker{
		local: l.Inner.Build(local, env), remote: l.Inner.Build(remote, env),
		spill: spill, tau: env.Tau,
	}
}

type localityPicker struct {
	local, remote balance.Picker
	spill, tau    float64
}

func (p *localityPicker) Pick(in *balance.PickInput) *balance.Endpoint {
	e := p.local.Pick(in)
	if e == nil {
		return p.remote.Pick(in)
	}
	r := p.remote.Pick(in)
	if r != nil && Score(e, in.Now, p.tau) > p.spill*Score(r, in.Now, p.tau) {
		return r
	}
	return e
}
