package policy

import "github.com/smartclient/smartclient/balance"

// Random picks a member uniformly at random: no state, no server changes,
// and poor balance when requests or members differ (the paper's FTP applet).
type Random struct{}

func (Random) Name() string { return "random" }

func (Random) Build(eps []*balance.Endpoint, _ balance.Env) balance.Picker {
	return randomPicker(eps)
}

type randomPicker []*balance.Endpoint

func (p randomPicker) Pick(in *balance.PickInput) *balance.Endpoint {
	return balance.RandomUntried(p, in)
}

// BiasedRandom is the paper's refinement of Random: it draws two members at
// random and keeps one with probability inversely proportional to its
// observed response time, so fast members are favoured but slow ones still
// see a share of traffic that keeps their estimate fresh. Unlike P2C it
// ignores requests in flight.
type BiasedRandom struct{}

func (BiasedRandom) Name() string { return "random-biased" }

func (BiasedRandom) Build(eps []*balance.Endpoint, env balance.Env) balance.Picker {
	return &biasedPicker{eps: eps, tau: env.Tau}
}

type biasedPicker struct {
	eps []*balance.Endpoint
	tau float64
}

func (p *biasedPicker) Pick(in *balance.PickInput) *balance.Endpoint {
	a, b := twoUntried(p.eps, in)
	if b == nil {
		return a
	}
	ca := p.cost(a, in.Now)
	cb := p.cost(b, in.Now)
	// P(a) = (1/ca) / (1/ca + 1/cb) = cb / (ca + cb)
	if balance.Float01(in.Rand)*(ca+cb) < cb {
		return a
	}
	return b
}

func (p *biasedPicker) cost(e *balance.Endpoint, now int64) float64 {
	return max(e.Cost(now, p.tau), 1000) // 1µs floor: never divide by zero
}

// twoUntried draws two distinct endpoints not yet tried; b is nil when only
// one is left, and both are nil when none is.
func twoUntried(eps []*balance.Endpoint, in *balance.PickInput) (a, b *balance.Endpoint) {
	n := len(eps)
	if n == 1 || len(in.Tried) > 0 {
		a = balance.RandomUntried(eps, in)
		if a == nil || n == 1 {
			return a, nil
		}
		for range 4 {
			if c := eps[balance.Intn(in.Rand, n)]; c != a && !in.IsTried(c) {
				return a, c
			}
		}
		return a, nil
	}
	i := balance.Intn(in.Rand, n)
	j := balance.Intn(in.Rand, n-1)
	if j >= i {
		j++
	}
	return eps[i], eps[j]
}
