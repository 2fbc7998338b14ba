package consulreg

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/registry"
	"github.com/smartclient/smartclient/watch"
	"github.com/smartclient/smartclient/wire"
)

const svc = "web"

type tap struct {
	registry.Source
	ch chan registry.Update
}

func newTap(s registry.Source) *tap { return &tap{Source: s, ch: make(chan registry.Update, 64)} }

func (t *tap) Watch(ctx context.Context, emit func(registry.Update)) error {
	return t.Source.Watch(ctx, func(u registry.Update) {
		emit(u)
		select {
		case t.ch <- u:
		case <-ctx.Done():
		}
	})
}

func waitUpdate(t *testing.T, ch <-chan registry.Update, what string, ok func(registry.Update) bool) registry.Update {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case u := <-ch:
			if ok(u) {
				return u
			}
		case <-deadline.C:
			t.Fatalf("no update with %s within 10s", what)
		}
	}
}

// noUpdate checks that nothing is pending on ch.
func noUpdate(t *testing.T, ch <-chan registry.Update) {
	t.Helper()
	select {
	case u := <-ch:
		t.Fatalf("unexpected update %+v", u)
	default:
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		<-tick.C
	}
}

func urls(m wire.Members) []string {
	var out []string
	for _, x := range m.Members {
		out = append(out, x.URL)
	}
	return out
}

func hasURLs(want ...string) func(registry.Update) bool {
	return func(u registry.Update) bool { return slices.Equal(urls(u.Members), want) }
}

func directorURLs(d *director.Director) []string {
	var out []string
	for _, e := range d.Balancer().Endpoints() {
		out = append(out, e.Member.URL)
	}
	slices.Sort(out)
	return out
}

func newSource(t *testing.T, f *fakeAgent, mod func(*Config)) *Source {
	t.Helper()
	cfg := Config{
		Agent:       &api.Config{Address: f.addr()},
		Service:     svc,
		Wait:        5 * time.Second,
		MinInterval: time.Millisecond,
		Backoff:     watch.Backoff{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond},
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// start runs src into a director with a placeholder member, returning
// the director, the feed and the tap's channel.
func start(t *testing.T, src registry.Source) (*director.Director, *registry.Feed, chan registry.Update) {
	t.Helper()
	d, err := director.New(director.Config{}, []balance.Member{{URL: "http://127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	tp := newTap(src)
	feed := registry.Attach(d, tp)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- feed.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
		d.Close()
	})
	return d, feed, tp.ch
}

func node(name, addr string) api.Node { return api.Node{Node: name, Address: addr, Datacenter: "dc1"} }

// TestBlockingLifecycle: instances come, change, fail their checks, drain
// and go, and the director follows through blocking queries.
func TestBlockingLifecycle(t *testing.T) {
	f := newFakeAgent(t)
	f.register(node("n1", "127.0.0.1"), api.AgentService{ID: "a", Service: svc, Port: 8001, Meta: map[string]string{"zone": "z1"}}, api.HealthPassing)
	f.register(api.Node{Node: "n2", Address: "127.0.0.2", Meta: map[string]string{"zone": "z2"}},
		api.AgentService{ID: "b", Service: svc, Port: 8002, Weights: api.AgentWeights{Passing: 3, Warning: 1}}, api.HealthPassing)
	f.register(node("n3", "127.0.0.3"), api.AgentService{ID: "other", Service: "db", Port: 5432}, api.HealthPassing)
	src := newSource(t, f, nil)
	d, feed, ch := start(t, src)

	u := waitUpdate(t, ch, "the first view", hasURLs("http://127.0.0.1:8001", "http://127.0.0.2:8002"))
	if !u.Reset {
		t.Error("first update without Reset")
	}
	want := []wire.Member{{URL: "http://127.0.0.1:8001", Weight: 1, Zone: "z1"}, {URL: "http://127.0.0.2:8002", Weight: 3, Zone: "z2"}}
	if !slices.Equal(u.Members.Members, want) {
		t.Fatalf("members %+v, want %+v", u.Members.Members, want)
	}
	if !slices.Equal(directorURLs(d), urls(u.Members)) || d.Balancer().Epoch() != u.Members.Epoch {
		t.Fatalf("director %v at %d, update %v", directorURLs(d), d.Balancer().Epoch(), u.Members)
	}
	// The source now waits in a blocking query on the index it saw.
	eventually(t, "a blocked query", func() bool { return f.blocked.Load() == 1 })
	if got := f.lastIndex.Load(); got != u.Members.Epoch {
		t.Fatalf("query index %d, want %d", got, u.Members.Epoch)
	}

	// A write to another service answers no query of this one; a write to
	// this one answers exactly one.
	queries := f.queries.Load()
	f.register(node("n3", "127.0.0.3"), api.AgentService{ID: "other2", Service: "db", Port: 5433}, api.HealthPassing)
	ix := f.register(node("n1", "127.0.0.1"), api.AgentService{ID: "c", Service: svc, Port: 8003, Meta: map[string]string{"scheme": "https"}}, api.HealthPassing)
	u = waitUpdate(t, ch, "c", hasURLs("http://127.0.0.1:8001", "http://127.0.0.2:8002", "https://127.0.0.1:8003"))
	if u.Members.Epoch != ix || u.Reset {
		t.Fatalf("epoch %d reset %v, want %d false", u.Members.Epoch, u.Reset, ix)
	}
	eventually(t, "a blocked query", func() bool { return f.blocked.Load() == 1 })
	if f.queries.Load()-queries != 1 {
		t.Errorf("%d queries for one change", f.queries.Load()-queries)
	}

	f.setStatus("n1", "c", api.HealthCritical)
	waitUpdate(t, ch, "c failing", hasURLs("http://127.0.0.1:8001", "http://127.0.0.2:8002"))
	f.register(node("n1", "127.0.0.1"), api.AgentService{ID: "a", Service: svc, Port: 8001, Meta: map[string]string{"state": "draining"}}, api.HealthPassing)
	waitUpdate(t, ch, "a draining", hasURLs("http://127.0.0.2:8002"))
	f.setStatus("n1", "c", api.HealthPassing)
	waitUpdate(t, ch, "c back", hasURLs("http://127.0.0.2:8002", "https://127.0.0.1:8003"))
	f.deregister("n2", "b")
	u = waitUpdate(t, ch, "b gone", hasURLs("https://127.0.0.1:8003"))
	if !slices.Equal(directorURLs(d), []string{"https://127.0.0.1:8003"}) || d.Balancer().Epoch() != u.Members.Epoch {
		t.Fatalf("director %v at %d", directorURLs(d), d.Balancer().Epoch())
	}

	// Every instance failing: the registry lists none, the director keeps
	// its last list rather than having nothing to pick.
	f.setStatus("n1", "c", api.HealthCritical)
	waitUpdate(t, ch, "nothing passing", func(u registry.Update) bool { return len(u.Members.Members) == 0 })
	if !slices.Equal(directorURLs(d), []string{"https://127.0.0.1:8003"}) || feed.Empty.Load() != 1 {
		t.Fatalf("director %v, Empty %d", directorURLs(d), feed.Empty.Load())
	}
	if feed.Stale.Load() != 0 || feed.Rejected.Load() != 0 {
		t.Errorf("stale %d rejected %d", feed.Stale.Load(), feed.Rejected.Load())
	}
	st := src.Stats()
	// a, draining, was left out of the last four answers.
	if st.Errors != 0 || st.Skipped != 0 || st.Excluded < 4 || st.Resets != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestIndexReset: a snapshot restore sends the index back while the source
// is blocked; the blocked query returns with the lower index, the source
// starts again from index 0, and the director takes the restored view
// although its epoch is lower, then follows the new sequence.
func TestIndexReset(t *testing.T) {
	f := newFakeAgent(t)
	f.register(node("n1", "127.0.0.1"), api.AgentService{ID: "a", Service: svc, Port: 8001}, api.HealthPassing)
	snap := f.snapshot()
	for i := 0; i < 10; i++ {
		f.register(node("n2", "127.0.0.2"), api.AgentService{ID: "b", Service: svc, Port: 8002}, api.HealthPassing)
	}
	src := newSource(t, f, nil)
	d, feed, ch := start(t, src)
	old := waitUpdate(t, ch, "the first view", hasURLs("http://127.0.0.1:8001", "http://127.0.0.2:8002"))
	eventually(t, "a blocked query", func() bool { return f.blocked.Load() == 1 })
	zeroBefore := f.zeroQs.Load()

	f.restore(snap)
	u := waitUpdate(t, ch, "the restored view", hasURLs("http://127.0.0.1:8001"))
	if !u.Reset || u.Members.Epoch >= old.Members.Epoch || u.Members.Epoch != snap.svcIndex[svc] {
		t.Fatalf("update %+v after restore; old epoch %d, snapshot index %d", u, old.Members.Epoch, snap.svcIndex[svc])
	}
	if !slices.Equal(directorURLs(d), []string{"http://127.0.0.1:8001"}) || d.Balancer().Epoch() != u.Members.Epoch {
		t.Fatalf("director %v at %d", directorURLs(d), d.Balancer().Epoch())
	}
	// Consul's rule: after the index went back, query again from 0.
	eventually(t, "a query from index 0", func() bool { return f.zeroQs.Load() > zeroBefore })

	// Writes after the restore count up from the snapshot's index, still
	// below the old epoch: the director must follow them.
	ix := f.register(node("n4", "127.0.0.4"), api.AgentService{ID: "d", Service: svc, Port: 8004}, api.HealthPassing)
	if ix >= old.Members.Epoch {
		t.Fatalf("test setup: index %d not below the old %d", ix, old.Members.Epoch)
	}
	u = waitUpdate(t, ch, "d", hasURLs("http://127.0.0.1:8001", "http://127.0.0.4:8004"))
	if u.Reset || u.Members.Epoch != ix {
		t.Fatalf("update %+v, want epoch %d without reset", u, ix)
	}
	if !slices.Equal(directorURLs(d), urls(u.Members)) {
		t.Fatalf("director %v", directorURLs(d))
	}
	if feed.Resets.Load() != 2 || feed.Stale.Load() != 0 {
		t.Errorf("resets %d stale %d, want 2 0", feed.Resets.Load(), feed.Stale.Load())
	}
	if st := src.Stats(); st.Resets != 2 {
		t.Errorf("source resets %d, want 2", st.Resets)
	}
}

// TestIndexResetBetweenQueries: the restore happens while the source waits
// between two queries (held there by a fake clock). Its next query asks for
// an index the agent will not reach, blocks until wait runs out, and
// returns the lower index, which the source treats as a reset.
func TestIndexResetBetweenQueries(t *testing.T) {
	f := newFakeAgent(t)
	f.register(node("n1", "127.0.0.1"), api.AgentService{ID: "a", Service: svc, Port: 8001}, api.HealthPassing)
	snap := f.snapshot()
	f.register(node("n2", "127.0.0.2"), api.AgentService{ID: "b", Service: svc, Port: 8002}, api.HealthPassing)
	clk := clock.NewFake(time.Unix(1e9, 0))
	src := newSource(t, f, func(c *Config) {
		c.Clock = clk
		c.MinInterval = time.Second
		c.Wait = 100 * time.Millisecond
	})
	_, _, ch := start(t, src)
	old := waitUpdate(t, ch, "the first view", hasURLs("http://127.0.0.1:8001", "http://127.0.0.2:8002"))
	eventually(t, "the source spacing its queries", func() bool { return clk.Pending() == 1 })
	f.restore(snap)
	clk.Advance(time.Second)
	u := waitUpdate(t, ch, "the restored view", hasURLs("http://127.0.0.1:8001"))
	if !u.Reset || u.Members.Epoch >= old.Members.Epoch {
		t.Fatalf("update %+v, old epoch %d", u, old.Members.Epoch)
	}
	if f.lastIndex.Load() != old.Members.Epoch {
		t.Fatalf("the query after the restore asked for index %d, want %d", f.lastIndex.Load(), old.Members.Epoch)
	}
}

// TestZeroIndexDoesNotSpin: an agent that answers X-Consul-Index: 0 (an old
// Consul bug) makes blocking impossible; the source uses index 1, and
// MinInterval bounds its query rate: one query per interval of the fake
// clock, never more.
func TestZeroIndexDoesNotSpin(t *testing.T) {
	f := newFakeAgent(t)
	f.register(node("n1", "127.0.0.1"), api.AgentService{ID: "a", Service: svc, Port: 8001}, api.HealthPassing)
	f.zeroIndex.Store(true)
	clk := clock.NewFake(time.Unix(1e9, 0))
	src := newSource(t, f, func(c *Config) {
		c.Clock = clk
		c.MinInterval = time.Second
	})
	_, _, ch := start(t, src)
	u := waitUpdate(t, ch, "the first view", hasURLs("http://127.0.0.1:8001"))
	if u.Members.Epoch != 1 {
		t.Fatalf("epoch %d, want 1 for index 0", u.Members.Epoch)
	}
	for i := int64(1); i <= 5; i++ {
		eventually(t, "the source waiting", func() bool { return clk.Pending() == 1 })
		if q := f.queries.Load(); q != i {
			t.Fatalf("%d queries after %d intervals, want %d", q, i-1, i)
		}
		clk.Advance(time.Second)
	}
	eventually(t, "query 6", func() bool { return f.queries.Load() == 6 })
	if f.lastIndex.Load() != 1 {
		t.Errorf("query index %d, want 1", f.lastIndex.Load())
	}
	noUpdate(t, ch)
}

// TestBadInstances: malformed instances are skipped and counted, failing
// ones are left out even from an agent that ignores passing=1, and an
// oversized answer is an error, after which the source recovers.
func TestBadInstances(t *testing.T) {
	f := newFakeAgent(t)
	f.register(node("n1", "127.0.0.1"), api.AgentService{ID: "good", Service: svc, Port: 8001}, api.HealthPassing)
	bad := []api.AgentService{
		{ID: "noport", Service: svc},
		{ID: "bigport", Service: svc, Port: 70000},
		{ID: "badscheme", Service: svc, Port: 1, Meta: map[string]string{"scheme": "HT TP"}},
		{ID: "badurl", Service: svc, Port: 1, Meta: map[string]string{"url": "javascript:alert(1)"}},
		{ID: "negw", Service: svc, Port: 2, Meta: map[string]string{"weight": "-1"}},
		{ID: "nanw", Service: svc, Port: 3, Meta: map[string]string{"weight": "NaN"}},
		{ID: "hexw", Service: svc, Port: 4, Meta: map[string]string{"weight": "0x10"}},
		{ID: "hugew", Service: svc, Port: 5, Meta: map[string]string{"weight": "1e300"}},
		{ID: "badzone", Service: svc, Port: 6, Meta: map[string]string{"zone": "eu west"}},
		{ID: "badstate", Service: svc, Port: 7, Meta: map[string]string{"state": "sleepy"}},
		{ID: "longurl", Service: svc, Port: 8, Meta: map[string]string{"url": "http://h/" + strings.Repeat("a", wire.MaxURLLen)}},
	}
	for _, s := range bad {
		f.register(node("n9", "127.0.0.9"), s, api.HealthPassing)
	}
	f.register(node("n2", "127.0.0.2"), api.AgentService{ID: "failing", Service: svc, Port: 8002}, api.HealthWarning)
	f.ignorePassing.Store(true)

	src := newSource(t, f, func(c *Config) { c.MaxResponseBytes = 64 << 10 })
	_, _, ch := start(t, src)
	waitUpdate(t, ch, "the good instance only", hasURLs("http://127.0.0.1:8001"))
	st := src.Stats()
	if st.Skipped != uint64(len(bad)) || st.Excluded != 1 || st.Errors != 0 {
		t.Fatalf("stats %+v, want %d skipped, 1 excluded", st, len(bad))
	}

	// An answer over MaxResponseBytes is refused; nothing is emitted; once
	// answers are small again the source catches up.
	eventually(t, "a blocked query", func() bool { return f.blocked.Load() == 1 })
	f.padding.Store(8 << 10) // 14 instances × 8 KiB > 64 KiB
	f.register(node("n3", "127.0.0.3"), api.AgentService{ID: "new", Service: svc, Port: 8003}, api.HealthPassing)
	eventually(t, "errors counted", func() bool { return src.Stats().Errors >= 2 })
	if e := src.Stats().LastError; !strings.Contains(e, "too large") {
		t.Errorf("LastError %q", e)
	}
	noUpdate(t, ch)
	f.padding.Store(0)
	waitUpdate(t, ch, "recovery", hasURLs("http://127.0.0.1:8001", "http://127.0.0.3:8003"))
}

// TestHungAgent: an agent that accepts a query and never answers costs
// the source one query timeout, counted as an error; then it goes on.
func TestHungAgent(t *testing.T) {
	f := newFakeAgent(t)
	f.register(node("n1", "127.0.0.1"), api.AgentService{ID: "a", Service: svc, Port: 8001}, api.HealthPassing)
	f.hang.Store(true)
	src := newSource(t, f, func(c *Config) { c.Wait = 100 * time.Millisecond })
	_, _, ch := start(t, src)
	eventually(t, "a hanging query", func() bool { return f.blocked.Load() == 1 })
	began := time.Now()
	f.hang.Store(false)
	waitUpdate(t, ch, "the view after the timeout", hasURLs("http://127.0.0.1:8001"))
	st := src.Stats()
	if st.Errors != 1 || !strings.Contains(st.LastError, "deadline") {
		t.Fatalf("stats %+v, want one deadline error", st)
	}
	t.Logf("hung query abandoned after %v (Wait 100ms)", time.Since(began).Round(time.Millisecond))
}

func TestFirst(t *testing.T) {
	f := newFakeAgent(t)
	src := newSource(t, f, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan wire.Members, 1)
	go func() {
		m, err := registry.First(ctx, src)
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	// Nothing registered: First keeps waiting in a blocking query.
	eventually(t, "a blocked query", func() bool { return f.blocked.Load() == 1 })
	ix := f.register(node("n1", "127.0.0.1"), api.AgentService{ID: "a", Service: svc, Port: 8001}, api.HealthPassing)
	m := <-got
	if !slices.Equal(urls(m), []string{"http://127.0.0.1:8001"}) || m.Epoch != ix {
		t.Fatalf("First = %v", m)
	}
	// First's Watch ended: no query is left behind.
	eventually(t, "no query left", func() bool { return f.blocked.Load() == 0 })
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{},
		{Service: "a/b"},
		{Service: "a", Wait: 11 * time.Minute},
		{Service: "a", MaxResponseBytes: 10},
	} {
		if c.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	if err := (Config{Service: "web"}).Validate(); err != nil {
		t.Error(err)
	}
}
