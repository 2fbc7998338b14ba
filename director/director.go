// Package director is the runtime around the pure balance core: the Go form
// of the Smart Clients paper's IDirector. Apply performs a request's action
// on a member of the director's choosing; if the member fails in a way that
// is safe to retry, the director calls the request's cleanup and re-applies
// it on a member not yet tried, within a retry budget, optionally hedging
// slow idempotent attempts. It owns the goroutines, timers and clock the core
// must not have: attempt timeouts, hedge timers, ejection expiry and probes.
package director

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/wire"
)

// Request is the Go form of the paper's IRequest.
type Request interface {
	// Action performs the request on a.Member. It must respect ctx, which
	// ends when the attempt times out, loses a hedge race or the caller
	// gives up. A hedged request's Action may run on two members at once.
	Action(ctx context.Context, a *Attempt) error
	// Cleanup is called once for every attempt that did not become the
	// result, with the error it failed with, before the request is
	// re-applied elsewhere. For a hedge loser that finishes after the winner
	// it is called later, from the loser's goroutine, with ErrHedgeLost.
	Cleanup(a *Attempt, err error)
}

// Idempotent is implemented by requests that may be re-applied after a
// member maybe processed them, and hedged.
type Idempotent interface{ Idempotent() bool }

// Keyed is implemented by requests with a session-affinity key.
type Keyed interface{ AffinityKey() (uint64, bool) }

// Call is a Request built from functions.
type Call struct {
	Do        func(ctx context.Context, a *Attempt) error
	OnCleanup func(a *Attempt, err error) // optional
	Idem      bool                        // see Idempotent
	Key       uint64                      // see Keyed
	HasKey    bool
}

func (c *Call) Action(ctx context.Context, a *Attempt) error { return c.Do(ctx, a) }
func (c *Call) Cleanup(a *Attempt, err error) {
	if c.OnCleanup != nil {
		c.OnCleanup(a, err)
	}
}
func (c *Call) Idempotent() bool            { return c.Idem }
func (c *Call) AffinityKey() (uint64, bool) { return c.Key, c.HasKey }

// Attempt is one try of a request on one member.
type Attempt struct {
	Member balance.Member
	Number int  // 1-based
	Hedge  bool // started as a hedge
	// Result is free for the Action to hand a value (a response) back to the
	// caller of Apply.
	Result any

	d        *Director
	ep       *balance.Endpoint
	ctx      context.Context
	cancel   context.CancelCauseFunc
	start    int64
	load     wire.Load
	hasLoad  bool
	members  *wire.Members
	released atomic.Bool
	held     bool // succeeded: counted in flight at its member until Release
}

// ReportLoad hands the director a load report that came with the reply.
// Call it from Action only.
func (a *Attempt) ReportLoad(l wire.Load) { a.load, a.hasLoad = l, true }

// ReportMembers hands the director a membership record that came with the
// reply. Call it from Action only.
func (a *Attempt) ReportMembers(m wire.Members) { a.members = &m }

// BadReport counts a load or membership record that could not be parsed.
func (a *Attempt) BadReport(error) { a.d.badReports.Add(1) }

// Context is the attempt's context. For the winning attempt it stays live
// until Release, so a streamed result can still be read. An attempt that
// nothing could end early (no AttemptTimeout, no hedge race) runs under the
// caller's context itself, which Release leaves alone.
func (a *Attempt) Context() context.Context { return a.ctx }

// Released reports whether Release has been called.
func (a *Attempt) Released() bool { return a.released.Load() }

// Release ends the attempt's context and, for a successful attempt, its
// count in flight at the member: a reply still being read (a download)
// keeps the member loaded in the director's eyes until then. Call it once
// done with Result; calls after the first do nothing.
func (a *Attempt) Release() {
	if !a.released.CompareAndSwap(false, true) {
		return
	}
	if a.cancel != nil {
		a.cancel(context.Canceled)
	}
	if a.held {
		a.d.bal.Unhold(a.ep, a.d.Now())
	}
}

// Director picks members for requests. It is safe for concurrent use.
type Director struct {
	cfg    Config
	bal    *balance.Balancer
	budget *balance.Budget
	lat    *balance.Latency
	pol    string
	origin time.Time

	closeOnce sync.Once
	closed    chan struct{}
	tickMu    sync.Mutex

	requests, failed, retries, hedges, budgetDenied atomic.Uint64
	badReports, rejectedMembers, learned            atomic.Uint64
	polls, pollErrors                               atomic.Uint64
	probesRunning                                   sync.WaitGroup
}

// GlobalRand is the balance.Rand every director uses unless Config.Rand
// says otherwise: math/rand/v2's global generator, safe for concurrent use.
type GlobalRand struct{}

// Uint64 implements balance.Rand.
func (GlobalRand) Uint64() uint64 { return rand.Uint64() }

// New returns a director over members. Call Close when done.
func New(cfg Config, members []balance.Member) (*Director, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	pol := cfg.PolicyImpl
	if pol == nil {
		var err error
		if pol, err = policy.New(cfg.Policy); err != nil {
			return nil, err
		}
	}
	bal, err := balance.New(balance.Config{
		Policy: pol, Health: cfg.Health, CostDecay: cfg.CostDecay, PeakEWMA: cfg.PeakEWMA,
		InitialCost: cfg.InitialCost, LoadTTL: cfg.LoadTTL, Zone: cfg.Zone,
	}, members, cfg.Rand)
	if err != nil {
		return nil, err
	}
	if cfg.Epoch > 0 {
		if _, err := bal.SetMembers(cfg.Epoch, members); err != nil {
			return nil, err
		}
	}
	d := &Director{
		cfg:    cfg,
		bal:    bal,
		pol:    pol.Name(),
		origin: cfg.Clock.Now(),
		closed: make(chan struct{}),
	}
	d.budget = balance.NewBudget(cfg.Budget, 0)
	d.lat = balance.NewLatency(0, 0)
	d.armTick()
	if cfg.Poller != nil {
		d.armPoll()
	}
	return d, nil
}

// Close stops the director's background work and waits for running probes.
func (d *Director) Close() {
	d.closeOnce.Do(func() { close(d.closed) })
	d.probesRunning.Wait()
}

// Balancer exposes the core, for stats pages and state saving.
func (d *Director) Balancer() *balance.Balancer { return d.bal }

// Policy returns the name of the selection policy in use.
func (d *Director) Policy() string { return d.pol }

// Config returns the director's configuration with defaults applied, so an
// adapter can tell whether attempts may be cancelled by a timeout or a hedge.
func (d *Director) Config() Config { return d.cfg }

// Now returns the director's time: nanoseconds since it was created.
func (d *Director) Now() int64 { return int64(d.cfg.Clock.Now().Sub(d.origin)) }

func (d *Director) armTick() {
	d.cfg.Clock.AfterFunc(d.cfg.TickInterval, func() {
		select {
		case <-d.closed:
			return
		default:
		}
		d.Tick()
		d.armTick()
	})
}

// Tick readmits members whose ejection ended (probing them first if a
// Prober is set). The director calls it every TickInterval.
func (d *Director) Tick() {
	d.tickMu.Lock()
	defer d.tickMu.Unlock()
	probes, _ := d.bal.Tick(d.Now(), d.cfg.Prober != nil)
	for _, e := range probes {
		d.probesRunning.Add(1)
		go d.probe(e)
	}
}

func (d *Director) probe(e *balance.Endpoint) {
	defer d.probesRunning.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t := d.cfg.Clock.AfterFunc(d.cfg.ProbeTimeout, cancel)
	defer t.Stop()
	go func() {
		select {
		case <-d.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := d.cfg.Prober.Probe(ctx, e.Member)
	d.bal.ProbeResult(e, d.Now(), err == nil)
}

// Do applies r and releases the winning attempt at once: the form to use
// when the result needs no live context after Action returns.
func (d *Director) Do(ctx context.Context, r Request) error {
	a, err := d.Apply(ctx, r)
	if a != nil {
		a.Release()
	}
	return err
}

// Apply performs r on a member of the director's choosing, re-applying it
// elsewhere after a failure that is safe to retry (see Class). It returns
// the successful attempt, whose Release the caller must call, or an *Error
// carrying every attempt. The paper's apply returns false where this
// returns an error wrapping ErrExhausted.
func (d *Director) Apply(ctx context.Context, r Request) (*Attempt, error) {
	d.requests.Add(1)
	select {
	case <-d.closed:
		return nil, d.fail(ErrClosed, nil)
	default:
	}
	idem := false
	if i, ok := r.(Idempotent); ok {
		idem = i.Idempotent()
	}
	var key uint64
	var hasKey bool
	if k, ok := r.(Keyed); ok {
		key, hasKey = k.AffinityKey()
	}
	now := d.Now() // read the clock once per attempt: it is a large share of Apply's cost
	d.budget.Deposit(now)

	// The pick input escapes through the Picker interface; allocate it and
	// the tried list together, once per request.
	st := new(applyState)
	tried := st.tried[:0]
	var errs []AttemptError
	number, round := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, d.fail(err, errs)
		}
		if number >= d.cfg.MaxAttempts {
			return nil, d.fail(ErrExhausted, errs)
		}
		if number > 0 {
			if !d.budget.Withdraw(now) {
				d.budgetDenied.Add(1)
				return nil, d.fail(ErrBudget, errs)
			}
			d.retries.Add(1)
		}
		st.in = balance.PickInput{Now: now, Rand: d.cfg.Rand, Tried: tried, Key: key, HasKey: hasKey}
		in := &st.in
		e := d.bal.Pick(in)
		if e == nil {
			// Every eligible member has been tried: start a new round after
			// a backoff, so a brief outage of a small service is ridden out.
			round++
			if err := d.sleep(ctx, d.backoff(round)); err != nil {
				return nil, d.fail(err, errs)
			}
			tried = tried[:0]
			now = d.Now()
			in.Now, in.Tried = now, nil
			if e = d.bal.Pick(in); e == nil {
				return nil, d.fail(ErrExhausted, errs)
			}
		}
		number++
		var win *Attempt
		var fails []AttemptError
		if idem && d.cfg.Hedge.Enabled {
			win, fails, number, tried = d.race(ctx, r, e, number, tried, in)
			now = d.Now()
		} else {
			tried = append(tried, e)
			a := d.newAttempt(ctx, e, number, false, false)
			a.start = now
			var err error
			if now, err = d.run(a, r); err == nil {
				return a, nil
			} else {
				fails = []AttemptError{d.attemptError(a, err)}
				r.Cleanup(a, err)
				a.Release()
			}
		}
		if win != nil {
			return win, nil
		}
		errs = append(errs, fails...)
		if err := ctx.Err(); err != nil {
			return nil, d.fail(err, errs)
		}
		last := fails[len(fails)-1]
		if last.Class == Permanent || (last.Class == MaybeProcessed && !idem) {
			return nil, d.fail(ErrNotRetryable, errs)
		}
	}
}

func (d *Director) fail(reason error, errs []AttemptError) error {
	d.failed.Add(1)
	return &Error{Reason: reason, Attempts: errs}
}

func (d *Director) backoff(round int) time.Duration {
	b := d.cfg.RetryBackoff << min(round-1, 10)
	// "Equal jitter": uniform in [b/2, b), so a round never comes too early.
	return b/2 + time.Duration(balance.Float01(d.cfg.Rand)*float64(b/2))
}

func (d *Director) sleep(ctx context.Context, dur time.Duration) error {
	done := make(chan struct{})
	t := d.cfg.Clock.AfterFunc(dur, func() { close(done) })
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}

// applyState is the per-request scratch space of Apply.
type applyState struct {
	in    balance.PickInput
	tried [8]*balance.Endpoint
}

// newAttempt starts an attempt on e. An attempt gets a context of its own
// only when something may end it early (an attempt timeout, or a hedge race
// given cancellable); otherwise it runs under the caller's context, which
// saves an allocation and a cancellation per request.
func (d *Director) newAttempt(ctx context.Context, e *balance.Endpoint, n int, hedge, cancellable bool) *Attempt {
	a := &Attempt{Member: e.Member, Number: n, Hedge: hedge, d: d, ep: e, ctx: ctx}
	if cancellable || d.cfg.AttemptTimeout > 0 {
		a.ctx, a.cancel = context.WithCancelCause(ctx)
	}
	return a
}

// run performs one attempt, begun at a.start on the endpoint Pick chose, and
// feeds the outcome back to the core. It returns the time the attempt ended
// and the action's error, annotated when the attempt timed out.
func (d *Director) run(a *Attempt, r Request) (int64, error) {
	var timer interface{ Stop() bool }
	if d.cfg.AttemptTimeout > 0 {
		timer = d.cfg.Clock.AfterFunc(d.cfg.AttemptTimeout, func() { a.cancel(ErrAttemptTimeout) })
	}
	err := r.Action(a.ctx, a)
	if timer != nil {
		timer.Stop()
	}
	now := d.Now()
	rtt := time.Duration(now - a.start)
	if a.hasLoad {
		d.bal.Report(a.ep, now, a.load)
	}
	if a.members != nil {
		d.learn(*a.members)
	}
	if err == nil {
		d.lat.Record(now, rtt)
		// The latency sample is the time to the reply; the member stays
		// counted in flight until the caller has read it (Release).
		a.held = true
		d.bal.Hold(a.ep)
		d.bal.Done(a.ep, now, rtt, balance.Success)
		return now, nil
	}
	cause := context.Cause(a.ctx)
	switch {
	case errors.Is(cause, ErrAttemptTimeout):
		err = WithClass(&timeoutError{err}, MaybeProcessed)
		d.bal.Done(a.ep, now, rtt, balance.Failure)
	case cause != nil:
		// The caller gave up or another attempt won: not the member's fault.
		d.bal.Done(a.ep, now, rtt, balance.Abandoned)
	case d.cfg.Classify(err) == Permanent:
		d.bal.Done(a.ep, now, rtt, balance.Success) // it answered
	default:
		d.bal.Done(a.ep, now, rtt, balance.Failure)
	}
	return now, err
}

type timeoutError struct{ err error }

func (t *timeoutError) Error() string   { return ErrAttemptTimeout.Error() + ": " + t.err.Error() }
func (t *timeoutError) Unwrap() []error { return []error{ErrAttemptTimeout, t.err} }

func (d *Director) attemptError(a *Attempt, err error) AttemptError {
	return AttemptError{Member: a.Member.URL, Number: a.Number, Hedge: a.Hedge, Class: d.cfg.Classify(err), Err: err}
}

func (d *Director) learn(m wire.Members) {
	if !d.cfg.LearnMembers || m.Epoch <= d.bal.Epoch() {
		return // nothing new: skip the vetting, and do not count it as refused
	}
	if f := d.cfg.AcceptMembers; f != nil {
		if err := f(m); err != nil {
			d.rejectedMembers.Add(1)
			return
		}
	}
	ms := make([]balance.Member, len(m.Members))
	for i, x := range m.Members {
		ms[i] = balance.Member{URL: x.URL, Weight: x.Weight, Zone: x.Zone}
	}
	ok, err := d.bal.SetMembers(m.Epoch, ms)
	switch {
	case err != nil:
		d.rejectedMembers.Add(1)
	case ok:
		d.learned.Add(1)
	}
}
