package director_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  director.Config
		ok   bool
	}{
		{"zero", director.Config{}, true},
		{"named policy", director.Config{Policy: "locality:round-robin"}, true},
		{"unknown policy", director.Config{Policy: "fastest"}, false},
		{"policy impl wins", director.Config{Policy: "fastest", PolicyImpl: inOrder{}}, true},
		{"max attempts", director.Config{MaxAttempts: 101}, false},
		{"negative attempts", director.Config{MaxAttempts: -1}, false},
		{"attempt timeout", director.Config{AttemptTimeout: -1}, false},
		{"backoff", director.Config{RetryBackoff: -1}, false},
		{"quantile 1", director.Config{Hedge: director.HedgeConfig{Quantile: 1}}, false},
		{"max hedges", director.Config{Hedge: director.HedgeConfig{MaxHedges: 9}}, false},
		{"min delay", director.Config{Hedge: director.HedgeConfig{MinDelay: -1}}, false},
		{"tick", director.Config{TickInterval: -1}, false},
		{"probe timeout", director.Config{ProbeTimeout: -1}, false},
		{"budget", director.Config{Budget: balance.BudgetConfig{Ratio: 11}}, false},
		{"health", director.Config{Health: balance.HealthConfig{Jitter: 1}}, false},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
		d, err := director.New(tc.cfg, members(2))
		if (err == nil) != tc.ok {
			t.Errorf("%s: New error %v, want ok=%v", tc.name, err, tc.ok)
		}
		if d != nil {
			d.Close()
		}
	}
	if _, err := director.New(director.Config{}, nil); !errors.Is(err, balance.ErrNoMembers) {
		t.Errorf("New with no members: %v", err)
	}
	d := newDirector(t, director.Config{}, members(1))
	if d.Policy() != policy.Default {
		t.Errorf("default policy %q", d.Policy())
	}
}

func TestClassify(t *testing.T) {
	plain := errors.New("boom")
	for _, tc := range []struct {
		err  error
		want director.Class
	}{
		{refused, director.NotReached},
		{fmt.Errorf("wrapped: %w", syscall.EHOSTUNREACH), director.NotReached},
		{&net.OpError{Op: "dial", Net: "tcp", Err: plain}, director.NotReached},
		{&net.OpError{Op: "read", Net: "tcp", Err: plain}, director.MaybeProcessed},
		{&net.DNSError{Err: "no such host", Name: "x"}, director.NotReached},
		{plain, director.MaybeProcessed},
		{context.DeadlineExceeded, director.MaybeProcessed},
		{director.WithClass(plain, director.Permanent), director.Permanent},
		{fmt.Errorf("outer: %w", director.WithClass(refused, director.MaybeProcessed)), director.MaybeProcessed},
		{director.WithClass(plain, director.NotReached), director.NotReached},
	} {
		if got := director.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if director.WithClass(nil, director.Permanent) != nil {
		t.Error("WithClass(nil) != nil")
	}
	// The class wrapper keeps the error visible to errors.Is.
	if err := director.WithClass(refused, director.Permanent); !errors.Is(err, refused) || err.Error() != refused.Error() {
		t.Errorf("WithClass hides the error: %v", err)
	}
}

// TestFailoverCleanup: over many requests with random members failing,
// every failed attempt is cleaned up exactly once, with its own member and
// error, before the next attempt starts; no member is tried twice while an
// untried one exists; and the error lists every attempt.
func TestFailoverCleanup(t *testing.T) {
	const n = 5
	ms := members(n)
	d := newDirector(t, director.Config{
		MaxAttempts: n,
		Budget:      balance.BudgetConfig{Ratio: 10, Burst: 1e6},
		// Keep everyone eligible: this test is about one request's attempts.
		Health: balance.HealthConfig{ConsecutiveFailures: 1 << 30, MinRequests: 1 << 30},
	}, ms)
	r := rand.New(rand.NewPCG(7, 7))
	for req := range 300 {
		down := map[string]bool{}
		for _, m := range ms {
			down[m.URL] = r.IntN(3) == 0
		}
		errOf := func(url string) error { return fmt.Errorf("%s: %w", url, refused) }
		s := &script{fn: func(ctx context.Context, a *director.Attempt) error {
			if down[a.Member.URL] {
				return errOf(a.Member.URL)
			}
			a.Result = a.Member.URL
			return nil
		}}
		a, err := d.Apply(context.Background(), s)
		log := s.events()
		var actions []event
		for i, ev := range log {
			if ev.cleanup {
				continue
			}
			actions = append(actions, ev)
			if ev.number != len(actions) {
				t.Fatalf("request %d: attempt numbers %v", req, log)
			}
			for _, prev := range actions[:len(actions)-1] {
				if prev.member == ev.member {
					t.Fatalf("request %d: %s tried twice with untried members left: %v", req, ev.member, log)
				}
			}
			if !down[ev.member] {
				if i != len(log)-1 {
					t.Fatalf("request %d: events after the success: %v", req, log)
				}
				continue
			}
			// The failed attempt's cleanup comes next, before anything else.
			if i+1 >= len(log) || !log[i+1].cleanup || log[i+1].member != ev.member || log[i+1].number != ev.number ||
				log[i+1].err.Error() != errOf(ev.member).Error() {
				t.Fatalf("request %d: attempt %v not cleaned up right after: %v", req, ev, log)
			}
		}
		anyUp := false
		for _, v := range down {
			anyUp = anyUp || !v
		}
		if anyUp {
			if err != nil || a == nil || a.Result != actions[len(actions)-1].member {
				t.Fatalf("request %d: Apply = %v, %v with a member up: %v", req, a, err, log)
			}
			a.Release()
			continue
		}
		var de *director.Error
		if !errors.As(err, &de) || !errors.Is(err, director.ErrExhausted) || !errors.Is(err, refused) {
			t.Fatalf("request %d: all down, err = %v", req, err)
		}
		if len(de.Attempts) != n || len(actions) != n {
			t.Fatalf("request %d: %d attempts recorded, %d made", req, len(de.Attempts), len(actions))
		}
		for i, ae := range de.Attempts {
			if ae.Number != i+1 || ae.Member != actions[i].member || ae.Class != director.NotReached || ae.Hedge {
				t.Fatalf("request %d: attempt error %d = %+v", req, i, ae)
			}
			if !strings.Contains(err.Error(), ae.String()) {
				t.Fatalf("request %d: message %q lacks %q", req, err, ae.String())
			}
		}
	}
}

func TestErrorMessage(t *testing.T) {
	d := newDirector(t, director.Config{PolicyImpl: inOrder{}, MaxAttempts: 2}, members(3))
	err := d.Do(context.Background(), &director.Call{Do: func(ctx context.Context, a *director.Attempt) error {
		return fmt.Errorf("dial %d: %w", a.Number, refused)
	}})
	want := "director: all attempts failed: " +
		"#1 http://m0:80: not-reached: dial 1: connection refused; " +
		"#2 http://m1:80: not-reached: dial 2: connection refused"
	if err == nil || err.Error() != want {
		t.Fatalf("error\n%v\nwant\n%v", err, want)
	}
	st := d.Stats()
	if st.Requests != 1 || st.Failed != 1 || st.Retries != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestClasses: what each class of failure does to the request and to the
// member's health.
func TestClasses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		idem     bool
		attempts int   // made
		want     error // nil: the second attempt succeeds
		blamed   bool  // the failure counts against the member
	}{
		{"not reached, not idempotent", refused, false, 2, nil, true},
		{"not reached, idempotent", refused, true, 2, nil, true},
		{"maybe processed, not idempotent", errors.New("reset"), false, 1, director.ErrNotRetryable, true},
		{"maybe processed, idempotent", errors.New("reset"), true, 2, nil, true},
		{"marked maybe processed", director.WithClass(refused, director.MaybeProcessed), false, 1, director.ErrNotRetryable, true},
		{"permanent", director.WithClass(errors.New("400"), director.Permanent), false, 1, director.ErrNotRetryable, false},
		{"permanent, idempotent", director.WithClass(errors.New("400"), director.Permanent), true, 1, director.ErrNotRetryable, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDirector(t, director.Config{PolicyImpl: inOrder{}}, members(3))
			cleanups := 0
			c := &director.Call{
				Idem: tc.idem,
				Do: func(ctx context.Context, a *director.Attempt) error {
					if a.Number == 1 {
						return tc.err
					}
					return nil
				},
				OnCleanup: func(a *director.Attempt, err error) {
					cleanups++
					if a.Number != 1 || !errors.Is(err, tc.err) {
						t.Errorf("cleanup of #%d with %v", a.Number, err)
					}
				},
			}
			err := d.Do(context.Background(), c)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Do = %v, want %v", err, tc.want)
			}
			if err != nil && !errors.Is(err, tc.err) {
				t.Errorf("error %v hides the attempt's error", err)
			}
			if cleanups != 1 {
				t.Errorf("%d cleanups, want 1", cleanups)
			}
			st := d.Stats()
			var picks uint64
			for _, m := range st.Members {
				picks += m.Picks
			}
			if picks != uint64(tc.attempts) {
				t.Errorf("%d attempts, want %d", picks, tc.attempts)
			}
			m0 := memberStats(d, "http://m0:80")
			if (m0.Failures == 1) != tc.blamed {
				t.Errorf("member failures %d, blamed %v", m0.Failures, tc.blamed)
			}
		})
	}
	// A member answering with permanent errors all day stays healthy.
	d := newDirector(t, director.Config{PolicyImpl: inOrder{}}, members(2))
	perm := &director.Call{Do: func(context.Context, *director.Attempt) error {
		return director.WithClass(errors.New("404"), director.Permanent)
	}}
	for range 20 {
		d.Do(context.Background(), perm)
	}
	if m0 := memberStats(d, "http://m0:80"); m0.State != balance.Healthy || m0.Successes != 20 {
		t.Errorf("after permanent errors: %+v", m0)
	}
	// A custom classifier replaces the default.
	d = newDirector(t, director.Config{PolicyImpl: inOrder{}, Classify: func(error) director.Class { return director.NotReached }}, members(2))
	n := 0
	err := d.Do(context.Background(), &director.Call{Do: func(context.Context, *director.Attempt) error {
		n++
		return errors.New("anything")
	}})
	// Two members, three attempts: the third is a new round after a backoff.
	if n != 3 || !errors.Is(err, director.ErrExhausted) {
		t.Errorf("custom classifier: %d attempts, %v", n, err)
	}
}

func TestMaxAttemptsOne(t *testing.T) {
	d := newDirector(t, director.Config{MaxAttempts: 1}, members(3))
	n := 0
	err := d.Do(context.Background(), &director.Call{Do: func(context.Context, *director.Attempt) error {
		n++
		return refused
	}})
	if n != 1 || !errors.Is(err, director.ErrExhausted) {
		t.Fatalf("%d attempts, %v", n, err)
	}
}

func TestBudgetDeniesRetry(t *testing.T) {
	// Burst 0 would mean the default of 20; half a token is none.
	d := newDirector(t, director.Config{
		PolicyImpl: inOrder{},
		Budget:     balance.BudgetConfig{Ratio: 1e-6, Burst: 0.5, MinPerSecond: 1e-9},
	}, members(3))
	n := 0
	err := d.Do(context.Background(), &director.Call{Do: func(context.Context, *director.Attempt) error {
		n++
		return refused
	}})
	var de *director.Error
	if !errors.As(err, &de) || !errors.Is(err, director.ErrBudget) || n != 1 || len(de.Attempts) != 1 {
		t.Fatalf("%d attempts, %v", n, err)
	}
	if st := d.Stats(); st.BudgetDenied != 1 || st.Retries != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBudgetRatio: in a brown-out the budget lets through the burst plus
// Ratio retries per request, and no more.
func TestBudgetRatio(t *testing.T) {
	d, _ := fakeDirector(t, director.Config{
		PolicyImpl: inOrder{},
		Budget:     balance.BudgetConfig{Ratio: 0.2, Burst: 10, MinPerSecond: 1e-9},
		Health:     balance.HealthConfig{ConsecutiveFailures: 1 << 30, MinRequests: 1 << 30},
	}, members(2))
	fails := 0
	c := &director.Call{Do: func(ctx context.Context, a *director.Attempt) error {
		if a.Number == 1 {
			return refused
		}
		return nil
	}}
	for range 500 {
		if err := d.Do(context.Background(), c); err != nil {
			if !errors.Is(err, director.ErrBudget) {
				t.Fatal(err)
			}
			fails++
		}
	}
	st := d.Stats()
	// 10 + 0.2·500 = 110, less the deposits lost while the bucket was full.
	if st.Retries > 110 || st.Retries < 105 || int(st.BudgetDenied) != fails || st.Retries+st.BudgetDenied != 500 {
		t.Fatalf("retries %d, denied %d, failed %d", st.Retries, st.BudgetDenied, fails)
	}
}

// TestAttemptTimeout: an attempt that takes longer than AttemptTimeout is
// cancelled, blamed on its member, cleaned up, and an idempotent request
// moves on to another member; a non-idempotent one stops there.
func TestAttemptTimeout(t *testing.T) {
	for _, idem := range []bool{true, false} {
		t.Run(fmt.Sprintf("idempotent=%v", idem), func(t *testing.T) {
			d, clk := fakeDirector(t, director.Config{PolicyImpl: inOrder{}, AttemptTimeout: 100 * time.Millisecond}, members(3))
			started := make(chan int, 3)
			s := &script{idem: idem, fn: func(ctx context.Context, a *director.Attempt) error {
				started <- a.Number
				if a.Number == 1 {
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			}}
			type result struct {
				a   *director.Attempt
				err error
			}
			done := make(chan result, 1)
			go func() {
				a, err := d.Apply(context.Background(), s)
				done <- result{a, err}
			}()
			recv(t, started, "attempt 1")
			clk.Advance(99 * time.Millisecond)
			select {
			case res := <-done:
				t.Fatalf("Apply returned before the timeout: %v", res.err)
			default:
			}
			clk.Advance(time.Millisecond)
			res := recv(t, done, "Apply")
			log := s.events()
			if len(log) < 2 || !log[1].cleanup || log[1].number != 1 || !errors.Is(log[1].err, director.ErrAttemptTimeout) {
				t.Fatalf("log %v", log)
			}
			if director.Classify(log[1].err) != director.MaybeProcessed {
				t.Errorf("a timeout is %v", director.Classify(log[1].err))
			}
			if m0 := memberStats(d, "http://m0:80"); m0.Failures != 1 || m0.CostNanos < float64(100*time.Millisecond) {
				t.Errorf("timed-out member: %+v", m0)
			}
			if idem {
				if res.err != nil || res.a.Number != 2 || res.a.Member.URL != "http://m1:80" {
					t.Fatalf("Apply = %+v, %v", res.a, res.err)
				}
				res.a.Release()
			} else {
				if !errors.Is(res.err, director.ErrNotRetryable) || !errors.Is(res.err, director.ErrAttemptTimeout) {
					t.Fatalf("Apply error %v", res.err)
				}
			}
		})
	}
}

// TestEjectionReadmission: a member that keeps refusing connections is
// ejected and gets no work; when BaseEjection has passed the director's own
// ticks readmit it on probation; a strike ejects it for twice as long; and
// after that a success makes it healthy again.
func TestEjectionReadmission(t *testing.T) {
	ms := members(3)
	d, clk := fakeDirector(t, director.Config{
		Policy: "round-robin",
		Health: balance.HealthConfig{BaseEjection: time.Second, Jitter: 0.1},
	}, ms)
	var m0down atomic.Bool
	m0down.Store(true)
	var m0tries atomic.Int64
	c := &director.Call{Do: func(ctx context.Context, a *director.Attempt) error {
		if a.Member.URL == ms[0].URL {
			m0tries.Add(1)
			if m0down.Load() {
				return refused
			}
		}
		return nil
	}}
	do := func(n int) {
		t.Helper()
		for range n {
			if err := d.Do(context.Background(), c); err != nil {
				t.Fatal(err)
			}
		}
	}
	state := func() balance.State { return memberStats(d, ms[0].URL).State }
	// Round robin starts at a random member, then reaches m0 every few requests.
	for i := 0; i < 20 && m0tries.Load() < 3; i++ {
		do(1)
	}
	if state() != balance.Ejected || m0tries.Load() != 3 {
		t.Fatalf("after 3 failures: %v, %d tries", state(), m0tries.Load())
	}
	do(30)
	if m0tries.Load() != 3 {
		t.Fatal("an ejected member got work")
	}
	clk.Advance(850 * time.Millisecond) // < 1s·(1-0.1)
	if state() != balance.Ejected {
		t.Fatalf("readmitted after 850ms: %v", state())
	}
	clk.Advance(300 * time.Millisecond) // > 1s·(1+0.1), and a tick has run
	if state() != balance.Probing {
		t.Fatalf("not readmitted after 1.15s: %v", state())
	}
	do(3)
	if m0tries.Load() != 4 || state() != balance.Ejected || memberStats(d, ms[0].URL).Ejections != 2 {
		t.Fatalf("probation strike: %d tries, %v", m0tries.Load(), memberStats(d, ms[0].URL))
	}
	clk.Advance(1700 * time.Millisecond) // < 2s·0.9
	if state() != balance.Ejected {
		t.Fatal("second ejection shorter than twice the first")
	}
	m0down.Store(false)
	clk.Advance(600 * time.Millisecond)
	if state() != balance.Probing {
		t.Fatalf("not readmitted after 2.3s: %v", state())
	}
	do(3)
	if m0tries.Load() < 5 || state() != balance.Healthy {
		t.Fatalf("after a success on probation: %v, %d tries", state(), m0tries.Load())
	}
}

type probeCall struct {
	member string
	ctx    context.Context
	result chan error
}

// chanProber hands every probe to the test and waits for its verdict.
type chanProber chan probeCall

func (p chanProber) Probe(ctx context.Context, m balance.Member) error {
	c := probeCall{m.URL, ctx, make(chan error, 1)}
	p <- c
	select {
	case err := <-c.result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestProber: with a Prober an ejected member is readmitted only when a
// probe succeeds; a failed or timed-out probe ejects it for longer.
func TestProber(t *testing.T) {
	ms := members(3)
	probes := make(chanProber)
	d, clk := fakeDirector(t, director.Config{
		PolicyImpl:   inOrder{},
		Prober:       probes,
		ProbeTimeout: 5 * time.Second,
		Health:       balance.HealthConfig{BaseEjection: time.Second, Jitter: 0.01},
	}, ms)
	var m0down atomic.Bool
	m0down.Store(true)
	var m0tries atomic.Int64
	c := &director.Call{Do: func(ctx context.Context, a *director.Attempt) error {
		if a.Member.URL == ms[0].URL {
			m0tries.Add(1)
			if m0down.Load() {
				return refused
			}
		}
		return nil
	}}
	for range 3 {
		if err := d.Do(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	m0 := func() balance.EndpointStats { return memberStats(d, ms[0].URL) }
	if m0().State != balance.Ejected {
		t.Fatalf("not ejected: %+v", m0())
	}

	// The ejection ends: a probe, and no traffic until it answers.
	clk.Advance(1100 * time.Millisecond)
	p := recv(t, probes, "probe 1")
	if p.member != ms[0].URL {
		t.Fatalf("probed %s", p.member)
	}
	for range 5 {
		d.Do(context.Background(), c)
	}
	if m0tries.Load() != 3 || m0().State != balance.Ejected {
		t.Fatalf("traffic before the probe answered: %d tries, %v", m0tries.Load(), m0().State)
	}
	clk.Advance(time.Second) // more ticks: no second probe while one runs
	select {
	case p2 := <-probes:
		t.Fatalf("second probe of %s while the first runs", p2.member)
	default:
	}
	p.result <- errors.New("still down")
	waitFor(t, "the failed probe to eject", func() bool { return m0().Ejections == 2 })
	if m0().State != balance.Ejected {
		t.Fatalf("after a failed probe: %v", m0().State)
	}

	// The second ejection is twice as long: no probe after 1.5s.
	clk.Advance(1500 * time.Millisecond)
	select {
	case p2 := <-probes:
		t.Fatalf("probe of %s after 1.5s of a 2s ejection", p2.member)
	default:
	}
	// A probe that times out counts as failed.
	clk.Advance(600 * time.Millisecond)
	p = recv(t, probes, "probe 2")
	clk.Advance(5 * time.Second)
	if err := context.Cause(p.ctx); err == nil {
		t.Fatal("probe context not cancelled at ProbeTimeout")
	}
	waitFor(t, "the timed-out probe to eject", func() bool { return m0().Ejections == 3 })

	// Finally a good probe readmits it fully.
	m0down.Store(false)
	clk.Advance(4100 * time.Millisecond)
	p = recv(t, probes, "probe 3")
	p.result <- nil
	// The state changes before the new pick set is published: wait for both.
	waitFor(t, "the good probe to readmit", func() bool {
		return m0().State == balance.Healthy && slices.ContainsFunc(d.Balancer().Snapshot().Endpoints,
			func(e *balance.Endpoint) bool { return e.Member.URL == ms[0].URL })
	})
	if err := d.Do(context.Background(), c); err != nil || m0tries.Load() != 4 {
		t.Fatalf("after readmission: %v, %d tries", err, m0tries.Load())
	}
}

// TestCloseStopsProbes: Close cancels a running probe and waits for it.
func TestCloseStopsProbes(t *testing.T) {
	probes := make(chanProber)
	d, clk := fakeDirector(t, director.Config{
		PolicyImpl: inOrder{}, Prober: probes,
		Health: balance.HealthConfig{BaseEjection: time.Second},
	}, members(2))
	for range 3 {
		d.Do(context.Background(), &director.Call{Do: func(ctx context.Context, a *director.Attempt) error {
			if a.Number == 1 {
				return refused
			}
			return nil
		}})
	}
	clk.Advance(2 * time.Second)
	p := recv(t, probes, "probe")
	closed := make(chan struct{})
	go func() { d.Close(); close(closed) }()
	recv(t, closed, "Close")
	if p.ctx.Err() == nil {
		t.Fatal("Close returned with the probe still running")
	}
}

// TestBackoffRound: once every member has been tried, the director waits a
// backoff before a new round over all of them, rather than failing at once.
func TestBackoffRound(t *testing.T) {
	d, clk := fakeDirector(t, director.Config{PolicyImpl: inOrder{}, MaxAttempts: 4, RetryBackoff: 10 * time.Millisecond}, members(2))
	started := make(chan int, 4)
	s := &script{fn: func(ctx context.Context, a *director.Attempt) error {
		started <- a.Number
		if a.Number <= 2 {
			return refused
		}
		return nil
	}}
	type result struct {
		a   *director.Attempt
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := d.Apply(context.Background(), s)
		done <- result{a, err}
	}()
	recv(t, started, "attempt 1")
	recv(t, started, "attempt 2")
	// The director's tick plus the backoff timer.
	waitFor(t, "the backoff timer", func() bool { return clk.Pending() == 2 })
	clk.Advance(4 * time.Millisecond) // backoff is in [5ms, 10ms)
	select {
	case n := <-started:
		t.Fatalf("attempt %d before the backoff ended", n)
	default:
	}
	clk.Advance(6 * time.Millisecond)
	if n := recv(t, started, "attempt 3"); n != 3 {
		t.Fatalf("attempt %d", n)
	}
	res := recv(t, done, "Apply")
	if res.err != nil || res.a.Number != 3 || res.a.Member.URL != "http://m0:80" {
		t.Fatalf("Apply = %+v, %v", res.a, res.err)
	}
	res.a.Release()

	// The caller giving up during the backoff ends the request at once.
	ctx, cancel := context.WithCancel(context.Background())
	s = &script{fn: func(ctx context.Context, a *director.Attempt) error { return refused }}
	errc := make(chan error, 1)
	go func() { _, err := d.Apply(ctx, s); errc <- err }()
	waitFor(t, "the backoff timer", func() bool { return clk.Pending() == 2 })
	cancel()
	err := recv(t, errc, "Apply")
	var de *director.Error
	if !errors.As(err, &de) || !errors.Is(err, context.Canceled) || len(de.Attempts) != 2 {
		t.Fatalf("Apply = %v", err)
	}
}

// TestContextCancel: the caller's cancellation or deadline ends Apply
// promptly with the context's error in a *director.Error, cleans up the
// attempt, and does not blame the member.
func TestContextCancel(t *testing.T) {
	d := newDirector(t, director.Config{PolicyImpl: inOrder{}}, members(3))
	started := make(chan struct{}, 1)
	s := &script{idem: true, fn: func(ctx context.Context, a *director.Attempt) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := d.Apply(ctx, s); errc <- err }()
	recv(t, started, "attempt")
	cancel()
	err := recv(t, errc, "Apply")
	var de *director.Error
	if !errors.As(err, &de) || de.Reason != context.Canceled || len(de.Attempts) != 1 {
		t.Fatalf("Apply = %v", err)
	}
	if log := s.events(); len(log) != 2 || !log[1].cleanup {
		t.Fatalf("log %v", log)
	}
	if m0 := memberStats(d, "http://m0:80"); m0.Failures != 0 || m0.InFlight != 0 {
		t.Fatalf("member blamed for the caller's cancel: %+v", m0)
	}

	// A deadline.
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = d.Apply(ctx, s)
	<-started
	if !errors.As(err, &de) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply = %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Apply outlived its deadline by far")
	}

	// Already cancelled: no attempt at all.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	n := 0
	err = d.Do(ctx, &director.Call{Do: func(context.Context, *director.Attempt) error { n++; return nil }})
	if !errors.As(err, &de) || !errors.Is(err, context.Canceled) || n != 0 || len(de.Attempts) != 0 {
		t.Fatalf("Do = %v after %d attempts", err, n)
	}
}

// TestWinnerContext: the winning attempt's context stays live until Release
// (an attempt gets a context of its own when an AttemptTimeout could end it).
func TestWinnerContext(t *testing.T) {
	d := newDirector(t, director.Config{AttemptTimeout: time.Hour}, members(2))
	a, err := d.Apply(context.Background(), &director.Call{Do: func(context.Context, *director.Attempt) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if a.Context().Err() != nil {
		t.Fatal("winner's context ended before Release")
	}
	a.Release()
	a.Release() // idempotent
	if a.Context().Err() == nil {
		t.Fatal("winner's context live after Release")
	}
	var got *director.Attempt
	d.Do(context.Background(), &director.Call{Do: func(_ context.Context, a *director.Attempt) error { got = a; return nil }})
	if got.Context().Err() == nil || !got.Released() {
		t.Fatal("Do did not release")
	}
	// Without a timeout the attempt runs under the caller's context, which
	// Release must leave alone.
	plain := newDirector(t, director.Config{}, members(2))
	caller := context.Background()
	plain.Do(caller, &director.Call{Do: func(_ context.Context, a *director.Attempt) error { got = a; return nil }})
	if got.Context() != caller || !got.Released() || caller.Err() != nil {
		t.Fatal("attempt without a timeout: want the caller's context, released")
	}
}

func TestLoadReports(t *testing.T) {
	ms := members(2)
	d := newDirector(t, director.Config{PolicyImpl: inOrder{}}, ms)
	err := d.Do(context.Background(), &director.Call{Do: func(_ context.Context, a *director.Attempt) error {
		a.ReportLoad(wire.Load{TimeMillis: 1, InFlight: 9, Capacity: 16, Util: 0.5})
		a.BadReport(errors.New("garbled members record"))
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	m0 := memberStats(d, ms[0].URL)
	if m0.LastLoad.InFlight != 9 || m0.LastLoad.Capacity != 16 {
		t.Fatalf("load not applied: %+v", m0.LastLoad)
	}
	// 9 in flight at the member included our own request.
	e := d.Balancer().Endpoints()[0]
	if e.ReportedOthers(d.Now()) != 8 {
		t.Errorf("others %d, want 8", e.ReportedOthers(d.Now()))
	}
	if d.Stats().BadReports != 1 {
		t.Errorf("bad reports %d", d.Stats().BadReports)
	}
	// A draining report takes the member out of rotation.
	d.Do(context.Background(), &director.Call{Do: func(_ context.Context, a *director.Attempt) error {
		a.ReportLoad(wire.Load{TimeMillis: 1, State: wire.StateDraining})
		return nil
	}})
	var got string
	d.Do(context.Background(), &director.Call{Do: func(_ context.Context, a *director.Attempt) error {
		got = a.Member.URL
		return nil
	}})
	if got != ms[1].URL {
		t.Fatalf("request went to %s, a draining member", got)
	}
}

// TestLearnMembers: membership records on replies replace the member list
// only when LearnMembers is on, AcceptMembers agrees, the list is valid and
// its epoch is newer.
func TestLearnMembers(t *testing.T) {
	record := func(epoch uint64, urls ...string) wire.Members {
		m := wire.Members{Epoch: epoch}
		for _, u := range urls {
			m.Members = append(m.Members, wire.Member{URL: u, Weight: 2, Zone: "z"})
		}
		return m
	}
	send := func(d *director.Director, m wire.Members) {
		t.Helper()
		err := d.Do(context.Background(), &director.Call{Do: func(_ context.Context, a *director.Attempt) error {
			a.ReportMembers(m)
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	urls := func(d *director.Director) []string {
		var us []string
		for _, e := range d.Balancer().Endpoints() {
			us = append(us, e.Member.URL)
		}
		return us
	}
	initial := []string{"http://m0:80", "http://m1:80"}

	d := newDirector(t, director.Config{}, members(2))
	send(d, record(5, "http://x:80"))
	if got := urls(d); !slices.Equal(got, initial) || d.Stats().LearnedMembers != 0 {
		t.Fatalf("learned without LearnMembers: %v", got)
	}

	var vetted []uint64
	d = newDirector(t, director.Config{
		LearnMembers: true,
		AcceptMembers: func(m wire.Members) error {
			vetted = append(vetted, m.Epoch)
			if len(m.Members) > 0 && m.Members[0].URL == "http://evil:80" {
				return errors.New("not signed")
			}
			return nil
		},
	}, members(2))
	send(d, record(5, "http://m1:80", "http://m2:80"))
	if got := urls(d); !slices.Equal(got, []string{"http://m1:80", "http://m2:80"}) {
		t.Fatalf("after epoch 5: %v", got)
	}
	if e := d.Balancer().Endpoints()[1]; e.Member.Weight != 2 || e.Member.Zone != "z" {
		t.Fatalf("member attributes lost: %+v", e.Member)
	}
	st := d.Stats()
	if st.Epoch != 5 || st.LearnedMembers != 1 || st.RejectedMembers != 0 {
		t.Fatalf("stats %+v", st)
	}
	send(d, record(4, "http://old:80"))        // stale
	send(d, record(5, "http://same:80"))       // not newer
	send(d, record(6, "http://evil:80"))       // refused by AcceptMembers
	send(d, record(7))                         // empty
	send(d, record(8, "http://a", "http://a")) // duplicate
	if got := urls(d); !slices.Equal(got, []string{"http://m1:80", "http://m2:80"}) {
		t.Fatalf("a bad or stale record was applied: %v", got)
	}
	st = d.Stats()
	if st.Epoch != 5 || st.LearnedMembers != 1 || st.RejectedMembers != 3 {
		t.Fatalf("stats %+v", st)
	}
	// Records that are not newer are dropped before vetting.
	if !slices.Equal(vetted, []uint64{5, 6, 7, 8}) {
		t.Errorf("AcceptMembers saw epochs %v", vetted)
	}
	send(d, record(9, "http://m3:80"))
	if got := urls(d); !slices.Equal(got, []string{"http://m3:80"}) || d.Stats().Epoch != 9 {
		t.Fatalf("after epoch 9: %v", got)
	}
}

func TestAffinity(t *testing.T) {
	d := newDirector(t, director.Config{Policy: "hash"}, members(8))
	owner := map[uint64]string{}
	for round := range 3 {
		for k := range uint64(50) {
			var got string
			err := d.Do(context.Background(), &director.Call{Key: k, HasKey: true, Do: func(_ context.Context, a *director.Attempt) error {
				got = a.Member.URL
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			if round > 0 && owner[k] != got {
				t.Fatalf("key %d moved from %s to %s", k, owner[k], got)
			}
			owner[k] = got
		}
	}
	spread := map[string]bool{}
	for _, u := range owner {
		spread[u] = true
	}
	if len(spread) < 4 {
		t.Errorf("50 keys on %d members", len(spread))
	}
}

func TestSaveRestoreState(t *testing.T) {
	d := newDirector(t, director.Config{LearnMembers: true}, members(2))
	d.Do(context.Background(), &director.Call{Do: func(_ context.Context, a *director.Attempt) error {
		a.ReportMembers(wire.Members{Epoch: 3, Members: []wire.Member{{URL: "http://a:80"}, {URL: "http://b:80", Zone: "z"}}})
		return nil
	}})
	data, err := d.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	d2 := newDirector(t, director.Config{}, members(5))
	if err := d2.RestoreState(data); err != nil {
		t.Fatal(err)
	}
	if st := d2.Stats(); st.Epoch != 3 || len(st.Members) != 2 || st.Members[1].Member.Zone != "z" {
		t.Fatalf("restored %+v", st)
	}
	if err := d2.RestoreState([]byte("{}")); !errors.Is(err, balance.ErrBadState) {
		t.Fatalf("bad state: %v", err)
	}
}

// TestConcurrentApply: many goroutines applying requests that fail at
// random, under -race; afterwards nothing is left in flight and the
// counters agree with what the actions saw.
func TestConcurrentApply(t *testing.T) {
	const goroutines, perG = 8, 2000
	ms := members(5)
	// Round robin keeps sending to the flaky member, so its ejection is
	// exercised under concurrency: p2c, comparing every member, may stop
	// picking it after its first two failures (its cost then outweighs the
	// others') and never fail it often enough to eject it.
	d := newDirector(t, director.Config{Rand: nil, Policy: "round-robin"}, ms)
	var attempts, cleanups, failedApplies, okApplies atomic.Int64
	perMember := map[string]*atomic.Int64{}
	for _, m := range ms {
		perMember[m.URL] = new(atomic.Int64)
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 11))
			for i := range perG {
				c := &director.Call{
					Idem: i%2 == 0,
					Do: func(_ context.Context, a *director.Attempt) error {
						attempts.Add(1)
						perMember[a.Member.URL].Add(1)
						if a.Member.URL == ms[0].URL && r.IntN(2) == 0 {
							return refused // one flaky member gets ejected now and then
						}
						switch r.IntN(20) {
						case 0:
							return refused
						case 1:
							return errors.New("reset")
						case 2:
							return director.WithClass(errors.New("400"), director.Permanent)
						}
						return nil
					},
					OnCleanup: func(*director.Attempt, error) { cleanups.Add(1) },
				}
				if err := d.Do(context.Background(), c); err != nil {
					var de *director.Error
					if !errors.As(err, &de) || len(de.Attempts) == 0 {
						t.Errorf("error %v", err)
						return
					}
					failedApplies.Add(1)
				} else {
					okApplies.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	st := d.Stats()
	if st.Requests != goroutines*perG || st.Failed != uint64(failedApplies.Load()) {
		t.Errorf("requests %d failed %d, want %d %d", st.Requests, st.Failed, goroutines*perG, failedApplies.Load())
	}
	if st.Retries != uint64(attempts.Load())-st.Requests {
		t.Errorf("retries %d, attempts %d, requests %d", st.Retries, attempts.Load(), st.Requests)
	}
	if cleanups.Load() != attempts.Load()-okApplies.Load() {
		t.Errorf("%d cleanups for %d attempts of which %d succeeded", cleanups.Load(), attempts.Load(), okApplies.Load())
	}
	var picks, outcomes uint64
	for _, m := range st.Members {
		if m.InFlight != 0 {
			t.Errorf("%s: %d in flight", m.Member.URL, m.InFlight)
		}
		if m.Picks != uint64(perMember[m.Member.URL].Load()) {
			t.Errorf("%s: %d picks, %d attempts", m.Member.URL, m.Picks, perMember[m.Member.URL].Load())
		}
		picks += m.Picks
		outcomes += m.Successes + m.Failures
	}
	if picks != uint64(attempts.Load()) || outcomes != picks {
		t.Errorf("picks %d, outcomes %d, attempts %d", picks, outcomes, attempts.Load())
	}
	if memberStats(d, ms[0].URL).Ejections == 0 {
		t.Errorf("the flaky member was never ejected")
	}
	t.Logf("%d attempts, %d failed requests, stats %+v", attempts.Load(), failedApplies.Load(), st)
}

// TestReleaseEndsInFlight: the winning attempt stays counted in flight at
// its member until Release (its reply may still be streaming), and a
// second Release changes nothing.
func TestReleaseEndsInFlight(t *testing.T) {
	d, err := director.New(director.Config{}, members(1))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	e := d.Balancer().Endpoints()[0]
	a, err := d.Apply(context.Background(), &script{fn: func(context.Context, *director.Attempt) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.InFlight(); got != 1 {
		t.Fatalf("in flight %d before Release, want 1", got)
	}
	a.Release()
	a.Release()
	if got := e.InFlight(); got != 0 {
		t.Fatalf("in flight %d after Release, want 0", got)
	}
	// A failed attempt is not held.
	_, err = d.Apply(context.Background(), &script{fn: func(context.Context, *director.Attempt) error {
		return director.WithClass(errors.New("no"), director.Permanent)
	}})
	if err == nil {
		t.Fatal("want an error")
	}
	if got := e.InFlight(); got != 0 {
		t.Fatalf("in flight %d after a failed request, want 0", got)
	}
}
