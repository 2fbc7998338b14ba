package etcdreg

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/registry"
	"github.com/smartclient/smartclient/wire"
)

const svc = "web"

// tap passes a source's updates on to the test after the consumer has
// handled them.
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

// waitUpdate waits for an update satisfying ok, with a deadline.
func waitUpdate(t *testing.T, ch <-chan registry.Update, what string, ok func(registry.Update) bool) registry.Update {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case u := <-ch:
			if ok(u) {
				return u
			}
		case <-deadline.C:
			t.Fatalf("no update with %s within 15s", what)
		}
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

func directorMember(d *director.Director, url string) balance.Member {
	for _, e := range d.Balancer().Endpoints() {
		if e.Member.URL == url {
			return e.Member
		}
	}
	return balance.Member{}
}

// run starts a Feed and stops it when the test ends.
func run(t *testing.T, f *registry.Feed) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	})
}

func register(t *testing.T, cli *clientv3.Client, m Member, ttl time.Duration) *Registration {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := Register(ctx, cli, svc, m, ttl)
	if err != nil {
		cancel()
		t.Fatalf("Register %s: %v", m.URL, err)
	}
	t.Cleanup(func() {
		defer cancel()
		if cli.Ctx().Err() != nil {
			return // the test closed the client to simulate a crash
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ccancel()
		r.Close(cctx) // may fail if the test stopped etcd: the lease then dies with it
	})
	return r
}

func newSource(t *testing.T, cli *clientv3.Client, mod func(*Config)) *Source {
	t.Helper()
	cfg := Config{Client: cli, Service: svc, CheckInterval: -1}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMembershipLifecycle: members register, the director learns them,
// updates propagate, draining members and a crashed member's expired lease
// leave the list, and malformed values are skipped and counted.
func TestMembershipLifecycle(t *testing.T) {
	e := startEtcd(t)
	admin := e.client(t)
	a := register(t, admin, Member{URL: "http://127.0.0.1:8001", Zone: "z1"}, 5*time.Second)

	var skipMu sync.Mutex
	var skipped []string
	src := newSource(t, e.client(t), func(c *Config) {
		c.OnSkip = func(key string, err error) {
			skipMu.Lock()
			skipped = append(skipped, key)
			skipMu.Unlock()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := registry.First(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(urls(first), []string{"http://127.0.0.1:8001"}) || first.Members[0].Zone != "z1" || first.Epoch == 0 {
		t.Fatalf("First = %v", first)
	}
	d, err := director.New(director.Config{Epoch: first.Epoch}, []balance.Member{{URL: first.Members[0].URL, Zone: "z1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tp := newTap(src)
	feed := registry.Attach(d, tp)
	run(t, feed)
	u := waitUpdate(t, tp.ch, "the first view", func(u registry.Update) bool { return u.Reset })
	if !slices.Equal(urls(u.Members), []string{"http://127.0.0.1:8001"}) {
		t.Fatalf("first update %v", u.Members)
	}

	// A second member with its own client, so closing that client is a
	// crash: keep-alives stop and nobody revokes the lease.
	crashCli := e.client(t)
	registered := time.Now()
	register(t, crashCli, Member{URL: "http://127.0.0.1:8002", Weight: 2, Zone: "z2"}, time.Second)
	u = waitUpdate(t, tp.ch, "member 8002", hasURLs("http://127.0.0.1:8001", "http://127.0.0.1:8002"))
	t.Logf("a new member reached the director %v after Register began", time.Since(registered).Round(100*time.Microsecond))
	if got := directorURLs(d); !slices.Equal(got, urls(u.Members)) {
		t.Fatalf("director members %v, update %v", got, urls(u.Members))
	}
	if d.Balancer().Epoch() != u.Members.Epoch {
		t.Fatalf("director epoch %d, update epoch %d", d.Balancer().Epoch(), u.Members.Epoch)
	}

	// Update propagation: a new weight.
	if err := a.Update(ctx, Member{URL: "http://127.0.0.1:8001", Weight: 5, Zone: "z1"}); err != nil {
		t.Fatal(err)
	}
	waitUpdate(t, tp.ch, "weight 5", func(u registry.Update) bool {
		return len(u.Members.Members) == 2 && u.Members.Members[0].Weight == 5
	})
	if m := directorMember(d, "http://127.0.0.1:8001"); m.Weight != 5 || m.Zone != "z1" {
		t.Fatalf("director has %+v, want weight 5 in z1", m)
	}
	if m := directorMember(d, "http://127.0.0.1:8002"); m.Weight != 2 || m.Zone != "z2" {
		t.Fatalf("director has %+v, want weight 2 in z2", m)
	}

	// Malformed values under the prefix are skipped and counted, never
	// listed; the valid members stay.
	bad := map[string]string{
		"bad-json":   `{"url":`,
		"bad-url":    `{"url":"not a url"}`,
		"neg-weight": `{"url":"http://127.0.0.1:9001","weight":-1}`,
		"huge-w":     `{"url":"http://127.0.0.1:9002","weight":1e400}`,
		"bad-state":  `{"url":"http://127.0.0.1:9003","state":"maybe"}`,
		"bad-zone":   `{"url":"http://127.0.0.1:9004","zone":"a b"}`,
		"oversized":  `{"url":"http://127.0.0.1:9005","zone":"` + strings.Repeat("x", MaxValueLen) + `"}`,
		"array":      `[1,2]`,
	}
	before := src.Stats().Skipped
	for k, v := range bad {
		if _, err := admin.Put(ctx, membersPrefix(DefaultPrefix, svc)+k, v); err != nil {
			t.Fatal(err)
		}
	}
	// A valid write after the bad ones: once it is seen, so were they.
	register(t, admin, Member{URL: "http://127.0.0.1:8003"}, 5*time.Second)
	waitUpdate(t, tp.ch, "member 8003", hasURLs("http://127.0.0.1:8001", "http://127.0.0.1:8002", "http://127.0.0.1:8003"))
	if got := src.Stats().Skipped - before; got != uint64(len(bad)) {
		t.Fatalf("Skipped grew by %d, want %d", got, len(bad))
	}
	skipMu.Lock()
	if len(skipped) != len(bad) {
		t.Errorf("OnSkip saw %v", skipped)
	}
	skipMu.Unlock()

	// Crash: the member's lease expires and it leaves the list.
	crashed := time.Now()
	crashCli.Close()
	waitUpdate(t, tp.ch, "8002 gone", hasURLs("http://127.0.0.1:8001", "http://127.0.0.1:8003"))
	t.Logf("crashed member (TTL 1s) left the list after %v", time.Since(crashed).Round(10*time.Millisecond))
	if got := directorURLs(d); !slices.Equal(got, []string{"http://127.0.0.1:8001", "http://127.0.0.1:8003"}) {
		t.Fatalf("director members %v", got)
	}

	// Draining: registered but left out.
	if err := a.Update(ctx, Member{URL: "http://127.0.0.1:8001", State: registry.StateDraining}); err != nil {
		t.Fatal(err)
	}
	waitUpdate(t, tp.ch, "8001 draining", hasURLs("http://127.0.0.1:8003"))
	if got := directorURLs(d); !slices.Equal(got, []string{"http://127.0.0.1:8003"}) {
		t.Fatalf("director members %v", got)
	}
	if src.Stats().Excluded == 0 {
		t.Error("Excluded = 0 after a draining member")
	}

	// Graceful leave: Close revokes the lease, the key goes at once.
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := admin.Get(ctx, MemberKey(DefaultPrefix, svc, "http://127.0.0.1:8001"))
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("key after Close: %v %v", resp, err)
	}
	if feed.Stale.Load() != 0 || feed.Rejected.Load() != 0 || feed.Resets.Load() != 1 {
		t.Errorf("feed stale=%d rejected=%d resets=%d, want 0 0 1", feed.Stale.Load(), feed.Rejected.Load(), feed.Resets.Load())
	}
}

// TestWatchSurvivesRestart: etcd is killed and restarted on the same data;
// the watch resumes without a reset and delivers later changes.
func TestWatchSurvivesRestart(t *testing.T) {
	e := startEtcd(t)
	admin := e.client(t)
	reg := register(t, admin, Member{URL: "http://127.0.0.1:8001"}, 5*time.Second)
	d, err := director.New(director.Config{}, []balance.Member{{URL: "http://127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	src := newSource(t, e.client(t), nil)
	tp := newTap(src)
	feed := registry.Attach(d, tp)
	run(t, feed)
	u := waitUpdate(t, tp.ch, "the first view", hasURLs("http://127.0.0.1:8001"))
	// The placeholder member had epoch 0; the first update replaces it.
	if !u.Reset || !slices.Equal(directorURLs(d), []string{"http://127.0.0.1:8001"}) {
		t.Fatalf("first update %+v, director %v", u, directorURLs(d))
	}

	e.stop()
	e.start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	register(t, admin, Member{URL: "http://127.0.0.1:8002"}, 5*time.Second)
	u = waitUpdate(t, tp.ch, "8002 after the restart", hasURLs("http://127.0.0.1:8001", "http://127.0.0.1:8002"))
	if u.Reset {
		t.Errorf("update after a restart on the same data has Reset set")
	}
	if !slices.Equal(directorURLs(d), []string{"http://127.0.0.1:8001", "http://127.0.0.1:8002"}) {
		t.Fatalf("director %v", directorURLs(d))
	}
	// The first member's lease survived the restart: its key is there.
	resp, err := admin.Get(ctx, reg.Key())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("first member's key after restart: %v %v", resp, err)
	}
	if feed.Resets.Load() != 1 {
		t.Errorf("Resets = %d, want 1 (the first view only)", feed.Resets.Load())
	}
}

// TestCompactedWatchRelists: the source's connection is cut while members
// change and etcd compacts its history; the resumed watch finds its
// revision compacted, and the source lists again.
func TestCompactedWatchRelists(t *testing.T) {
	e := startEtcd(t)
	admin := e.client(t)
	a := register(t, admin, Member{URL: "http://127.0.0.1:8001"}, 5*time.Second)
	proxy := startProxy(t, strings.TrimPrefix(e.clientURL, "http://"))
	d, err := director.New(director.Config{}, []balance.Member{{URL: "http://127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	src := newSource(t, dialEtcd(t, proxy.addr()), nil)
	tp := newTap(src)
	run(t, registry.Attach(d, tp))
	waitUpdate(t, tp.ch, "the first view", hasURLs("http://127.0.0.1:8001"))
	readsBefore := src.Stats().Reads

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	proxy.setCut(true)
	register(t, admin, Member{URL: "http://127.0.0.1:8002"}, 5*time.Second)
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := admin.Put(ctx, "/unrelated", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	proxy.setCut(false)

	waitUpdate(t, tp.ch, "the view after compaction", hasURLs("http://127.0.0.1:8002"))
	if !slices.Equal(directorURLs(d), []string{"http://127.0.0.1:8002"}) {
		t.Fatalf("director %v", directorURLs(d))
	}
	// A compacted revision is a reason to list again, not an error.
	if st := src.Stats(); st.Reads-readsBefore < 1 || st.Errors != 0 {
		t.Errorf("Reads grew by %d, Errors %d (%s)", st.Reads-readsBefore, st.Errors, st.LastError)
	}
}

// TestClusterReplaced: etcd is replaced by an empty cluster whose revision
// starts again from 1. The periodic check notices the revision went back;
// the next update is a Reset that the director applies although its epoch
// is lower, and the surviving member re-registers on the new cluster.
func TestClusterReplaced(t *testing.T) {
	e := startEtcd(t)
	admin := e.client(t)
	a := register(t, admin, Member{URL: "http://127.0.0.1:8001"}, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Push the old cluster's revision well above what the new one reaches.
	for i := 0; i < 30; i++ {
		if _, err := admin.Put(ctx, "/filler", "x"); err != nil {
			t.Fatal(err)
		}
	}
	crashCli := e.client(t)
	register(t, crashCli, Member{URL: "http://127.0.0.1:8002"}, 2*time.Second)

	d, err := director.New(director.Config{}, []balance.Member{{URL: "http://127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	src := newSource(t, e.client(t), func(c *Config) { c.CheckInterval = 100 * time.Millisecond })
	tp := newTap(src)
	feed := registry.Attach(d, tp)
	run(t, feed)
	old := waitUpdate(t, tp.ch, "the first view", hasURLs("http://127.0.0.1:8001", "http://127.0.0.1:8002"))

	// Member 8002 crashes with the old cluster; member 8001 keeps its
	// Registration alive, notices its lease is gone and registers again.
	crashCli.Close()
	e.replace()
	u := waitUpdate(t, tp.ch, "a reset to the new cluster", func(u registry.Update) bool { return u.Reset })
	if u.Members.Epoch >= old.Members.Epoch {
		t.Fatalf("new cluster epoch %d not below the old %d", u.Members.Epoch, old.Members.Epoch)
	}
	// The reset may come before or after 8001 is back.
	if !hasURLs("http://127.0.0.1:8001")(u) {
		u = waitUpdate(t, tp.ch, "8001 re-registered", hasURLs("http://127.0.0.1:8001"))
	}
	if got := directorURLs(d); !slices.Equal(got, []string{"http://127.0.0.1:8001"}) {
		t.Fatalf("director %v, want the new cluster's view", got)
	}
	if d.Balancer().Epoch() != u.Members.Epoch {
		t.Fatalf("director epoch %d, want %d", d.Balancer().Epoch(), u.Members.Epoch)
	}
	// The key is written before Renewals counts it.
	eventually(t, "Renewals >= 1", func() bool { return a.Renewals() >= 1 })
	if feed.Resets.Load() < 2 {
		t.Errorf("Resets = %d, want >= 2", feed.Resets.Load())
	}
}

// eventually polls cond until it holds, with a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		<-tick.C
	}
}
