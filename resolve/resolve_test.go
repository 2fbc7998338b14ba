package resolve_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/resolve"
)

var epoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// run is a Resolve call in progress. Its outcomes channel receives each
// Outcome as Resolve decides it (through OnOutcome), which is how the
// tests know what Resolve has seen without looking at the clock.
type run struct {
	res      resolve.Result
	err      error
	done     chan struct{}
	outcomes chan resolve.Outcome
}

func start(ctx context.Context, r *resolve.Resolver) *run {
	x := &run{done: make(chan struct{}), outcomes: make(chan resolve.Outcome, len(r.Roots)+1)}
	r.OnOutcome = func(o resolve.Outcome) { x.outcomes <- o }
	go func() {
		defer close(x.done)
		x.res, x.err = r.Resolve(ctx, "chat")
	}()
	return x
}

func (x *run) wait(t *testing.T) (resolve.Result, error) {
	t.Helper()
	select {
	case <-x.done:
		return x.res, x.err
	case <-time.After(10 * time.Second):
		t.Fatal("Resolve did not return")
		return resolve.Result{}, nil
	}
}

func (x *run) returned() bool {
	select {
	case <-x.done:
		return true
	default:
		return false
	}
}

// next returns the next decided outcome.
func (x *run) next(t *testing.T) resolve.Outcome {
	t.Helper()
	select {
	case o := <-x.outcomes:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("no outcome")
		return resolve.Outcome{}
	}
}

func roots(rs ...resolve.Root) []resolve.Root { return rs }

func TestResolveHighestVersionWins(t *testing.T) {
	c := clock.NewFake(epoch)
	r := &resolve.Resolver{
		Roots:  roots(quick("a", certOf(1), nil), quick("b", certOf(3), nil), quick("c", certOf(2), nil)),
		Verify: verifyChat,
		Clock:  c,
	}
	res, err := start(t.Context(), r).wait(t)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 3 || res.Source != "b" || string(res.Data) != string(certOf(3)) {
		t.Fatalf("got version %d from %q", res.Version, res.Source)
	}
	for i, want := range []uint64{1, 3, 2} {
		o := res.Outcomes[i]
		if o.Err != nil || o.Version != want || o.Root != r.Roots[i].String() {
			t.Errorf("outcome %d = %+v, want version %d", i, o, want)
		}
	}
	checkNoGoroutines(t, true)
}

// A slower root with a higher version that answers within the grace
// period wins. The fake clock never moves, so the grace period cannot run
// out: the test proves the higher answer is taken when it comes in time.
func TestResolveGraceHigherVersionWithin(t *testing.T) {
	c := clock.NewFake(epoch)
	slow := newGated("slow")
	r := &resolve.Resolver{Roots: roots(quick("fast", certOf(2), nil), slow), Verify: verifyChat, Clock: c}
	x := start(t.Context(), r)
	if o := x.next(t); o.Root != "fast" || o.Version != 2 {
		t.Fatalf("first outcome %+v", o)
	}
	// The grace timer is armed by now (OnOutcome runs after it is).
	if got := c.Pending(); got != 2 {
		t.Fatalf("pending timers = %d, want timeout and grace", got)
	}
	c.Advance(resolve.DefaultGrace - time.Nanosecond)
	if x.returned() {
		t.Fatal("returned before the grace period ended")
	}
	slow.release <- certOf(5)
	res, err := x.wait(t)
	if err != nil || res.Version != 5 || res.Source != "slow" {
		t.Fatalf("got %d from %q, %v; want 5 from slow", res.Version, res.Source, err)
	}
	if c.Pending() != 0 {
		t.Errorf("%d timers left armed", c.Pending())
	}
	checkNoGoroutines(t, true)
}

// A root that has not answered when the grace period ends does not delay
// the answer: it is cancelled, and its Fetch has returned before Resolve
// does.
func TestResolveGraceExpires(t *testing.T) {
	for _, grace := range []time.Duration{0, 40 * time.Millisecond} {
		t.Run(fmt.Sprint(grace), func(t *testing.T) {
			c := clock.NewFake(epoch)
			slow := newGated("slow")
			fast := quick("fast", certOf(2), nil)
			r := &resolve.Resolver{Roots: roots(slow, fast), Verify: verifyChat, Clock: c, Grace: grace}
			x := start(t.Context(), r)
			x.next(t)
			want := grace
			if want == 0 {
				want = resolve.DefaultGrace
			}
			c.Advance(want - 1)
			if x.returned() {
				t.Fatal("returned before the grace period ended")
			}
			c.Advance(1)
			res, err := x.wait(t)
			if err != nil || res.Version != 2 || res.Source != "fast" {
				t.Fatalf("got %d from %q, %v", res.Version, res.Source, err)
			}
			o := res.Outcomes[0]
			if !errors.Is(o.Err, resolve.ErrLate) || !strings.HasPrefix(o.Err.Error(), "slow: ") || o.Elapsed != want {
				t.Fatalf("slow outcome = %+v (%v)", o, o.Err)
			}
			if res.Outcomes[1].Elapsed != 0 {
				t.Errorf("fast elapsed %v on a clock that did not move", res.Outcomes[1].Elapsed)
			}
			if slow.calls.Load() != 1 || slow.returned.Load() != 1 {
				t.Fatalf("slow Fetch calls=%d returned=%d", slow.calls.Load(), slow.returned.Load())
			}
			checkNoGoroutines(t, true)
		})
	}
}

// The grace period counts from the first valid answer: a second, higher
// answer does not extend it, and invalid answers do not start it.
func TestResolveGraceStartsAtFirstValid(t *testing.T) {
	c := clock.NewFake(epoch)
	bad, v2, v3, slow := newGated("bad"), newGated("v2"), newGated("v3"), newGated("slow")
	r := &resolve.Resolver{Roots: roots(bad, v2, v3, slow), Verify: verifyChat, Clock: c, Grace: 100 * time.Millisecond}
	x := start(t.Context(), r)
	bad.release <- tamper(certOf(9))
	if o := x.next(t); !errors.Is(o.Err, errBadSig) {
		t.Fatalf("bad outcome %+v", o)
	}
	c.Advance(time.Second) // no valid answer yet: nothing to wait for
	if x.returned() || c.Pending() != 1 {
		t.Fatalf("returned=%v pending=%d after an invalid answer", x.returned(), c.Pending())
	}
	v2.release <- certOf(2)
	x.next(t)
	c.Advance(60 * time.Millisecond)
	v3.release <- certOf(3)
	x.next(t)
	c.Advance(40 * time.Millisecond) // 100ms after the first valid answer
	res, err := x.wait(t)
	if err != nil || res.Version != 3 {
		t.Fatalf("got %d, %v", res.Version, err)
	}
	if o := res.Outcomes[3]; !errors.Is(o.Err, resolve.ErrLate) || o.Elapsed != 1100*time.Millisecond {
		t.Fatalf("slow outcome %+v", o)
	}
	checkNoGoroutines(t, true)
}

func TestResolveNegativeGraceReturnsFirstValid(t *testing.T) {
	c := clock.NewFake(epoch)
	slow := newGated("slow")
	r := &resolve.Resolver{Roots: roots(slow, quick("fast", certOf(1), nil)), Verify: verifyChat, Clock: c, Grace: -1}
	res, err := start(t.Context(), r).wait(t)
	if err != nil || res.Version != 1 || !errors.Is(res.Outcomes[0].Err, resolve.ErrLate) {
		t.Fatalf("got %+v, %v", res, err)
	}
	checkNoGoroutines(t, true)
}

func TestResolveTimeout(t *testing.T) {
	c := clock.NewFake(epoch)
	slow := newGated("slow")
	r := &resolve.Resolver{
		Roots:   roots(quick("down", nil, errors.New("connection refused")), slow),
		Verify:  verifyChat,
		Clock:   c,
		Timeout: 3 * time.Second,
	}
	x := start(t.Context(), r)
	x.next(t)
	c.Advance(3*time.Second - 1)
	if x.returned() {
		t.Fatal("returned before the timeout")
	}
	c.Advance(1)
	_, err := x.wait(t)
	var re *resolve.Error
	if !errors.As(err, &re) || !errors.Is(err, resolve.ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	want := "resolve service://chat: no valid certificate: down: connection refused; slow: timed out after 3s"
	if err.Error() != want {
		t.Fatalf("err = %q\nwant  %q", err, want)
	}
	checkNoGoroutines(t, true)
}

// Grace longer than what is left of the timeout: the timeout ends the
// wait, and the valid answer already in is returned.
func TestResolveTimeoutDuringGrace(t *testing.T) {
	c := clock.NewFake(epoch)
	r := &resolve.Resolver{Roots: roots(quick("fast", certOf(4), nil), newGated("slow")), Verify: verifyChat, Clock: c, Timeout: time.Second, Grace: time.Hour}
	x := start(t.Context(), r)
	x.next(t)
	c.Advance(time.Second)
	res, err := x.wait(t)
	if err != nil || res.Version != 4 || !errors.Is(res.Outcomes[1].Err, resolve.ErrTimeout) {
		t.Fatalf("got %+v, %v", res, err)
	}
}

func TestResolveRollback(t *testing.T) {
	tests := []struct {
		name     string
		versions []uint64
		min      uint64
		want     uint64 // 0: error
	}{
		{"all older", []uint64{3, 4}, 5, 0},
		{"equal is fine", []uint64{3, 5}, 5, 5},
		{"newer wins", []uint64{6, 4}, 5, 6},
		{"no minimum", []uint64{1}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rs []resolve.Root
			for i, v := range tt.versions {
				rs = append(rs, quick(fmt.Sprintf("r%d", i), certOf(v), nil))
			}
			r := &resolve.Resolver{Roots: rs, Verify: verifyChat, Clock: clock.NewFake(epoch), MinVersion: tt.min}
			res, err := start(t.Context(), r).wait(t)
			if tt.want == 0 {
				if !errors.Is(err, resolve.ErrRollback) {
					t.Fatalf("err = %v, want rollback", err)
				}
				if !strings.Contains(err.Error(), "r0: rollback refused: version 3 is older than the cached version 5") {
					t.Fatalf("err = %v", err)
				}
				if res.Outcomes[0].Version != 3 {
					t.Fatalf("refused outcome lost its version: %+v", res.Outcomes[0])
				}
				return
			}
			if err != nil || res.Version != tt.want {
				t.Fatalf("got %d, %v; want %d", res.Version, err, tt.want)
			}
			for _, o := range res.Outcomes {
				if (o.Version < tt.min) != errors.Is(o.Err, resolve.ErrRollback) {
					t.Errorf("outcome %+v", o)
				}
			}
		})
	}
}

func TestResolveEveryRootFails(t *testing.T) {
	r := &resolve.Resolver{
		Roots: roots(
			quick("down", nil, errors.New("connection refused")),
			quick("named", nil, &resolve.RootError{Root: "named", Err: resolve.ErrNotFound}),
			quick("tampered", tamper(certOf(2)), nil),
			quick("other-key", signCert(otherPriv, "chat", 7), nil),
			quick("wrong-service", signCert(testPriv, "mail", 7), nil),
			quick("garbage", []byte("<html>"), nil),
		),
		Verify: verifyChat,
		Clock:  clock.NewFake(epoch),
	}
	res, err := start(t.Context(), r).wait(t)
	var re *resolve.Error
	if !errors.As(err, &re) || len(re.Outcomes) != 6 || len(res.Outcomes) != 6 {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		"down: connection refused",
		"named: no certificate published", // named once, not twice
		"tampered: certificate refused: bad signature",
		"other-key: certificate refused: bad signature",
		`wrong-service: certificate refused: certificate is for service "mail", not "chat"`,
		"garbage: certificate refused: malformed certificate",
	}
	for i, w := range want {
		if got := re.Outcomes[i].Err.Error(); got != w {
			t.Errorf("outcome %d: %q, want %q", i, got, w)
		}
	}
	if !strings.HasPrefix(err.Error(), "resolve service://chat: no valid certificate: down: ") || !errors.Is(err, resolve.ErrNotFound) || !errors.Is(err, errBadSig) {
		t.Errorf("err = %v", err)
	}
	checkNoGoroutines(t, true)
}

func TestResolveContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	fast := quick("fast", certOf(1), nil)
	slow := newGated("slow")
	r := &resolve.Resolver{Roots: roots(fast, slow), Verify: verifyChat, Clock: clock.NewFake(epoch)}
	x := start(ctx, r)
	x.next(t)
	cancel()
	res, err := x.wait(t)
	if !errors.Is(err, context.Canceled) || res.Data != nil {
		t.Fatalf("got %+v, %v; want cancellation", res, err)
	}
	if !errors.Is(res.Outcomes[1].Err, context.Canceled) || slow.returned.Load() != 1 {
		t.Fatalf("slow outcome %+v", res.Outcomes[1])
	}
	checkNoGoroutines(t, true)
}

// Verify is called from one goroutine at a time: the unsynchronised
// counter below is a data race under -race otherwise.
func TestResolveVerifyIsSequential(t *testing.T) {
	var rs []resolve.Root
	for i := range 32 {
		rs = append(rs, quick(fmt.Sprint(i), certOf(uint64(i+1)), nil))
	}
	calls := 0
	r := &resolve.Resolver{Roots: rs, Verify: func(b []byte) (uint64, error) { calls++; return verifyChat(b) }, Clock: clock.NewFake(epoch)}
	res, err := start(t.Context(), r).wait(t)
	if err != nil || res.Version != 32 || calls != 32 {
		t.Fatalf("got %d, %v after %d calls", res.Version, err, calls)
	}
}

func TestResolverValidate(t *testing.T) {
	ok := []resolve.Root{quick("a", nil, nil)}
	tests := []struct {
		name string
		r    resolve.Resolver
		want string
	}{
		{"valid", resolve.Resolver{Roots: ok, Verify: verifyChat}, ""},
		{"no roots", resolve.Resolver{Verify: verifyChat}, "no roots"},
		{"nil root", resolve.Resolver{Roots: []resolve.Root{nil}, Verify: verifyChat}, "root 0 is nil"},
		{"no verify", resolve.Resolver{Roots: ok}, "Verify is required"},
		{"negative timeout", resolve.Resolver{Roots: ok, Verify: verifyChat, Timeout: -1}, "Timeout"},
		{"negative grace is fine", resolve.Resolver{Roots: ok, Verify: verifyChat, Grace: -1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
			if err != nil {
				if _, rerr := tt.r.Resolve(t.Context(), "chat"); rerr == nil {
					t.Fatal("Resolve accepted an invalid Resolver")
				}
			}
		})
	}
}

func TestResolveBadServiceName(t *testing.T) {
	root := quick("a", certOf(1), nil)
	r := &resolve.Resolver{Roots: roots(root), Verify: verifyChat}
	for _, name := range []string{"", "../etc", "Chat", "a/b", ".hidden", strings.Repeat("a", 64)} {
		if _, err := r.Resolve(t.Context(), name); err == nil {
			t.Errorf("Resolve(%q) succeeded", name)
		}
	}
	if root.calls.Load() != 0 {
		t.Fatal("a root was asked for an invalid name")
	}
}
