package balance_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/wire"
)

const sec = int64(time.Second)

// lockedRand is a seeded Rand safe for concurrent use.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newRand(seed uint64) *lockedRand { return &lockedRand{r: rand.New(rand.NewPCG(seed, 1))} }

func (l *lockedRand) Uint64() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Uint64()
}

func members(n int) []balance.Member {
	ms := make([]balance.Member, n)
	for i := range ms {
		ms[i] = balance.Member{URL: fmt.Sprintf("http://m%d:80", i)}
	}
	return ms
}

func newBalancer(t testing.TB, cfg balance.Config, ms []balance.Member) *balance.Balancer {
	t.Helper()
	if cfg.Policy == nil {
		cfg.Policy = policy.RoundRobin{}
	}
	b, err := balance.New(cfg, ms, newRand(1))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fail records n failed attempts on e at now.
func fail(b *balance.Balancer, e *balance.Endpoint, now int64, n int) {
	for range n {
		b.Acquire(e)
		b.Done(e, now, time.Millisecond, balance.Failure)
	}
}

func succeed(b *balance.Balancer, e *balance.Endpoint, now int64) {
	b.Acquire(e)
	b.Done(e, now, time.Millisecond, balance.Success)
}

func eligible(b *balance.Balancer) []string {
	var us []string
	for _, e := range b.Snapshot().Endpoints {
		us = append(us, e.Member.URL)
	}
	slices.Sort(us)
	return us
}

func urlsOf(ms []balance.Member, idx ...int) []string {
	var us []string
	for _, i := range idx {
		us = append(us, ms[i].URL)
	}
	slices.Sort(us)
	return us
}

func stateOf(b *balance.Balancer, url string, now int64) balance.EndpointStats {
	for _, s := range b.Stats(now) {
		if s.Member.URL == url {
			return s
		}
	}
	return balance.EndpointStats{}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  balance.Config
		ms   []balance.Member
		r    balance.Rand
		want error
	}{
		{"no policy", balance.Config{}, members(1), newRand(1), nil},
		{"no rand", balance.Config{Policy: policy.P2C{}}, members(1), nil, nil},
		{"no members", balance.Config{Policy: policy.P2C{}}, nil, newRand(1), balance.ErrNoMembers},
		{"bad member", balance.Config{Policy: policy.P2C{}}, []balance.Member{{URL: ""}}, newRand(1), balance.ErrBadMember},
		{"bad health", balance.Config{Policy: policy.P2C{}, Health: balance.HealthConfig{Jitter: 2}}, members(1), newRand(1), nil},
		{"negative decay", balance.Config{Policy: policy.P2C{}, CostDecay: -1}, members(1), newRand(1), nil},
	} {
		b, err := balance.New(tc.cfg, tc.ms, tc.r)
		if err == nil || b != nil {
			t.Errorf("%s: New = %v, %v; want an error", tc.name, b, err)
		} else if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: New error %v, want %v", tc.name, err, tc.want)
		}
	}
	b := newBalancer(t, balance.Config{}, members(2))
	c := b.Config()
	if c.CostDecay != 10*time.Second || c.InitialCost != 10*time.Millisecond || c.LoadTTL != 2*time.Second ||
		c.Health != balance.DefaultHealthConfig() {
		t.Errorf("defaults not applied: %+v", c)
	}
	if b.Epoch() != 0 {
		t.Errorf("initial epoch %d", b.Epoch())
	}
}

// TestPickCountsInFlight: Pick counts the attempt, Done uncounts it, and
// Pick returns nil only when every eligible member was tried.
func TestPickCountsInFlight(t *testing.T) {
	b := newBalancer(t, balance.Config{}, members(3))
	in := &balance.PickInput{Rand: newRand(2)}
	e := b.Pick(in)
	if e.InFlight() != 1 {
		t.Fatalf("InFlight after Pick = %d", e.InFlight())
	}
	b.Done(e, 0, time.Millisecond, balance.Success)
	if e.InFlight() != 0 {
		t.Fatalf("InFlight after Done = %d", e.InFlight())
	}
	in.Tried = b.Endpoints()
	if got := b.Pick(in); got != nil {
		t.Fatalf("all tried: Pick = %v", got.Member.URL)
	}
	st := stateOf(b, e.Member.URL, 0)
	if st.Picks != 1 || st.Successes != 1 || st.Failures != 0 || st.InFlight != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestEjectionAndReadmission drives the failure detector through the
// balancer: ejected members leave the snapshot, Tick readmits them on
// probation when their ejection ends, and a strike then ejects them for
// twice as long.
func TestEjectionAndReadmission(t *testing.T) {
	ms := members(4)
	b := newBalancer(t, balance.Config{Health: balance.HealthConfig{Jitter: 1e-9}}, ms)
	eps := b.Endpoints()
	m0 := eps[0]
	now := sec
	fail(b, m0, now, 2)
	if got := eligible(b); len(got) != 4 {
		t.Fatalf("after 2 failures eligible %v", got)
	}
	fail(b, m0, now, 1)
	if got, want := eligible(b), urlsOf(ms, 1, 2, 3); !slices.Equal(got, want) || b.Snapshot().Panic {
		t.Fatalf("after 3 failures eligible %v panic %v, want %v", got, b.Snapshot().Panic, want)
	}
	if st := stateOf(b, m0.Member.URL, now); st.State != balance.Ejected || st.Ejections != 1 || st.Failures != 3 {
		t.Fatalf("stats %+v", st)
	}
	// Picks never return it now.
	in := &balance.PickInput{Now: now, Rand: newRand(3)}
	for range 20 {
		e := b.Pick(in)
		if e == m0 {
			t.Fatal("picked an ejected member")
		}
		b.Done(e, now, time.Millisecond, balance.Abandoned)
	}
	probe, next := b.Tick(now+499*int64(time.Millisecond), false)
	if len(probe) != 0 || len(eligible(b)) != 3 {
		t.Fatalf("ejection ended early")
	}
	if d := time.Duration(next - now); d < 499*time.Millisecond || d > 501*time.Millisecond {
		t.Fatalf("Tick next = %v after ejection, want 500ms", d)
	}
	now += 501 * int64(time.Millisecond)
	if probe, next := b.Tick(now, false); len(probe) != 0 || next != 0 {
		t.Fatalf("Tick = %v, %v", probe, next)
	}
	if len(eligible(b)) != 4 || stateOf(b, m0.Member.URL, now).State != balance.Probing {
		t.Fatalf("not readmitted: %v", b.Stats(now))
	}
	fail(b, m0, now, 1)
	if len(eligible(b)) != 3 {
		t.Fatal("one strike while probing did not eject")
	}
	_, next = b.Tick(now, false)
	if d := time.Duration(next - now); d < 999*time.Millisecond || d > 1001*time.Millisecond {
		t.Fatalf("second ejection %v, want 1s", d)
	}
	now = next
	b.Tick(now, false)
	succeed(b, m0, now)
	if st := stateOf(b, m0.Member.URL, now); st.State != balance.Healthy || st.Ejections != 2 {
		t.Fatalf("after probation success: %+v", st)
	}
}

func TestActiveProbe(t *testing.T) {
	ms := members(4)
	b := newBalancer(t, balance.Config{Health: balance.HealthConfig{Jitter: 1e-9}}, ms)
	m0 := b.Endpoints()[0]
	now := sec
	fail(b, m0, now, 3)
	now += sec
	probe, next := b.Tick(now, true)
	if len(probe) != 1 || probe[0] != m0 {
		t.Fatalf("Tick asked to probe %v", probe)
	}
	if next != 0 {
		t.Errorf("Tick next = %v with only a probe pending, want 0", next)
	}
	// Until the probe reports, the member stays out and is not asked for again.
	if len(eligible(b)) != 3 {
		t.Fatal("readmitted before the probe answered")
	}
	if probe, next := b.Tick(now+10*sec, true); len(probe) != 0 || next != 0 {
		t.Fatalf("second Tick = %v, %v", probe, next)
	}
	b.ProbeResult(m0, now, false)
	if len(eligible(b)) != 3 || stateOf(b, m0.Member.URL, now).State != balance.Ejected {
		t.Fatal("readmitted after a failed probe")
	}
	_, next = b.Tick(now, true)
	if d := time.Duration(next - now); d < 999*time.Millisecond || d > 1001*time.Millisecond {
		t.Fatalf("after a failed probe ejected for %v, want 1s", d)
	}
	now = next
	probe, _ = b.Tick(now, true)
	if len(probe) != 1 {
		t.Fatalf("second probe not asked for")
	}
	b.ProbeResult(m0, now, true)
	if len(eligible(b)) != 4 || stateOf(b, m0.Member.URL, now).State != balance.Healthy {
		t.Fatal("not readmitted after a good probe")
	}
}

func TestPanicThreshold(t *testing.T) {
	for _, tc := range []struct {
		name      string
		threshold float64
		n, eject  int
		eligible  int
		panic     bool
	}{
		{"half ejected is not panic", 0, 4, 2, 2, false},
		{"most ejected is panic", 0, 4, 3, 4, true},
		{"all ejected is panic", 0, 4, 4, 4, true},
		{"threshold 0.8", 0.8, 5, 1, 4, false},
		{"threshold 0.8 crossed", 0.8, 5, 2, 5, true},
		{"threshold 1", 1, 5, 1, 5, true},
		{"disabled", -1, 4, 3, 1, false},
		// With every member out there is nothing else to pick from.
		{"disabled, all ejected", -1, 4, 4, 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBalancer(t, balance.Config{Health: balance.HealthConfig{PanicThreshold: tc.threshold}}, members(tc.n))
			for _, e := range b.Endpoints()[:tc.eject] {
				fail(b, e, sec, 3)
			}
			s := b.Snapshot()
			if len(s.Endpoints) != tc.eligible || s.Panic != tc.panic {
				t.Fatalf("snapshot has %d endpoints, panic %v; want %d, %v", len(s.Endpoints), s.Panic, tc.eligible, tc.panic)
			}
		})
	}
}

func TestReport(t *testing.T) {
	ms := members(3)
	b := newBalancer(t, balance.Config{LoadTTL: 2 * time.Second}, ms)
	eps := b.Endpoints()
	e := eps[0]
	now := 10 * sec
	if e.ReportedOthers(now) != 0 || e.ReportedUtil(now) != -1 || e.Capacity() != 0 {
		t.Fatal("load known before any report")
	}
	b.Acquire(e)
	b.Acquire(e)
	// 7 in flight at the member, 2 of them ours: 5 from other clients.
	if newer := b.Report(e, now, wire.Load{TimeMillis: 1, InFlight: 7, Capacity: 16, Util: 0.5}); newer {
		t.Error("Report says newer epoch for epoch 0")
	}
	if e.ReportedOthers(now) != 5 || e.ReportedUtil(now) != 0.5 || e.Capacity() != 16 {
		t.Fatalf("others %d util %v capacity %d", e.ReportedOthers(now), e.ReportedUtil(now), e.Capacity())
	}
	// Believed until LoadTTL has passed.
	if e.ReportedOthers(now+2*sec-1) != 5 || e.ReportedOthers(now+2*sec) != 0 || e.ReportedUtil(now+2*sec) != -1 {
		t.Fatal("report TTL not applied")
	}
	// A member that counts fewer than ours (it has not seen them yet) never
	// makes others negative.
	b.Report(e, now, wire.Load{TimeMillis: 1, InFlight: 1})
	if e.ReportedOthers(now) != 0 {
		t.Fatalf("others %d", e.ReportedOthers(now))
	}
	if st := stateOf(b, e.Member.URL, now); st.LastLoad.InFlight != 1 {
		t.Errorf("LastLoad %+v", st.LastLoad)
	}
	// Epochs: newer only when the member knows a later one.
	if !b.Report(e, now, wire.Load{TimeMillis: 1, Epoch: 1}) {
		t.Error("epoch 1 > 0 not reported as newer")
	}
	if ok, err := b.SetMembers(5, ms); !ok || err != nil {
		t.Fatal(ok, err)
	}
	for ep, want := range map[uint64]bool{4: false, 5: false, 6: true} {
		if got := b.Report(e, now, wire.Load{TimeMillis: 1, Epoch: ep}); got != want {
			t.Errorf("epoch %d vs 5: newer = %v", ep, got)
		}
	}
}

// TestReportedServiceTime: a member's own service time is its cost until
// the balancer has timed it itself, and never after.
func TestReportedServiceTime(t *testing.T) {
	b := newBalancer(t, balance.Config{InitialCost: 10 * time.Millisecond}, members(2))
	e := b.Endpoints()[0]
	now := 10 * sec
	tau := float64(10 * time.Second)
	b.Report(e, now, wire.Load{TimeMillis: 1, LatencyMicros: 40_000})
	if got := e.Cost(now, tau); got != float64(40*time.Millisecond) {
		t.Fatalf("cost after l=40000: %v, want 40ms", time.Duration(got))
	}
	b.Report(e, now, wire.Load{TimeMillis: 1}) // l unknown: keep the guess
	if got := e.Cost(now, tau); got != float64(40*time.Millisecond) {
		t.Fatalf("cost after a report without l: %v, want 40ms", time.Duration(got))
	}
	b.Acquire(e)
	b.Done(e, now, 2*time.Millisecond, balance.Success)
	b.Report(e, now, wire.Load{TimeMillis: 1, LatencyMicros: 90_000})
	if got := e.Cost(now, tau); got != float64(2*time.Millisecond) {
		t.Fatalf("cost after our own 2ms sample and a report of 90ms: %v, want 2ms", time.Duration(got))
	}
}

// TestDraining: a draining member leaves the snapshot without counting as
// a failure, and comes back when it reports ok again.
func TestDraining(t *testing.T) {
	ms := members(4)
	b := newBalancer(t, balance.Config{}, ms)
	eps := b.Endpoints()
	now := sec
	b.Report(eps[1], now, wire.Load{TimeMillis: 1, State: wire.StateDraining})
	if got, want := eligible(b), urlsOf(ms, 0, 2, 3); !slices.Equal(got, want) || b.Snapshot().Panic {
		t.Fatalf("eligible %v, want %v", got, want)
	}
	st := stateOf(b, ms[1].URL, now)
	if st.State != balance.Draining || st.Failures != 0 || st.Ejections != 0 {
		t.Fatalf("draining member stats %+v", st)
	}
	// Draining is sticky beyond the load TTL: only an ok report ends it.
	if got := eligible(b); len(got) != 3 {
		t.Fatal(got)
	}
	b.Report(eps[1], now, wire.Load{TimeMillis: 1, State: wire.StateOK})
	if got := eligible(b); len(got) != 4 || stateOf(b, ms[1].URL, now).State != balance.Healthy {
		t.Fatalf("not readmitted after ok: %v", got)
	}
	// Draining members do not count towards the panic threshold: with two
	// of four draining (a rolling restart) and one ejected, the one healthy
	// member of the two that remain is not a panic.
	b.Report(eps[0], now, wire.Load{TimeMillis: 1, State: wire.StateDraining})
	b.Report(eps[1], now, wire.Load{TimeMillis: 1, State: wire.StateDraining})
	fail(b, eps[2], now, 3)
	if got, want := eligible(b), urlsOf(ms, 3); !slices.Equal(got, want) || b.Snapshot().Panic {
		t.Fatalf("eligible %v panic %v, want %v without panic", got, b.Snapshot().Panic, want)
	}
	// One more ejection: nothing live is eligible, so panic over the live ones.
	fail(b, eps[3], now, 3)
	if got, want := eligible(b), urlsOf(ms, 2, 3); !slices.Equal(got, want) || !b.Snapshot().Panic {
		t.Fatalf("eligible %v panic %v, want %v in panic", got, b.Snapshot().Panic, want)
	}
	// Every member draining: better a draining member than none.
	for _, e := range eps {
		b.Report(e, now, wire.Load{TimeMillis: 1, State: wire.StateDraining})
	}
	if got := eligible(b); len(got) != 4 || !b.Snapshot().Panic {
		t.Fatalf("all draining: eligible %v", got)
	}
}

func TestSetMembers(t *testing.T) {
	ms := members(3)
	b := newBalancer(t, balance.Config{}, ms)
	old := b.Endpoints()
	now := sec
	succeed(b, old[0], now)
	fail(b, old[1], now, 3) // ejected
	b.Acquire(old[2])
	b.Done(old[2], now, 40*time.Millisecond, balance.Success)
	cost2 := old[2].Cost(now, float64(10*time.Second))

	// Epoch 0 is the initial one: not newer.
	if ok, err := b.SetMembers(0, members(1)); ok || err != nil {
		t.Fatalf("SetMembers(0) = %v, %v", ok, err)
	}
	// Invalid lists are refused and change nothing, whatever their epoch.
	for _, bad := range []struct {
		ms   []balance.Member
		want error
	}{
		{nil, balance.ErrNoMembers},
		{[]balance.Member{}, balance.ErrNoMembers},
		{[]balance.Member{{URL: "http://a:80"}, {URL: ""}}, balance.ErrBadMember},
		{[]balance.Member{{URL: "http://a:80"}, {URL: "http://a:80"}}, balance.ErrBadMember},
		{[]balance.Member{{URL: "http://a:80", Weight: -1}}, balance.ErrBadMember},
		{[]balance.Member{{URL: "http://a:80", Weight: math.NaN()}}, balance.ErrBadMember},
		{[]balance.Member{{URL: "http://a:80", Weight: math.Inf(1)}}, balance.ErrBadMember},
	} {
		snap := b.Snapshot()
		ok, err := b.SetMembers(9, bad.ms)
		if ok || !errors.Is(err, bad.want) {
			t.Errorf("SetMembers(%v) = %v, %v; want %v", bad.ms, ok, err, bad.want)
		}
		if b.Epoch() != 0 || b.Snapshot() != snap || !slices.Equal(b.Endpoints(), old) {
			t.Fatalf("refused list changed the balancer")
		}
		if err := balance.ValidateMembers(bad.ms); !errors.Is(err, bad.want) {
			t.Errorf("ValidateMembers(%v) = %v", bad.ms, err)
		}
	}

	// m1 gets a new weight, m2 survives unchanged, m0 leaves, m3 joins.
	next := []balance.Member{{URL: ms[1].URL, Weight: 3}, ms[2], {URL: "http://m3:80", Zone: "z"}}
	if ok, err := b.SetMembers(5, next); !ok || err != nil {
		t.Fatalf("SetMembers(5) = %v, %v", ok, err)
	}
	if b.Epoch() != 5 {
		t.Fatalf("epoch %d", b.Epoch())
	}
	eps := b.Endpoints()
	if len(eps) != 3 || eps[1] != old[2] {
		t.Fatalf("a surviving member did not keep its endpoint")
	}
	if eps[0] == old[1] || eps[0].Member.Weight != 3 {
		t.Fatalf("re-weighted member: %+v", eps[0].Member)
	}
	if got := eps[1].Cost(now, float64(10*time.Second)); got != cost2 {
		t.Errorf("surviving cost %v, want %v", got, cost2)
	}
	st := stateOf(b, ms[1].URL, now)
	if st.State != balance.Ejected || st.Failures != 3 || st.Picks != 0 {
		t.Errorf("re-weighted member lost its health or counters: %+v", st)
	}
	if got := eligible(b); !slices.Equal(got, []string{ms[2].URL, "http://m3:80"}) {
		t.Errorf("eligible %v", got)
	}
	if st := stateOf(b, ms[0].URL, now); st.Member.URL != "" {
		t.Errorf("removed member still listed")
	}
	// Stale and equal epochs are ignored.
	for _, ep := range []uint64{4, 5} {
		if ok, err := b.SetMembers(ep, members(1)); ok || err != nil || len(b.Endpoints()) != 3 {
			t.Errorf("SetMembers(%d) at 5 = %v, %v", ep, ok, err)
		}
	}
	// A stale epoch is ignored before the list is even looked at.
	if ok, err := b.SetMembers(2, nil); ok || err != nil {
		t.Errorf("stale invalid list = %v, %v", ok, err)
	}
}

// TestSetMembersKeepsDraining: a member that re-registers with a new weight
// while draining is still draining.
func TestSetMembersKeepsDraining(t *testing.T) {
	ms := members(3)
	b := newBalancer(t, balance.Config{}, ms)
	b.Report(b.Endpoints()[0], sec, wire.Load{TimeMillis: 1, InFlight: 4, State: wire.StateDraining})
	next := slices.Clone(ms)
	next[0].Weight = 2
	if ok, err := b.SetMembers(1, next); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if got, want := eligible(b), urlsOf(ms, 1, 2); !slices.Equal(got, want) {
		t.Errorf("eligible %v, want %v", got, want)
	}
	if e := b.Endpoints()[0]; e.ReportedOthers(sec) != 4 {
		t.Errorf("load report lost: others %d", e.ReportedOthers(sec))
	}
}

// TestDoneOutcomes: what each outcome does to the cost estimate and counters.
func TestDoneOutcomes(t *testing.T) {
	b := newBalancer(t, balance.Config{}, members(1))
	e := b.Endpoints()[0]
	tau := float64(10 * time.Second)
	now := 100 * sec // the initial 10ms has decayed to nothing
	succeed(b, e, now)
	if got := e.Cost(now, tau); got != float64(time.Millisecond) {
		t.Fatalf("cost after success %v", got)
	}
	// A fast failure (refused connection) does not make the member look fast.
	b.Acquire(e)
	b.Done(e, now, time.Microsecond, balance.Failure)
	if got := e.Cost(now, tau); got != float64(time.Millisecond) {
		t.Fatalf("cost after fast failure %v", got)
	}
	// A slow failure (timeout) makes it look slow: 1/16 of the way to 1s.
	ms := float64(time.Millisecond)
	b.Acquire(e)
	b.Done(e, now, time.Second, balance.Failure)
	want := ms + (1000*ms-ms)/16
	if got := e.Cost(now, tau); got != want {
		t.Fatalf("cost after slow failure %v, want %v", got, want)
	}
	// An abandoned attempt says nothing about health and never lowers cost.
	b.Acquire(e)
	b.Done(e, now, time.Microsecond, balance.Abandoned)
	if got := e.Cost(now, tau); got != want {
		t.Fatalf("cost after short abandoned attempt %v", got)
	}
	b.Acquire(e)
	b.Done(e, now, 2*time.Second, balance.Abandoned)
	want += (2000*ms - want) / 16
	if got := e.Cost(now, tau); got != want {
		t.Fatalf("cost after long abandoned attempt %v, want %v", got, want)
	}
	st := stateOf(b, e.Member.URL, now)
	if st.Successes != 1 || st.Failures != 2 || st.InFlight != 0 || st.State != balance.Healthy {
		t.Fatalf("stats %+v", st)
	}
}

// TestConcurrentBalancer hammers every method at once, for -race, and
// checks that in-flight counts return to zero.
func TestConcurrentBalancer(t *testing.T) {
	ms := members(6)
	b := newBalancer(t, balance.Config{Policy: policy.P2C{}}, ms)
	var wg sync.WaitGroup
	var clock sync.Mutex
	now := sec
	tick := func() int64 {
		clock.Lock()
		defer clock.Unlock()
		now += int64(time.Millisecond)
		return now
	}
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			in := &balance.PickInput{Rand: newRand(uint64(g))}
			for range 2000 {
				in.Now = tick()
				e := b.Pick(in)
				if e == nil {
					t.Error("nil pick")
					return
				}
				if r.IntN(10) == 0 {
					b.Report(e, in.Now, wire.Load{TimeMillis: 1, InFlight: r.IntN(5), State: wire.State(r.IntN(2))})
				}
				b.Done(e, tick(), time.Duration(r.IntN(1000))*time.Microsecond, balance.Outcome(r.IntN(3)))
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			b.Tick(tick(), i%2 == 0)
			b.Stats(tick())
			if i%20 == 0 {
				next := slices.Clone(ms)
				next[i%6].Weight = float64(i%3 + 1)
				b.SetMembers(uint64(i+1), next)
			}
		}
	}()
	wg.Wait()
	for _, s := range b.Stats(now) {
		if s.InFlight != 0 {
			t.Errorf("%s: %d still in flight", s.Member.URL, s.InFlight)
		}
	}
}

// TestSilence: a member is silent from the pick that made it busy until an
// attempt on it ends; idle or made busy by Acquire (no time) it is not.
func TestSilence(t *testing.T) {
	b := newBalancer(t, balance.Config{}, members(1))
	e := b.Endpoints()[0]
	now := 10 * sec
	if got := e.Silence(now); got != 0 {
		t.Fatalf("idle member silent for %v", time.Duration(got))
	}
	if b.Pick(&balance.PickInput{Now: now, Rand: newRand(1)}) != e {
		t.Fatal("no pick")
	}
	b.Pick(&balance.PickInput{Now: now + 5*int64(time.Millisecond), Rand: newRand(1)}) // already busy: no reset
	if got := e.Silence(now + 30*int64(time.Millisecond)); got != 30*int64(time.Millisecond) {
		t.Fatalf("silence %v 30ms after the first pick, want 30ms", time.Duration(got))
	}
	b.Done(e, now+40*int64(time.Millisecond), 40*time.Millisecond, balance.Success) // one ends: heard from
	if got := e.Silence(now + 50*int64(time.Millisecond)); got != 10*int64(time.Millisecond) {
		t.Fatalf("silence %v 10ms after a reply with one still in flight, want 10ms", time.Duration(got))
	}
	b.Done(e, now+60*int64(time.Millisecond), time.Millisecond, balance.Success)
	if got := e.Silence(now + sec); got != 0 {
		t.Fatalf("idle again but silent for %v", time.Duration(got))
	}
	b.Acquire(e) // a poll: no time known
	if got := e.Silence(now + 2*sec); got != 0 {
		t.Fatalf("busy by Acquire only, silent for %v; want 0 (unknown)", time.Duration(got))
	}
}

// TestHold: a held reply counts in flight (for scores and for working out
// other clients' load from a report) but not as silence, and Unhold
// without Hold is a bug that panics.
func TestHold(t *testing.T) {
	b := newBalancer(t, balance.Config{}, members(1))
	e := b.Endpoints()[0]
	now := 10 * sec
	b.Pick(&balance.PickInput{Now: now, Rand: newRand(1)})
	b.Hold(e)
	b.Done(e, now+int64(time.Millisecond), time.Millisecond, balance.Success)
	if got := e.InFlight(); got != 1 {
		t.Fatalf("in flight %d while the reply is read, want 1", got)
	}
	if got := e.Silence(now + sec); got != 0 {
		t.Fatalf("a member sending us a body looks silent for %v", time.Duration(got))
	}
	// The member reports 3 in flight: ours (held) and 2 of others.
	b.Report(e, now+sec, wire.Load{InFlight: 3, Capacity: 4})
	if got := e.ReportedOthers(now + sec); got != 2 {
		t.Fatalf("others %d, want 2 (our held reply is ours)", got)
	}
	b.Unhold(e, now+2*sec)
	if got := e.InFlight(); got != 0 {
		t.Fatalf("in flight %d after Unhold, want 0", got)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Unhold without Hold did not panic")
		}
	}()
	b.Unhold(e, now+3*sec)
}
