package bench

import "github.com/smartclient/smartclient/balance"

// finagleP2C is the balancer of Finagle (P2C with peak EWMA) and of
// Linkerd's proxy (PeakEwma over p2c), as a balance.Policy so that it runs
// in our director with everything else equal: two members drawn at random,
// the lower cost × (requests in flight + 1) wins, the cost being a peak
// EWMA of latency with a 10 s decay (balance.Config.PeakEWMA). It reads
// neither the load members report nor how long a busy member has been
// silent, which our p2c adds, and always compares two members where ours
// compares every member up to 16. A baseline, not a product.
type finagleP2C struct{}

func (finagleP2C) Name() string { return "finagle-p2c" }

func (finagleP2C) Build(eps []*balance.Endpoint, env balance.Env) balance.Picker {
	return &finaglePicker{eps: eps, tau: env.Tau}
}

type finaglePicker struct {
	eps []*balance.Endpoint
	tau float64
}

func (p *finaglePicker) score(e *balance.Endpoint, now int64) float64 {
	return e.Cost(now, p.tau) * float64(e.InFlight()+1)
}

func (p *finaglePicker) Pick(in *balance.PickInput) *balance.Endpoint {
	n := len(p.eps)
	var a, b *balance.Endpoint
	if len(in.Tried) == 0 && n > 1 {
		i := balance.Intn(in.Rand, n)
		j := balance.Intn(in.Rand, n-1)
		if j >= i {
			j++
		}
		a, b = p.eps[i], p.eps[j]
	} else {
		// Retries: a random untried member, and a second one if a few
		// draws find one.
		if a = balance.RandomUntried(p.eps, in); a == nil {
			return nil
		}
		for range 4 {
			if c := p.eps[balance.Intn(in.Rand, n)]; c != a && !in.IsTried(c) {
				b = c
				break
			}
		}
	}
	if b != nil && p.score(b, in.Now) < p.score(a, in.Now) {
		return b
	}
	return a
}
