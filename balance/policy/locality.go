package policy

import "github.com/smartclient/smartclient/balance"

// Locality prefers members in the director's own zone, choosing among them
// with Inner, and goes to other zones only when every local member is
// ineligible, already tried, or overloaded (in flight at or above its
// reported capacity, or reported utilisation at or above 1).
type Locality struct {
	Inner balance.Policy
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
	return &localityPicker{local: l.Inner.Build(local, env), remote: l.Inner.Build(remote, env)}
}

type localityPicker struct {
	local, remote balance.Picker
}

func overloaded(e *balance.Endpoint, now int64) bool {
	if c := e.Capacity(); c > 0 && e.InFlight()+e.ReportedOthers(now) >= c {
		return true
	}
	return e.ReportedUtil(now) >= 1
}

func (p *localityPicker) Pick(in *balance.PickInput) *balance.Endpoint {
	e := p.local.Pick(in)
	if e != nil && !overloaded(e, in.Now) {
		return e
	}
	if r := p.remote.Pick(in); r != nil {
		return r
	}
	return e
}
