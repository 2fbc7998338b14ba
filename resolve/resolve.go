// Package resolve finds the newest valid service certificate for a
// service://NAME by asking several roots at once: HTTP(S) servers publishing
// it at a well-known path, DNS TXT records and local directories.
//
// Roots are untrusted. Any of them may be down, slow, stale or hostile, so a
// root only supplies bytes; trust comes from the injected Verify function
// (package cert's verifier in production), and every read is bounded so a
// hostile root cannot make the client buffer more than MaxCertSize bytes.
// The Resolver asks every root in parallel, keeps the highest valid version,
// refuses versions below the one already cached (no rollback) and, once the
// first valid answer is in, waits at most a short grace period for a higher
// version from slower roots.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/smartclient/smartclient/clock"
)

// Verify checks a certificate's bytes (signature, trust, service name, time
// window) and returns its version. The Resolver calls it from the goroutine
// running Resolve, one call at a time, so it need not be safe for
// concurrent use; it must not block on the network.
type Verify func(data []byte) (version uint64, err error)

// Defaults for the zero Resolver fields.
const (
	DefaultGrace   = 250 * time.Millisecond
	DefaultTimeout = 10 * time.Second
)

// Sentinel errors, wrapped in the errors Resolve and the roots return.
var (
	// ErrNotFound: the root answered but has no certificate for the service
	// (HTTP 404, a missing file, NXDOMAIN or no TXT record).
	ErrNotFound = errors.New("no certificate published")
	// ErrTooLarge: the root sent more than the size limit; nothing was kept.
	ErrTooLarge = errors.New("certificate too large")
	// ErrRollback: a valid certificate older than Resolver.MinVersion.
	ErrRollback = errors.New("rollback refused")
	// ErrLate: the root had not answered when Resolve returned because the
	// grace period after the first valid answer had run out.
	ErrLate = errors.New("no answer within the grace period")
	// ErrTimeout: the root had not answered within Resolver.Timeout.
	ErrTimeout = errors.New("timed out")
)

// Resolver resolves service names against a set of roots. Its zero value
// is not usable: Roots and Verify are required. A Resolver may be used by
// several goroutines at once as long as its fields are not changed.
type Resolver struct {
	// Roots are asked in parallel; at least one is required.
	Roots []Root
	// Verify decides whether a root's bytes are a valid certificate; required.
	Verify Verify
	// Grace is how long Resolve waits, after the first valid answer, for a
	// higher version from roots that have not answered yet. 0 means
	// DefaultGrace (250ms); negative means return the first valid answer at
	// once (only answers already received are compared).
	Grace time.Duration
	// Timeout bounds the whole resolution when no valid answer arrives.
	// 0 means DefaultTimeout (10s); negative is invalid.
	Timeout time.Duration
	// MinVersion is the version of the certificate the caller already has
	// (0: none). A valid certificate with a lower version is refused with
	// ErrRollback; an equal version is accepted.
	MinVersion uint64
	// Clock measures Grace, Timeout and Outcome.Elapsed; nil means
	// clock.Real.
	Clock clock.Clock
	// OnOutcome, if set, is called from Resolve's goroutine as soon as a
	// root's outcome is known (for progress output); it must not block.
	// Roots still pending when Resolve returns are reported too.
	OnOutcome func(Outcome)
}

// Result is a successful resolution.
type Result struct {
	// Data is the winning certificate's bytes, as the root sent them.
	Data []byte
	// Version is the winning certificate's version.
	Version uint64
	// Source is the winning root's String().
	Source string
	// Outcomes has one entry per root, in Roots order.
	Outcomes []Outcome
}

// Outcome is what one root contributed.
type Outcome struct {
	// Root is the root's String().
	Root string
	// Version is the verified version, also when it was refused as a
	// rollback; 0 when verification did not succeed.
	Version uint64
	// Err is nil when the root gave a valid certificate at or above
	// MinVersion; otherwise it names the root and wraps the reason.
	Err error
	// Elapsed is the time from the start of Resolve to the root's answer
	// (or to Resolve giving up on it).
	Elapsed time.Duration
}

// Error is returned when no root gave a valid certificate. It lists every
// root's reason; errors.Is sees each of them (e.g. ErrRollback).
type Error struct {
	Service    string
	MinVersion uint64
	Outcomes   []Outcome
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "resolve service://%s: no valid certificate", e.Service)
	if e.MinVersion > 0 {
		fmt.Fprintf(&b, " at or above version %d", e.MinVersion)
	}
	for i, o := range e.Outcomes {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(o.Err.Error())
	}
	return b.String()
}

// Unwrap returns every root's error.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, len(e.Outcomes))
	for _, o := range e.Outcomes {
		errs = append(errs, o.Err)
	}
	return errs
}

// Validate reports a configuration Resolve cannot use.
func (r *Resolver) Validate() error {
	switch {
	case len(r.Roots) == 0:
		return errors.New("resolve: no roots configured (need at least one)")
	case r.Verify == nil:
		return errors.New("resolve: Verify is required")
	case r.Timeout < 0:
		return fmt.Errorf("resolve: Timeout %v is negative (want 0 for the default %v, or > 0)", r.Timeout, DefaultTimeout)
	}
	for i, root := range r.Roots {
		if root == nil {
			return fmt.Errorf("resolve: root %d is nil", i)
		}
	}
	return nil
}

// answer is one root's fetch result, sent by its goroutine.
type answer struct {
	i    int
	data []byte
	err  error
	at   time.Time
}

// Resolve asks every root for service's certificate in parallel and returns
// the highest valid version (on a tie, the first to arrive). It returns when every root has answered, when
// Grace has passed since the first valid answer, when Timeout passes, or when
// ctx ends; roots still working are then cancelled, and Resolve waits for
// their Fetch calls to return, so no goroutine it started outlives it.
// On failure the Result still carries the Outcomes, and the error is an
// *Error listing every root's reason (or ctx's error if ctx ended first).
func (r *Resolver) Resolve(ctx context.Context, service string) (Result, error) {
	if err := r.Validate(); err != nil {
		return Result{}, err
	}
	if err := CheckService(service); err != nil {
		return Result{}, err
	}
	clk := r.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	grace := r.Grace
	if grace == 0 {
		grace = DefaultGrace
	}

	start := clk.Now()
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timedOut := make(chan struct{})
	timeoutTimer := clk.AfterFunc(timeout, func() { close(timedOut) })
	defer timeoutTimer.Stop()

	// Buffered so a root finishing after Resolve stopped listening never
	// blocks its goroutine.
	answers := make(chan answer, len(r.Roots))
	var wg sync.WaitGroup
	for i, root := range r.Roots {
		wg.Go(func() {
			data, err := root.Fetch(fctx, service)
			answers <- answer{i: i, data: data, err: err, at: clk.Now()}
		})
	}

	outcomes := make([]Outcome, len(r.Roots))
	done := make([]bool, len(r.Roots))
	best := -1
	var bestData []byte
	pending := len(r.Roots)
	var graceC chan struct{}
	var graceTimer clock.Timer

	record := func(a answer) {
		pending--
		done[a.i] = true
		o := r.judge(a, start)
		outcomes[a.i] = o
		if o.Err == nil && (best < 0 || o.Version > outcomes[best].Version) {
			if best < 0 && grace > 0 {
				graceC = make(chan struct{})
				c := graceC
				graceTimer = clk.AfterFunc(grace, func() { close(c) })
			}
			best, bestData = a.i, a.data
		}
		if r.OnOutcome != nil {
			r.OnOutcome(o)
		}
	}
	// drain records answers that are already in: they arrived before the
	// deadline that ended the wait, so they count.
	drain := func() {
		for pending > 0 {
			select {
			case a := <-answers:
				record(a)
			default:
				return
			}
		}
	}

	var stop error // why the wait ended early; nil when every root answered
wait:
	for pending > 0 {
		if best >= 0 && grace < 0 {
			drain()
			stop = ErrLate
			break
		}
		select {
		case a := <-answers:
			record(a)
		case <-graceC: // nil (blocks) until the first valid answer
			drain()
			stop = ErrLate
			break wait
		case <-timedOut:
			drain()
			stop = fmt.Errorf("%w after %v", ErrTimeout, timeout)
			break wait
		case <-ctx.Done():
			stop = context.Cause(ctx)
			break wait
		}
	}
	if graceTimer != nil {
		graceTimer.Stop()
	}
	cancel(stop) // nil when nothing is pending: plain Canceled
	wg.Wait()
	// Answers that raced with the cancellation are not judged: the
	// decision was already made when the wait ended.
	now := clk.Now()
	for i := range outcomes {
		if !done[i] {
			outcomes[i] = Outcome{Root: r.Roots[i].String(), Err: &RootError{Root: r.Roots[i].String(), Err: stop}, Elapsed: now.Sub(start)}
			if r.OnOutcome != nil {
				r.OnOutcome(outcomes[i])
			}
		}
	}

	res := Result{Outcomes: outcomes}
	if ctx.Err() != nil {
		return res, fmt.Errorf("resolve service://%s: %w", service, context.Cause(ctx))
	}
	if best < 0 {
		return res, &Error{Service: service, MinVersion: r.MinVersion, Outcomes: outcomes}
	}
	res.Data, res.Version, res.Source = bestData, outcomes[best].Version, outcomes[best].Root
	return res, nil
}

// judge turns a fetch result into an Outcome: fetch error, verification
// failure, rollback, or a valid version.
func (r *Resolver) judge(a answer, start time.Time) Outcome {
	name := r.Roots[a.i].String()
	o := Outcome{Root: name, Elapsed: a.at.Sub(start)}
	if a.err != nil {
		o.Err = nameRoot(name, a.err)
		return o
	}
	v, err := r.Verify(a.data)
	if err != nil {
		o.Err = &RootError{Root: name, Err: fmt.Errorf("certificate refused: %w", err)}
		return o
	}
	o.Version = v
	if v < r.MinVersion {
		o.Err = &RootError{Root: name, Err: fmt.Errorf("%w: version %d is older than the cached version %d", ErrRollback, v, r.MinVersion)}
	}
	return o
}

// RootError is an error that names the root it came from.
type RootError struct {
	Root string
	Err  error
}

func (e *RootError) Error() string { return e.Root + ": " + e.Err.Error() }
func (e *RootError) Unwrap() error { return e.Err }

// nameRoot makes sure err names root, without naming it twice.
func nameRoot(root string, err error) error {
	if re, ok := errors.AsType[*RootError](err); ok && re.Root == root {
		return err
	}
	return &RootError{Root: root, Err: err}
}
