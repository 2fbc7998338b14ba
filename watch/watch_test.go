package watch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

const deadline = 5 * time.Second

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(deadline):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func members(epoch uint64, urls ...string) wire.Members {
	m := wire.Members{Epoch: epoch}
	for _, u := range urls {
		m.Members = append(m.Members, wire.Member{URL: u})
	}
	return m
}

func load(t int64) wire.Load { return wire.Load{TimeMillis: t, InFlight: 1, Capacity: 4, Util: 0.25} }

type loadEv struct {
	url string
	l   wire.Load
}

// harness runs a Hub behind a loopback server and a Watcher following it.
type harness struct {
	hub     *Hub
	srv     *httptest.Server
	w       *Watcher
	members chan wire.Members
	loads   chan loadEv
	retries chan error
	stop    func()
}

func newHarness(t *testing.T, hcfg HubConfig, setup func(*harness)) *harness {
	t.Helper()
	h := &harness{
		hub:     NewHub(hcfg),
		members: make(chan wire.Members, 100),
		loads:   make(chan loadEv, 100),
		retries: make(chan error, 100),
	}
	h.srv = httptest.NewServer(h.hub)
	tr := &http.Transport{}
	h.w = &Watcher{
		URL:       h.srv.URL + Path,
		Client:    &http.Client{Transport: tr},
		OnMembers: func(m wire.Members) { h.members <- m },
		OnLoad:    func(u string, l wire.Load) { h.loads <- loadEv{u, l} },
		OnRetry:   func(_ int, _ time.Duration, err error) { h.retries <- err },
		Backoff:   Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond},
	}
	if setup != nil {
		setup(h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.w.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := recv(t, done, "Run to return"); !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v, want context.Canceled", err)
			}
			h.hub.Close()
			h.srv.Close()
			tr.CloseIdleConnections()
		})
	}
	t.Cleanup(func() { h.stop() })
	return h
}

func TestDeliver(t *testing.T) {
	hub := HubConfig{}
	h := newHarness(t, hub, nil)
	// Published before the watcher is surely connected: it arrives either
	// live or in the first snapshot, exactly once.
	h.hub.PublishMembers(members(3, "http://10.0.0.1:8080", "http://10.0.0.2:8080"))
	m := recv(t, h.members, "members")
	if m.Epoch != 3 || len(m.Members) != 2 || m.Members[1].URL != "http://10.0.0.2:8080" {
		t.Fatalf("members = %+v", m)
	}
	h.hub.PublishLoad("", load(100))
	h.hub.PublishLoad("http://10.0.0.2:8080", load(101))
	if ev := recv(t, h.loads, "own load"); ev.url != "" || ev.l != load(100) {
		t.Fatalf("load = %+v", ev)
	}
	if ev := recv(t, h.loads, "named load"); ev.url != "http://10.0.0.2:8080" || ev.l != load(101) {
		t.Fatalf("load = %+v", ev)
	}
	if st := h.w.Stats(); !strings.HasSuffix(st.LastID, "-3") || st.Events != 3 || !st.Connected {
		t.Fatalf("watcher stats = %+v", st)
	}
	select {
	case m := <-h.members:
		t.Fatalf("extra members event %+v", m)
	default:
	}
}

// TestResume cuts the connection under the watcher while events keep
// coming: every event arrives exactly once and in order.
func TestResume(t *testing.T) {
	h := newHarness(t, HubConfig{}, nil)
	h.hub.PublishLoad("", load(1))
	if ev := recv(t, h.loads, "first load"); ev.l.TimeMillis != 1 {
		t.Fatalf("got %+v", ev)
	}
	next := int64(2)
	for round := 0; round < 3; round++ {
		h.srv.CloseClientConnections()
		first := next
		for range 5 {
			h.hub.PublishLoad("", load(next))
			next++
		}
		recv(t, h.retries, "reconnect")
		// Receiving them proves the watcher is connected again before the
		// next cut.
		for want := first; want < next; want++ {
			if ev := recv(t, h.loads, fmt.Sprint("load ", want)); ev.l.TimeMillis != want {
				t.Fatalf("got load t=%d, want %d", ev.l.TimeMillis, want)
			}
		}
	}
	h.hub.PublishLoad("", load(next))
	if ev := recv(t, h.loads, "last load"); ev.l.TimeMillis != next {
		t.Fatalf("got load t=%d, want %d (duplicate or loss)", ev.l.TimeMillis, next)
	}
	if st := h.hub.Stats(); st.Resumed < 1 {
		t.Fatalf("hub stats %+v: no resumption", st)
	}
}

// readEvents connects with lastID (-1 for none) and returns the first n
// events as "id kind data".
func readEvents(t *testing.T, url string, lastID string, n int) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := newParser(resp.Body, 1<<16)
	var out []string
	for range n {
		ev, err := p.next()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s %s", ev.id, ev.kind, ev.data))
	}
	return out
}

func TestBacklog(t *testing.T) {
	hub := NewHub(HubConfig{History: 4, Incarnation: "A"})
	srv := httptest.NewServer(hub)
	defer srv.Close()
	defer hub.Close()
	hub.PublishMembers(members(1, "http://a:1"))               // id 1
	hub.PublishLoad("http://a:1", load(10))                    // 2
	hub.PublishMembers(members(2, "http://a:1", "http://b:1")) // 3
	for i := range 5 {                                         // 4..8
		hub.PublishLoad("", load(int64(20+i)))
	}
	snap := []string{
		"A-8 members v=1;e=2;m=http://a:1;m=http://b:1",
	}
	tests := []struct {
		name   string
		lastID string
		want   []string
	}{
		{"resume in ring", "A-6", []string{"A-7 load v=1;t=23;q=1;c=4;u=0.25", "A-8 load v=1;t=24;q=1;c=4;u=0.25"}},
		{"resume at oldest", "A-4", []string{"A-5 load v=1;t=21;q=1;c=4;u=0.25"}},
		{"too old", "A-3", snap},
		{"fresh", "", snap},
		{"from the future", "A-99", snap},
		{"other incarnation", "B-6", snap},
		{"not an id", "6", snap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readEvents(t, srv.URL, tt.lastID, len(tt.want))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
	// A snapshot carries the latest load of every URL after the members.
	got := readEvents(t, srv.URL, "", 3)
	loads := strings.Join(got[1:], "\n")
	for _, want := range []string{"A-8 load v=1;t=24;q=1;c=4;u=0.25", "A-8 load http://a:1 v=1;t=10;q=1;c=4;u=0.25"} {
		if !strings.Contains(loads, want) {
			t.Errorf("snapshot loads\n%s\nlack %q", loads, want)
		}
	}
	if st := hub.Stats(); st.Snapshots != 6 || st.Resumed != 2 {
		t.Errorf("stats %+v, want 6 snapshots, 2 resumed", st)
	}
}

// TestSlowClient: a client that reads nothing is cut once ClientBuffer
// events wait for it, and Publish never blocks on it.
func TestSlowClient(t *testing.T) {
	hub := NewHub(HubConfig{ClientBuffer: 2, WriteTimeout: 50 * time.Millisecond})
	srv := httptest.NewServer(hub)
	defer srv.Close()
	defer hub.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", Path)
	// The status line proves the client is registered; after it the
	// client reads nothing.
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("status %q, %v", line, err)
	}
	big := members(1)
	for i := range 500 {
		big.Members = append(big.Members, wire.Member{URL: fmt.Sprintf("http://10.0.%d.%d:8080", i/250, i%250)})
	}
	end := time.Now().Add(deadline)
	n := 0
	for hub.Stats().Slow == 0 {
		if time.Now().After(end) {
			t.Fatalf("slow client not cut after %d events", n)
		}
		start := time.Now()
		big.Epoch++
		hub.PublishMembers(big)
		n++
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Publish blocked for %v", d)
		}
	}
	if st := hub.Stats(); st.Clients != 0 || st.Slow != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMaxClients(t *testing.T) {
	hub := NewHub(HubConfig{MaxClients: 1})
	srv := httptest.NewServer(hub)
	defer srv.Close()
	defer hub.Close()
	hub.PublishLoad("", load(1))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	r1, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Body.Close()
	r2, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusServiceUnavailable || hub.Stats().Refused != 1 {
		t.Fatalf("second watcher: %s, stats %+v", r2.Status, hub.Stats())
	}
	r3, err := c.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	r3.Body.Close()
	if r3.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %s", r3.Status)
	}
}

// TestGarbage: streams that are not the protocol end with an error, are
// counted, and the watcher reconnects until a good stream comes.
func TestGarbage(t *testing.T) {
	bad := []func(w http.ResponseWriter){
		func(w http.ResponseWriter) { w.Header().Set("Content-Type", "text/html"); fmt.Fprint(w, "<html>") },
		func(w http.ResponseWriter) { sse(w); fmt.Fprint(w, "bogus: field\n\n") },
		func(w http.ResponseWriter) { sse(w); fmt.Fprint(w, strings.Repeat("x", 5000)) },
		func(w http.ResponseWriter) { sse(w); fmt.Fprint(w, "data: "+strings.Repeat("y", 3000)+"\n\n") },
		func(w http.ResponseWriter) {
			sse(w)
			fmt.Fprint(w, "id: "+strings.Repeat("9", 65)+"\nevent: load\ndata: v=1;t=1\n\n")
		},
		func(w http.ResponseWriter) { sse(w); fmt.Fprint(w, "id: 1\nevent: load\ndata: v=1;t=1;u=NaN\n\n") },
		func(w http.ResponseWriter) { sse(w); fmt.Fprint(w, "id: 1\nevent: members\ndata: v=2;e=1\n\n") },
		func(w http.ResponseWriter) { sse(w); fmt.Fprint(w, "id: 1\nevent: load\ndata:  v=1;t=1\n\n") },
		func(w http.ResponseWriter) { w.WriteHeader(500) },
	}
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(calls.Add(1)) - 1
		if i < len(bad) {
			bad[i](w)
			return
		}
		if r.Header.Get("Last-Event-ID") != "" {
			t.Errorf("Last-Event-ID %q after bad streams", r.Header.Get("Last-Event-ID"))
		}
		sse(w)
		fmt.Fprint(w, ": hello\r\nretry: 10\r\nid: 7\r\nevent: future\r\ndata: ignored\r\n\r\nid: 8\nevent: load\ndata: v=1;t=5\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	got := make(chan wire.Load, 1)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	w := &Watcher{
		URL: srv.URL, Client: &http.Client{Transport: tr}, MaxLine: 2048,
		Backoff: Backoff{Initial: time.Microsecond, Max: time.Microsecond},
		OnLoad:  func(_ string, l wire.Load) { got <- l },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	if l := recv(t, got, "good load"); l.TimeMillis != 5 {
		t.Fatalf("load %+v", l)
	}
	cancel()
	recv(t, done, "Run to return")
	st := w.Stats()
	if st.Errors != uint64(len(bad)) || st.Garbage != uint64(len(bad)-1) || st.LastID != "8" || st.Events != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func sse(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	w.(http.Flusher).Flush()
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: 0.5}
	tests := []struct {
		failures int
		r        float64
		want     time.Duration
	}{
		{1, 0.5, 100 * time.Millisecond},
		{2, 0.5, 200 * time.Millisecond},
		{4, 0.5, 800 * time.Millisecond},
		{5, 0.5, time.Second},
		{1000, 0.5, time.Second},
		{1, 0, 50 * time.Millisecond},
		{1, 0.999999, 149999900 * time.Nanosecond},
	}
	for _, tt := range tests {
		if got := b.Delay(tt.failures, tt.r); got < tt.want-time.Microsecond || got > tt.want+time.Microsecond {
			t.Errorf("Delay(%d, %v) = %v, want %v", tt.failures, tt.r, got, tt.want)
		}
	}
	if got := (Backoff{}).Delay(1, 0); got != 80*time.Millisecond {
		t.Errorf("default first delay with r=0: %v, want 80ms (100ms - 20%%)", got)
	}
}

// TestBackoffGrows drives Run against a failing server on a fake clock.
func TestBackoffGrows(t *testing.T) {
	conns := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns <- struct{}{}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	fake := clock.NewFake(time.Unix(1000, 0))
	pauses := make(chan time.Duration, 10)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	w := &Watcher{
		URL: srv.URL, Client: &http.Client{Transport: tr}, Clock: fake,
		Rand:    func() float64 { return 0.5 },
		Backoff: Backoff{Initial: 100 * time.Millisecond, Max: time.Second},
		OnRetry: func(_ int, d time.Duration, _ error) { pauses <- d },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	for _, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		want *= time.Millisecond
		recv(t, conns, "connection")
		if got := recv(t, pauses, "pause"); got != want {
			t.Fatalf("pause %v, want %v", got, want)
		}
		fake.Advance(want - time.Millisecond)
		select {
		case <-conns:
			t.Fatalf("reconnected before the pause of %v ended", want)
		default:
		}
		fake.Advance(time.Millisecond)
	}
	recv(t, conns, "connection")
	cancel()
	if err := recv(t, done, "Run to return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if n := fake.Pending(); n != 0 {
		t.Fatalf("%d timers left behind", n)
	}
}

// TestIdleAndHeartbeat: heartbeats keep a quiet stream alive; without
// them the watcher cuts the stream and resumes.
func TestIdleAndHeartbeat(t *testing.T) {
	fake := clock.NewFake(time.Unix(1000, 0))
	h := newHarness(t, HubConfig{Heartbeat: time.Second, Clock: fake}, func(h *harness) {
		w := h.w
		w.Clock = fake
		w.IdleTimeout = 3 * time.Second
		w.Rand = func() float64 { return 0.5 }
	})
	h.hub.PublishLoad("", load(1))
	recv(t, h.loads, "load")
	// Heartbeat every second, idle limit three: the stream survives ten
	// seconds. Each heartbeat is confirmed by an event sent after it.
	for i := range 10 {
		fake.Advance(time.Second)
		h.hub.PublishLoad("", load(int64(2+i)))
		if ev := recv(t, h.loads, "load"); ev.l.TimeMillis != int64(2+i) {
			t.Fatalf("load %+v", ev)
		}
	}
	if st := h.w.Stats(); st.Errors != 0 || st.Connects != 1 {
		t.Fatalf("stats %+v, want one healthy stream", st)
	}
}

func TestIdleCut(t *testing.T) {
	fake := clock.NewFake(time.Unix(1000, 0))
	h := newHarness(t, HubConfig{Heartbeat: time.Hour, Clock: fake}, func(h *harness) {
		w := h.w
		w.Clock = fake
		w.IdleTimeout = 3 * time.Second
		w.Rand = func() float64 { return 0.5 }
	})
	h.hub.PublishLoad("", load(1))
	recv(t, h.loads, "load")
	fake.Advance(3 * time.Second)
	if err := recv(t, h.retries, "idle cut"); !errors.Is(err, errIdle) {
		t.Fatalf("stream ended with %v, want idle", err)
	}
	h.hub.PublishLoad("", load(2))
	fake.Advance(time.Millisecond) // the backoff pause
	if ev := recv(t, h.loads, "load after reconnect"); ev.l.TimeMillis != 2 {
		t.Fatalf("load %+v", ev)
	}
	if st := h.w.Stats(); st.Idle != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAttach(t *testing.T) {
	a, b, c := "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"
	for _, tt := range []struct {
		name   string
		learn  bool
		accept func(wire.Members) error
		want   int // members after the record
	}{
		{"applied", true, nil, 3},
		{"learning off", false, nil, 1},
		{"vetted out", true, func(wire.Members) error { return errors.New("unsigned") }, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := director.New(director.Config{LearnMembers: tt.learn, AcceptMembers: tt.accept, Epoch: 1},
				[]balance.Member{{URL: a}})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var feed *Feed
			h := newHarness(t, HubConfig{}, func(h *harness) { feed = Attach(d, h.w) })
			// A live stream first, so that no record below is folded
			// into a snapshot.
			h.hub.PublishLoad(c, load(1))
			recv(t, h.loads, "warm-up load")
			h.hub.PublishMembers(members(0, a)) // stale: epoch 0 < 1
			h.hub.PublishMembers(members(5, a, b, c))
			h.hub.PublishLoad(a, wire.Load{TimeMillis: 1, InFlight: 7, Capacity: 10, Util: 0.7})
			h.hub.PublishLoad("http://elsewhere:1", load(1))
			for range 2 {
				recv(t, h.members, "members")
			}
			recv(t, h.loads, "load")
			recv(t, h.loads, "load")
			if n := len(d.Balancer().Endpoints()); n != tt.want {
				t.Fatalf("%d members, want %d", n, tt.want)
			}
			var ea *balance.Endpoint
			for _, e := range d.Balancer().Endpoints() {
				if e.Member.URL == a {
					ea = e
				}
			}
			if u := ea.ReportedUtil(d.Now()); u != 0.7 {
				t.Fatalf("reported util %v, want 0.7", u)
			}
			if feed.Loads.Load() != 1 || feed.Unknown.Load() != 2 {
				t.Fatalf("loads %d unknown %d", feed.Loads.Load(), feed.Unknown.Load())
			}
			if tt.want == 3 && (feed.Learned.Load() != 1 || feed.Stale.Load() != 1) {
				t.Fatalf("learned %d stale %d", feed.Learned.Load(), feed.Stale.Load())
			}
			if tt.want == 1 && feed.Rejected.Load() == 0 {
				t.Fatalf("rejected not counted")
			}
		})
	}
}

// TestCancelLeavesNothing: cancelling Run mid-stream and mid-pause
// returns promptly, stops its timers and leaves no goroutine.
func TestCancelLeavesNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	fake := clock.NewFake(time.Unix(1000, 0))
	hub := NewHub(HubConfig{Clock: fake})
	srv := httptest.NewServer(hub)
	tr := &http.Transport{}
	got := make(chan wire.Load, 1)
	w := &Watcher{URL: srv.URL, Client: &http.Client{Transport: tr}, Clock: fake,
		OnLoad: func(_ string, l wire.Load) { got <- l }}
	hub.PublishLoad("", load(1))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	recv(t, got, "load")
	cancel()
	if err := recv(t, done, "Run to return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if w.Stats().Connected {
		t.Fatal("still connected after Run returned")
	}
	hub.Close()
	srv.Close()
	tr.CloseIdleConnections()
	// Only the hub's heartbeat timer may have been left armed, and Close
	// ended its stream, which stops it.
	if n := fake.Pending(); n != 0 {
		t.Fatalf("%d timers left", n)
	}
	end := time.Now().Add(deadline)
	for runtime.NumGoroutine() > before {
		if time.Now().After(end) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}
