package policy

import "github.com/smartclient/smartclient/balance"

// Weighted picks members at random in proportion to their static Weight —
// capacity, bandwidth, or a proximity profile — with Vose's alias method, so
// a pick costs O(1) however many members there are.
type Weighted struct{}

func (Weighted) Name() string { return "weighted" }

func (Weighted) Build(eps []*balance.Endpoint, _ balance.Env) balance.Picker {
	n := len(eps)
	p := &weightedPicker{eps: eps, prob: make([]float64, n), alias: make([]int32, n)}
	var sum float64
	for _, e := range eps {
		sum += weightOf(e)
	}
	scaled := make([]float64, n)
	var small, large []int
	for i, e := range eps {
		scaled[i] = weightOf(e) * float64(n) / sum
		if scaled[i] < 1 {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		p.prob[s], p.alias[s] = scaled[s], int32(l)
		scaled[l] -= 1 - scaled[s]
		if scaled[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	for _, i := range large {
		p.prob[i] = 1
	}
	for _, i := range small { // only by rounding error
		p.prob[i] = 1
	}
	return p
}

func weightOf(e *balance.Endpoint) float64 {
	if e.Member.Weight > 0 {
		return e.Member.Weight
	}
	return 1
}

type weightedPicker struct {
	eps   []*balance.Endpoint
	prob  []float64
	alias []int32
}

func (p *weightedPicker) draw(r balance.Rand) *balance.Endpoint {
	i := balance.Intn(r, len(p.eps))
	if balance.Float01(r) < p.prob[i] {
		return p.eps[i]
	}
	return p.eps[p.alias[i]]
}

func (p *weightedPicker) Pick(in *balance.PickInput) *balance.Endpoint {
	for range 8 {
		if e := p.draw(in.Rand); !in.IsTried(e) {
			return e
		}
	}
	return balance.RandomUntried(p.eps, in)
}
