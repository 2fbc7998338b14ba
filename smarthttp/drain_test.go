package smarthttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

// startDrainable serves h as a drainable member on l (a new loopback port
// if nil), and closes it when the test ends.
func startDrainable(t testing.TB, l net.Listener, h http.Handler, cfg DrainConfig) (*Server, string) {
	t.Helper()
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	s, err := NewServer(&http.Server{Handler: h}, &Middleware{Capacity: 64}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, "http://" + l.Addr().String()
}

// manualAfter is a DrainConfig.After whose periods end when the test says.
type manualAfter struct{ ch [2]chan time.Time }

func newManualAfter() *manualAfter {
	return &manualAfter{[2]chan time.Time{make(chan time.Time, 1), make(chan time.Time, 1)}}
}

func (m *manualAfter) after(n *atomic.Int32) func(time.Duration) <-chan time.Time {
	return func(time.Duration) <-chan time.Time { return m.ch[n.Add(1)-1] }
}

func TestDrainSequence(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var aServed, bServed counter
	a := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			close(entered)
			<-release
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "posted %s", b)
			return
		}
		fmt.Fprint(w, "a")
	})
	timers := newManualAfter()
	var n atomic.Int32
	srvA, urlA := startDrainable(t, nil, aServed.wrap(a), DrainConfig{Announce: time.Hour, Refuse: time.Hour, After: timers.after(&n)})
	_, urlB := startDrainable(t, nil, bServed.wrap(status(200, "b")), DrainConfig{})

	// A non-idempotent POST, in flight when the drain begins.
	c, _ := orderedClient(t, director.Config{}, urlA, urlB)
	type result struct {
		resp *http.Response
		body string
		err  error
	}
	posted := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(testCtx(t), "POST", "http://svc/", strings.NewReader("order-1"))
		resp, err := c.Do(req)
		if err != nil {
			posted <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		posted <- result{resp, string(b), err}
	}()
	wait(t, entered, "the POST to reach member a")

	drained := make(chan error, 1)
	go func() { drained <- srvA.Drain(testCtx(t)) }()
	wait(t, srvA.DrainStarted(), "the drain to start")
	if !srvA.Draining() {
		t.Error("Draining() is false after DrainStarted")
	}

	// Announce period: new requests are served, and say draining.
	resp, body := get(t, urlA)
	if resp.StatusCode != 200 || body != "a" || loadOf(t, resp.Header).State != wire.StateDraining || !resp.Close {
		t.Errorf("during announce: %d %q, load %q, close %v", resp.StatusCode, body, resp.Header.Get(wire.LoadHeader), resp.Close)
	}

	// Refuse period: new requests get 503 with the draining record.
	timers.ch[0] <- time.Time{}
	wait(t, srvA.Refusing(), "the refuse period")
	before := aServed.n.Load()
	resp, body = get(t, urlA)
	if resp.StatusCode != 503 || loadOf(t, resp.Header).State != wire.StateDraining || resp.Header.Get("Retry-After") == "" {
		t.Errorf("while refusing: %d %q, load %q", resp.StatusCode, body, resp.Header.Get(wire.LoadHeader))
	}
	// ... which a smart client re-sends elsewhere, even a POST without a key.
	c2, d2 := orderedClient(t, director.Config{}, urlA, urlB)
	req, _ := http.NewRequestWithContext(testCtx(t), "POST", "http://svc/", strings.NewReader("order-2"))
	resp, err := c2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "b" || resp.Request.URL.Host != strings.TrimPrefix(urlB, "http://") {
		t.Errorf("refused POST: got %d %q from %s, want 200 from b", resp.StatusCode, b, resp.Request.URL.Host)
	}
	if st := d2.Stats(); st.Members[0].State != balance.Draining || st.Retries != 1 {
		t.Errorf("director: member a %v, retries %d; want draining, 1", st.Members[0].State, st.Retries)
	}
	if got := aServed.n.Load(); got != before {
		t.Errorf("member a's handler ran %d requests while refusing, want none", got-before)
	}

	// Shutdown waits for the POST in flight.
	timers.ch[1] <- time.Time{}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with a request in flight", err)
	case r := <-posted:
		t.Fatalf("POST finished before it was released: %+v", r)
	default:
	}
	close(release)
	r := wait(t, posted, "the POST in flight")
	if r.err != nil {
		t.Fatalf("POST in flight during drain: %v", r.err)
	}
	if r.resp.StatusCode != 200 || r.body != "posted order-1" || loadOf(t, r.resp.Header).State != wire.StateDraining {
		t.Errorf("POST in flight: %d %q, load %q", r.resp.StatusCode, r.body, r.resp.Header.Get(wire.LoadHeader))
	}
	if err := wait(t, drained, "Drain to return"); err != nil {
		t.Errorf("Drain: %v", err)
	}
	// A second Drain returns the first one's result.
	if err := srvA.Drain(testCtx(t)); err != nil {
		t.Errorf("second Drain: %v", err)
	}
	if _, err := http.Get(urlA); err == nil {
		t.Error("member a still accepts connections after Drain")
	}
}

func TestDrainContextEnds(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	s, url := startDrainable(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	}), DrainConfig{Announce: time.Hour, Refuse: time.Hour})
	c := &http.Client{Transport: NewBaseTransport()}
	defer c.CloseIdleConnections()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
		}
	}()
	wait(t, entered, "the request")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Drain(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Drain with an ended context: %v, want context.Canceled", err)
	}
	s.Close()
	wait(t, done, "the cut-off request to end")
}

// rollingMember is one member of the rolling-restart test: a fixed
// address served by successive generations of Server.
type rollingMember struct {
	addr    string
	srv     *Server
	served  atomic.Int64  // real requests, all generations
	picked  chan struct{} // closed at the current generation's first real request
	pickOne *sync.Once
}

func (m *rollingMember) handler() http.Handler {
	picked, once := m.picked, m.pickOne
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/load" {
			return // the director's load poll; Middleware stamps the record
		}
		m.served.Add(1)
		once.Do(func() { close(picked) })
		// Some service time, so that requests overlap the drain; a
		// request whose client gave up stops at once.
		select {
		case <-time.After(500 * time.Microsecond):
		case <-r.Context().Done():
		}
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "stored %s", b)
			return
		}
		fmt.Fprint(w, "ok")
	})
}

func (m *rollingMember) start(t *testing.T, cfg DrainConfig) {
	t.Helper()
	var l net.Listener
	var err error
	if m.addr == "" {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	} else {
		l, err = net.Listen("tcp", m.addr) // the same port: the member list stays valid
	}
	if err != nil {
		t.Fatal(err)
	}
	m.addr = l.Addr().String()
	m.picked, m.pickOne = make(chan struct{}), new(sync.Once)
	m.srv, _ = startDrainable(t, l, m.handler(), cfg)
}

// TestRollingRestart restarts every member, one after another, under load
// from several goroutines, and loses no request.
// The second case has no announce period: directors learn only from the
// 503s, which Transport re-sends elsewhere.
func TestRollingRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  DrainConfig
	}{
		{"announced", DrainConfig{Announce: 60 * time.Millisecond, Refuse: 20 * time.Millisecond, NewConn: 50 * time.Millisecond}},
		{"refused only", DrainConfig{Announce: -1, Refuse: 40 * time.Millisecond, NewConn: 50 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) { rollingRestart(t, tc.cfg) })
	}
}

func rollingRestart(t *testing.T, cfg DrainConfig) {
	const nMembers, workers, minRequests = 4, 8, 400
	ms := make([]*rollingMember, nMembers)
	urls := make([]string, nMembers)
	for i := range ms {
		ms[i] = &rollingMember{}
		ms[i].start(t, cfg)
		urls[i] = "http://" + ms[i].addr
	}
	pollClient := &http.Client{Transport: NewBaseTransport()}
	t.Cleanup(pollClient.CloseIdleConnections)
	d := newDirector(t, director.Config{
		MaxAttempts:  3,
		Poller:       &LoadPoller{Client: pollClient, Path: "/load"},
		PollInterval: 10 * time.Millisecond,
	}, urls...)
	client := &http.Client{Transport: newTransport(t, d)}

	var stop atomic.Bool
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load() || sent.Load() < minRequests; i++ {
				sent.Add(1)
				var req *http.Request
				want := "ok"
				if i%4 == 3 {
					body := fmt.Sprintf("w%d-%d", w, i)
					req, _ = http.NewRequestWithContext(ctx, "POST", "http://svc/orders", strings.NewReader(body))
					req.Header.Set("Idempotency-Key", body)
					want = "stored " + body
				} else {
					req, _ = http.NewRequestWithContext(ctx, "GET", "http://svc/items", nil)
				}
				resp, err := client.Do(req)
				if err != nil {
					fail(err)
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(b) != want {
					fail(fmt.Errorf("%s %s: %d %q, %v", req.Method, resp.Request.URL, resp.StatusCode, b, err))
				}
			}
		}()
	}

	for i, m := range ms {
		wait(t, m.picked, fmt.Sprintf("member %d to get work before its restart", i))
		t0 := time.Now()
		old := m.srv
		if err := old.Drain(testCtx(t)); err != nil {
			t.Fatalf("drain member %d: %v", i, err)
		}
		if st := d.Stats().Members[i].State; st != balance.Draining {
			t.Errorf("after draining member %d the director has it %v, want draining", i, st)
		}
		m.start(t, cfg)
		// The director readmits the new generation once a poll says it is
		// no longer draining; wait until it sends it real work.
		t1 := time.Now()
		wait(t, m.picked, fmt.Sprintf("restarted member %d to get work", i))
		t.Logf("member %d: drained in %v, readmitted in %v", i, t1.Sub(t0), time.Since(t1))
	}
	stop.Store(true)
	wg.Wait()

	st := d.Stats()
	t.Logf("%d requests, %d retries, %d polls (%d failed), budget denied %d", sent.Load(), st.Retries, st.Polls, st.PollErrors, st.BudgetDenied)
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during the rolling restart; first: %v", n, sent.Load(), firstErr.Load())
	}
	if st.Failed != 0 {
		t.Errorf("director counted %d failed requests", st.Failed)
	}
	for i, m := range ms {
		if m.srv.Draining() {
			t.Errorf("member %d: current generation is draining", i)
		}
		if m.served.Load() == 0 {
			t.Errorf("member %d served nothing", i)
		}
		if s := st.Members[i].State; s == balance.Draining {
			t.Errorf("member %d still draining in the director after its restart", i)
		}
	}
}
