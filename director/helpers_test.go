package director_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/director"
)

var epoch0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// lockedRand is a seeded Rand that is safe for concurrent use.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newRand(seed uint64) *lockedRand { return &lockedRand{r: rand.New(rand.NewPCG(seed, 3))} }

func (l *lockedRand) Uint64() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Uint64()
}

// inOrder is a policy that picks the first untried member in list order, so
// a scenario knows which member each attempt goes to.
type inOrder struct{}

func (inOrder) Name() string { return "in-order" }
func (inOrder) Build(eps []*balance.Endpoint, _ balance.Env) balance.Picker {
	return orderPicker(eps)
}

type orderPicker []*balance.Endpoint

func (p orderPicker) Pick(in *balance.PickInput) *balance.Endpoint {
	for _, e := range p {
		if !in.IsTried(e) {
			return e
		}
	}
	return nil
}

func members(n int) []balance.Member {
	ms := make([]balance.Member, n)
	for i := range ms {
		ms[i] = balance.Member{URL: fmt.Sprintf("http://m%d:80", i)}
	}
	return ms
}

func newDirector(t testing.TB, cfg director.Config, ms []balance.Member) *director.Director {
	t.Helper()
	if cfg.Rand == nil {
		cfg.Rand = newRand(1)
	}
	d, err := director.New(cfg, ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// fakeDirector is newDirector on a fake clock.
func fakeDirector(t testing.TB, cfg director.Config, ms []balance.Member) (*director.Director, *clock.Fake) {
	c := clock.NewFake(epoch0)
	cfg.Clock = c
	return newDirector(t, cfg, ms), c
}

// waitFor waits until cond holds, for at most 10s. It yields instead of
// sleeping: the event it waits for is the work of another goroutine.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// recv receives from ch within 10s.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func memberStats(d *director.Director, url string) balance.EndpointStats {
	for _, s := range d.Stats().Members {
		if s.Member.URL == url {
			return s
		}
	}
	return balance.EndpointStats{}
}

// refused is a failure before the member saw the request.
var refused error = syscall.ECONNREFUSED

// event is one step of a request as an Action or Cleanup saw it.
type event struct {
	cleanup bool
	member  string
	number  int
	hedge   bool
	err     error
}

func (e event) String() string {
	if e.cleanup {
		return fmt.Sprintf("cleanup #%d %s: %v", e.number, e.member, e.err)
	}
	return fmt.Sprintf("action #%d %s", e.number, e.member)
}

// script is a Request whose Action does what fn says per attempt and which
// logs every Action and Cleanup.
type script struct {
	mu   sync.Mutex
	log  []event
	fn   func(ctx context.Context, a *director.Attempt) error
	idem bool
}

func (s *script) Action(ctx context.Context, a *director.Attempt) error {
	s.mu.Lock()
	s.log = append(s.log, event{member: a.Member.URL, number: a.Number, hedge: a.Hedge})
	s.mu.Unlock()
	return s.fn(ctx, a)
}

func (s *script) Cleanup(a *director.Attempt, err error) {
	s.mu.Lock()
	s.log = append(s.log, event{cleanup: true, member: a.Member.URL, number: a.Number, hedge: a.Hedge, err: err})
	s.mu.Unlock()
}

func (s *script) Idempotent() bool { return s.idem }

func (s *script) events() []event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event(nil), s.log...)
}
