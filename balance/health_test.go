package balance

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// constRand returns the same value every time, so jitter is exact: 0 gives
// the shortest ejection, 1<<63 the nominal one, MaxUint64 the longest.
type constRand uint64

func (c constRand) Uint64() uint64 { return uint64(c) }

const mid = constRand(1 << 63)

const ms = int64(time.Millisecond)

// step is one event in a health scenario and the state expected after it.
type step struct {
	at    int64  // time, ms
	ev    string // ok, fail, expire, probe-ok, probe-fail
	state State
	// changed is whether the event changed eligibility.
	changed bool
	// until, if non-zero, is the expected end of the ejection, ms.
	until int64
}

func TestHealthMachine(t *testing.T) {
	base := HealthConfig{PanicThreshold: -1}.withDefaults() // 3 in a row, 50% of >= 10 in 10s, 500ms..30s
	rateOnly := base
	rateOnly.ConsecutiveFailures = 100
	for _, tc := range []struct {
		name  string
		cfg   HealthConfig
		steps []step
	}{
		{"three failures in a row eject", base, []step{
			{0, "fail", Healthy, false, 0},
			{1, "fail", Healthy, false, 0},
			{2, "fail", Ejected, true, 502},
			{3, "fail", Ejected, false, 502}, // an attempt that was in flight: no new ejection
			{4, "ok", Ejected, false, 502},   // nor does a success readmit early
			{501, "expire", Ejected, false, 502},
			{502, "expire", Probing, true, 0},
		}},
		{"a success resets the count", base, []step{
			{0, "fail", Healthy, false, 0},
			{1, "fail", Healthy, false, 0},
			{2, "ok", Healthy, false, 0},
			{3, "fail", Healthy, false, 0},
			{4, "fail", Healthy, false, 0},
			{5, "fail", Ejected, true, 505},
		}},
		{"probing: one strike, and the ejection doubles", base, []step{
			{0, "fail", Healthy, false, 0},
			{0, "fail", Healthy, false, 0},
			{0, "fail", Ejected, true, 500},
			{500, "expire", Probing, true, 0},
			{600, "fail", Ejected, true, 1600},
			{1600, "expire", Probing, true, 0},
			{1600, "fail", Ejected, true, 3600},
			{3600, "expire", Probing, true, 0},
			{3600, "fail", Ejected, true, 7600},
			{7600, "expire", Probing, true, 0},
			{7600, "fail", Ejected, true, 15600},
			{15600, "expire", Probing, true, 0},
			{15600, "fail", Ejected, true, 31600},
			{31600, "expire", Probing, true, 0},
			{31600, "fail", Ejected, true, 61600}, // 32s capped at 30s
			{61600, "expire", Probing, true, 0},
			{61600, "fail", Ejected, true, 91600},
		}},
		{"a success while probing readmits and resets the backoff", base, []step{
			{0, "fail", Healthy, false, 0},
			{0, "fail", Healthy, false, 0},
			{0, "fail", Ejected, true, 500},
			{500, "expire", Probing, true, 0},
			{501, "fail", Ejected, true, 1501},
			{1501, "expire", Probing, true, 0},
			{1502, "ok", Healthy, true, 0},
			{1503, "ok", Healthy, false, 0},
			{1504, "fail", Healthy, false, 0}, // healthy again: three strikes, not one
			{1505, "fail", Healthy, false, 0},
			{1506, "fail", Ejected, true, 2006}, // back to the base ejection
		}},
		{"active probe: success readmits fully", base, []step{
			{0, "fail", Healthy, false, 0},
			{0, "fail", Healthy, false, 0},
			{0, "fail", Ejected, true, 500},
			{500, "probe-ok", Healthy, true, 0},
			{501, "fail", Healthy, false, 0},
			{502, "ok", Healthy, false, 0},
		}},
		{"active probe: failure ejects for longer", base, []step{
			{0, "fail", Healthy, false, 0},
			{0, "fail", Healthy, false, 0},
			{0, "fail", Ejected, true, 500},
			{500, "probe-fail", Ejected, true, 1500},
			{1500, "probe-fail", Ejected, true, 3500},
			{3500, "probe-ok", Healthy, true, 0},
			{3600, "probe-ok", Healthy, false, 0}, // nothing to probe
		}},
		{"failure rate: half of ten alternating", rateOnly, []step{
			{0, "ok", Healthy, false, 0}, {1, "fail", Healthy, false, 0},
			{2, "ok", Healthy, false, 0}, {3, "fail", Healthy, false, 0},
			{4, "ok", Healthy, false, 0}, {5, "fail", Healthy, false, 0},
			{6, "ok", Healthy, false, 0}, {7, "fail", Healthy, false, 0},
			{8, "ok", Healthy, false, 0},
			{9, "fail", Ejected, true, 509}, // 5 of 10
		}},
		{"failure rate: only a failure ejects", rateOnly, []step{
			{0, "fail", Healthy, false, 0}, {1, "ok", Healthy, false, 0},
			{2, "fail", Healthy, false, 0}, {3, "ok", Healthy, false, 0},
			{4, "fail", Healthy, false, 0}, {5, "ok", Healthy, false, 0},
			{6, "fail", Healthy, false, 0}, {7, "ok", Healthy, false, 0},
			{8, "fail", Healthy, false, 0},
			{9, "ok", Healthy, false, 0}, // 5 of 10, but a success
			{10, "fail", Ejected, true, 510},
		}},
		{"failure rate: below the rate", rateOnly, []step{
			{0, "ok", Healthy, false, 0}, {1, "ok", Healthy, false, 0},
			{2, "fail", Healthy, false, 0}, {3, "ok", Healthy, false, 0},
			{4, "ok", Healthy, false, 0}, {5, "fail", Healthy, false, 0},
			{6, "ok", Healthy, false, 0}, {7, "ok", Healthy, false, 0},
			{8, "fail", Healthy, false, 0}, {9, "ok", Healthy, false, 0},
			{10, "fail", Healthy, false, 0}, // 4 of 11
		}},
		{"failure rate: the window resets the counts", rateOnly, []step{
			{0, "fail", Healthy, false, 0}, {1, "fail", Healthy, false, 0},
			{2, "fail", Healthy, false, 0}, {3, "fail", Healthy, false, 0},
			{4, "fail", Healthy, false, 0}, {5, "fail", Healthy, false, 0},
			{6, "fail", Healthy, false, 0}, {7, "fail", Healthy, false, 0},
			{8, "fail", Healthy, false, 0}, // 9 of 9: too few to judge
			{10_000, "fail", Healthy, false, 0},
			{10_001, "fail", Healthy, false, 0},
			{10_002, "ok", Healthy, false, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h health
			for i, s := range tc.steps {
				now := s.at * ms
				var changed bool
				switch s.ev {
				case "ok":
					changed = h.result(now, true, &tc.cfg, mid)
				case "fail":
					changed = h.result(now, false, &tc.cfg, mid)
				case "expire":
					changed = h.expire(now)
				case "probe-ok":
					changed = h.probeResult(now, true, &tc.cfg, mid)
				case "probe-fail":
					changed = h.probeResult(now, false, &tc.cfg, mid)
				default:
					t.Fatalf("bad event %q", s.ev)
				}
				if h.state != s.state || changed != s.changed {
					t.Fatalf("step %d (%s at %dms): state %v changed %v, want %v %v", i, s.ev, s.at, h.state, changed, s.state, s.changed)
				}
				if s.until != 0 && h.until != s.until*ms {
					t.Fatalf("step %d (%s at %dms): ejected until %v, want %v", i, s.ev, s.at,
						time.Duration(h.until), time.Duration(s.until*ms))
				}
			}
		})
	}
}

// TestEjectionJitter: ejection lengths are spread by up to Jitter either
// way around the nominal length, cover that range, and average to it.
func TestEjectionJitter(t *testing.T) {
	cfg := HealthConfig{BaseEjection: time.Second, Jitter: 0.25}.withDefaults()
	for _, tc := range []struct {
		r    Rand
		want float64
	}{
		{constRand(0), 0.75},
		{mid, 1},
		{constRand(math.MaxUint64), 1.25},
	} {
		var h health
		h.eject(0, &cfg, tc.r)
		if got := float64(h.until) / float64(time.Second); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("rand %v: ejection %v, want %vs", tc.r, time.Duration(h.until), tc.want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	const n = 10000
	lo, hi, sum := math.Inf(1), math.Inf(-1), 0.0
	for range n {
		var h health
		h.ejections = 2 // nominal 4s
		h.eject(0, &cfg, r)
		d := float64(h.until) / float64(time.Second)
		lo, hi, sum = min(lo, d), max(hi, d), sum+d
	}
	if lo < 3 || hi > 5 || lo > 3.01 || hi < 4.99 {
		t.Errorf("ejections in [%v, %v], want to fill [3s, 5s]", lo, hi)
	}
	if mean := sum / n; math.Abs(mean-4) > 0.02 {
		t.Errorf("mean ejection %vs, want 4s", mean)
	}
}

func TestHealthConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg HealthConfig
		ok  bool
	}{
		{HealthConfig{}, true},
		{DefaultHealthConfig(), true},
		{HealthConfig{FailureRate: 1, Jitter: 0.99, PanicThreshold: 1}, true},
		{HealthConfig{PanicThreshold: -1}, true},
		{HealthConfig{ConsecutiveFailures: -1}, false},
		{HealthConfig{FailureRate: 1.01}, false},
		{HealthConfig{FailureRate: -0.1}, false},
		{HealthConfig{FailureRate: math.NaN()}, false},
		{HealthConfig{MinRequests: -1}, false},
		{HealthConfig{Window: -1}, false},
		{HealthConfig{BaseEjection: -1}, false},
		{HealthConfig{MaxEjection: -1}, false},
		{HealthConfig{BaseEjection: 2 * time.Second, MaxEjection: time.Second}, false},
		{HealthConfig{Jitter: 1}, false},
		{HealthConfig{Jitter: -0.1}, false},
		{HealthConfig{Jitter: math.NaN()}, false},
		{HealthConfig{PanicThreshold: 1.5}, false},
		{HealthConfig{PanicThreshold: math.NaN()}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
	d := DefaultHealthConfig()
	if d.ConsecutiveFailures != 3 || d.FailureRate != 0.5 || d.MinRequests != 10 || d.Window != 10*time.Second ||
		d.BaseEjection != 500*time.Millisecond || d.MaxEjection != 30*time.Second || d.Jitter != 0.2 || d.PanicThreshold != 0.5 {
		t.Errorf("defaults %+v differ from the documented ones", d)
	}
}

// TestCost: the cost moves 1/16 of the way towards a sample arriving at
// once (a larger part after a pause: 1-exp(-dt/tau)), jumps to a higher
// sample only with PeakEWMA, decays with time constant tau while idle, and
// converges to a steady latency from either side.
func TestCost(t *testing.T) {
	tau := float64(10 * time.Second)
	ms := float64(time.Millisecond)
	for _, peak := range []bool{false, true} {
		e := newEndpoint(Member{URL: "a"}, 10*ms)
		if got := e.Cost(0, tau); got != 10*ms {
			t.Fatalf("initial cost %v", got)
		}
		// Idle decay: exp(-1) after tau.
		if got, want := e.Cost(int64(tau), tau), 10*ms*math.Exp(-1); math.Abs(got-want) > 1 {
			t.Fatalf("decayed cost %v, want %v", got, want)
		}
		// The first sample replaces the initial guess.
		e.observe(0, 20*ms, tau, peak)
		if got := e.Cost(0, tau); got != 20*ms {
			t.Fatalf("peak=%v: after the first sample: %v, want 20ms", peak, time.Duration(got))
		}
		// A higher sample at the same instant: 1/16 of the way, or all of
		// it with PeakEWMA.
		e.observe(0, 116*ms, tau, peak)
		want := 26 * ms
		if peak {
			want = 116 * ms
		}
		if got := e.Cost(0, tau); math.Abs(got-want) > 1 {
			t.Fatalf("peak=%v: after a higher sample: %v, want %v", peak, time.Duration(got), time.Duration(want))
		}
		// A lower sample at the same instant moves it 1/16 of the way
		// under both models.
		e.observe(0, want-16*ms, tau, peak)
		if got := e.Cost(0, tau); math.Abs(got-(want-ms)) > 1 {
			t.Fatalf("peak=%v: after a lower sample: %v, want %v", peak, time.Duration(got), time.Duration(want-ms))
		}
		// A sample after a pause of tau moves the stored cost 1-exp(-1) of
		// the way (the idle decay only changed how it looked meanwhile).
		prev := e.Cost(0, tau)
		e.observe(int64(tau), 0, tau, false)
		if got, want := e.Cost(int64(tau), tau), prev*math.Exp(-1); math.Abs(got-want) > 1 {
			t.Fatalf("peak=%v: after a pause: %v, want %v", peak, time.Duration(got), time.Duration(want))
		}
		// Steady samples bring it to them from either side, whether they
		// come often or rarely.
		now := int64(tau)
		for _, lat := range []float64{2 * ms, 40 * ms, 3 * ms, 30 * ms} {
			gap := int64(10 * time.Millisecond)
			if lat == 30*ms {
				gap = int64(5 * time.Second)
			}
			for range 500 {
				now += gap
				e.observe(now, lat, tau, peak)
			}
			if got := e.Cost(now, tau); math.Abs(got-lat) > lat*0.01 {
				t.Fatalf("peak=%v: after steady %v samples: %v", peak, time.Duration(lat), time.Duration(got))
			}
		}
		// Tau 0 disables decay (a degenerate config must not divide by zero).
		if got := e.Cost(now+int64(time.Hour), 0); got != e.Cost(now, tau) {
			t.Fatalf("tau 0: %v", got)
		}
	}
}
