package balance

// Policy is a selection policy: it turns the eligible endpoints of one
// snapshot into a Picker. Build runs on the update path whenever membership
// or eligibility changes and may allocate; it must not keep endpoints beyond
// the returned Picker.
type Policy interface {
	// Name is the policy's registered name, e.g. "p2c".
	Name() string
	// Build returns a Picker over endpoints, which is never empty and must
	// not be modified.
	Build(endpoints []*Endpoint, env Env) Picker
}

// Env is what a policy may know about the director when building a picker.
type Env struct {
	// Tau is the cost EWMA's time constant in nanoseconds (Config.CostDecay).
	Tau float64
	// Zone is the director's own zone, empty if unknown.
	Zone string
	// Rand may be used while building (e.g. a random starting point, so that
	// directors do not move in lockstep); pickers get theirs in PickInput.
	Rand Rand
}

// Picker chooses one endpoint for one attempt. Pick is called concurrently
// and must not block, allocate or do I/O. It returns nil only when every
// endpoint is in in.Tried.
type Picker interface {
	Pick(in *PickInput) *Endpoint
}

// PickInput is what a picker may consider for one attempt.
type PickInput struct {
	// Now is the current time in nanoseconds on the director's clock.
	Now int64
	// Rand is the randomness source; must be safe for concurrent use when
	// picks run concurrently.
	Rand Rand
	// Tried lists the endpoints this request already failed on; a picker
	// must not return one of them while another endpoint is available.
	Tried []*Endpoint
	// Key is the request's affinity key, valid when HasKey is set.
	Key    uint64
	HasKey bool
}

// IsTried reports whether e is in in.Tried.
// Endpoints are compared by URL as well, since a membership update during
// the request may have replaced the endpoint of a member already tried.
func (in *PickInput) IsTried(e *Endpoint) bool {
	for _, t := range in.Tried {
		if t == e || t.Member.URL == e.Member.URL {
			return true
		}
	}
	return false
}

// RandomUntried returns a uniformly random endpoint of eps not in in.Tried,
// or nil if there is none. It is the fallback every randomized picker shares.
func RandomUntried(eps []*Endpoint, in *PickInput) *Endpoint {
	n := len(eps)
	if n == 0 {
		return nil
	}
	if len(in.Tried) == 0 {
		return eps[intn(in.Rand, n)]
	}
	// A few random draws almost always succeed when few were tried.
	for range 4 {
		if e := eps[intn(in.Rand, n)]; !in.IsTried(e) {
			return e
		}
	}
	// Choose uniformly among the untried ones. Scanning from a random start
	// instead would favour the member just after a run of tried ones.
	untried := 0
	for _, e := range eps {
		if !in.IsTried(e) {
			untried++
		}
	}
	if untried == 0 {
		return nil
	}
	k := intn(in.Rand, untried)
	for _, e := range eps {
		if !in.IsTried(e) {
			if k == 0 {
				return e
			}
			k--
		}
	}
	return nil
}

// Intn returns a uniform integer in [0, n) from r; n must be > 0.
func Intn(r Rand, n int) int { return intn(r, n) }

// Float01 returns a uniform float64 in [0, 1) from r.
func Float01(r Rand) float64 { return float01(r) }
