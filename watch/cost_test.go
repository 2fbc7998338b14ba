package watch

import (
	"context"
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
	"github.com/smartclient/smartclient/smarthttp"
	"github.com/smartclient/smartclient/wire"
)

// countingListener counts the bytes a server reads and writes, TCP/IP
// headers and handshakes excluded.
type countingListener struct {
	net.Listener
	in, out atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

type countingConn struct {
	net.Conn
	l *countingListener
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.l.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.l.out.Add(int64(n))
	return n, err
}

func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *countingListener) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	cl := &countingListener{Listener: srv.Listener}
	srv.Listener = cl
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, cl
}

// costMembers is the membership record all techniques carry: ten members.
func costMembers(epoch uint64) wire.Members {
	m := wire.Members{Epoch: epoch}
	for i := range 10 {
		m.Members = append(m.Members, wire.Member{URL: fmt.Sprintf("http://10.0.0.%d:8080", i+1), Zone: "eu-1"})
	}
	return m
}

// costLoad is a typical load record, with a realistic millisecond time.
func costLoad(i int) wire.Load {
	return wire.Load{TimeMillis: 1732770000123 + int64(i)*1000, InFlight: 3, Capacity: 16, Util: 0.1875, Epoch: 17}
}

// waitGrow spins until *v exceeds old: the server wrote something.
func waitGrow(t *testing.T, v *atomic.Int64, old int64) {
	t.Helper()
	end := time.Now().Add(deadline)
	for v.Load() <= old {
		if time.Now().After(end) {
			t.Fatal("server wrote nothing")
		}
		runtime.Gosched()
	}
}

// TestUpdateCost measures, on real loopback connections, the bytes each
// update technique costs a server per client, and extrapolates linearly to
// 1000 clients over one virtual minute. A smaller real run (many watchers
// at once) checks that a hub's cost is indeed linear in its clients. Run
// with -v to see the table.
func TestUpdateCost(t *testing.T) {
	const (
		clients  = 1000
		interval = 60 // virtual seconds
		reqRate  = 1  // application requests per client per second (piggy-backing)
	)
	members := costMembers(17)
	noop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})

	// Polling: GET /load every second, answered by Middleware; the load
	// record comes in the header. Mean bytes over ten keep-alive polls.
	poll := func(withMembers bool) (in, out float64) {
		mw := &smarthttp.Middleware{Capacity: 16}
		if withMembers {
			mw.Members = func() (wire.Members, bool) { return members, true }
		}
		srv, cl := countingServer(t, mw.Wrap(noop))
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		p := &smarthttp.LoadPoller{Client: &http.Client{Transport: tr}, Path: "/load"}
		m := balance.Member{URL: srv.URL}
		if _, err := p.PollLoad(context.Background(), m); err != nil { // opens the connection
			t.Fatal(err)
		}
		in0, out0 := cl.in.Load(), cl.out.Load()
		for range 10 {
			if _, err := p.PollLoad(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
		// The server's write of the last reply may be counted a moment
		// after the client has read it.
		waitGrow(t, &cl.out, out0+1)
		return float64(cl.in.Load()-in0) / 10, float64(cl.out.Load()-out0) / 10
	}
	pollIn, pollOut := poll(false)
	pollInM, pollOutM := poll(true)

	// Piggy-backing: what Middleware adds to a reply the client asked for
	// anyway, measured as the difference between wrapped and bare replies.
	replyBytes := func(h http.Handler) float64 {
		srv, cl := countingServer(t, h)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		get := func() {
			resp, err := c.Get(srv.URL + "/app")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		get()
		out0 := cl.out.Load()
		for range 10 {
			get()
		}
		waitGrow(t, &cl.out, out0+1)
		return float64(cl.out.Load()-out0) / 10
	}
	bare := replyBytes(noop)
	piggy := replyBytes((&smarthttp.Middleware{Capacity: 16}).Wrap(noop)) - bare
	piggyM := replyBytes((&smarthttp.Middleware{Capacity: 16, Members: func() (wire.Members, bool) { return members, true }}).Wrap(noop)) - bare

	// Push: one stream, one minute on a fake clock: the member publishes
	// its load every second and the membership changes once; heartbeats
	// every 15s.
	push := func(loads bool) (setup, perMinute float64) {
		fake := clock.NewFake(time.Unix(0, 0))
		hub := NewHub(HubConfig{Heartbeat: 15 * time.Second, Clock: fake})
		defer hub.Close()
		hub.PublishMembers(members)
		hub.PublishLoad("", costLoad(0))
		srv, cl := countingServer(t, hub)
		got := make(chan struct{}, 10)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		w := &Watcher{URL: srv.URL, Client: &http.Client{Transport: tr}, IdleTimeout: time.Hour,
			OnMembers: func(wire.Members) { got <- struct{}{} },
			OnLoad:    func(string, wire.Load) { got <- struct{}{} }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- w.Run(ctx) }()
		defer func() { cancel(); <-done }()
		recv(t, got, "snapshot members")
		recv(t, got, "snapshot load")
		start := cl.out.Load()
		for s := 1; s <= interval; s++ {
			before := cl.out.Load()
			fake.Advance(time.Second)
			if s%15 == 0 {
				waitGrow(t, &cl.out, before) // the heartbeat
			}
			if loads {
				hub.PublishLoad("", costLoad(s))
				recv(t, got, "load")
			}
			if s == interval/2 {
				hub.PublishMembers(costMembers(18))
				recv(t, got, "members")
			}
		}
		return float64(start), float64(cl.out.Load() - start)
	}
	pushSetup, pushMin := push(true)
	_, pushMinM := push(false)

	// A real run of many watchers on one hub: the bytes it writes must be
	// the per-client figure times the clients.
	const realClients = 200
	realOut, realPredicted := realPush(t, realClients)
	if d := realOut - realPredicted; d < -realPredicted/100 || d > realPredicted/100 {
		t.Errorf("real push run: %d watchers cost %.0f bytes, per-client figure predicts %.0f", realClients, realOut, realPredicted)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nUpdate cost for %d clients over %d s, bytes measured per client on loopback HTTP/1.1 (no TLS, TCP/IP headers not counted), extrapolated linearly:\n\n", clients, interval)
	fmt.Fprintf(&b, "| technique | extra requests/s | bytes/s to server | bytes/s from server | open streams | staleness |\n|---|---:|---:|---:|---:|---|\n")
	row := func(name string, reqs, in, out float64, streams int, stale string) {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f | %d | %s |\n", name, reqs, in, out, streams, stale)
	}
	row("poll GET /load every 1 s (load)", clients, clients*pollIn, clients*pollOut, 0, "≤ 1 s")
	row("poll GET /load every 1 s (load + 10 members)", clients, clients*pollInM, clients*pollOutM, 0, "≤ 1 s")
	row(fmt.Sprintf("piggy-back, %d req/s per client (load)", reqRate), 0, 0, clients*reqRate*piggy, 0, "until next reply")
	row(fmt.Sprintf("piggy-back, %d req/s per client (load + 10 members)", reqRate), 0, 0, clients*reqRate*piggyM, 0, "until next reply")
	row("push: load 1/s, members 1/min, heartbeat 15 s", 0, 0, clients*pushMin/interval, clients, "one RTT")
	row("push: members 1/min, heartbeat 15 s", 0, 0, clients*pushMinM/interval, clients, "one RTT")
	fmt.Fprintf(&b, "\nPer client: a poll costs %.0f B in + %.0f B out (%.0f + %.0f with members); piggy-backing adds %.0f B (%.0f B with members) to a reply; a push stream costs %.0f B to open (request, header, snapshot) and then %.0f B/min (%.0f B/min without load events).\n",
		pollIn, pollOut, pollInM, pollOutM, piggy, piggyM, pushSetup, pushMin, pushMinM)
	fmt.Fprintf(&b, "Real check: %d watchers on one hub, 10 load events: %.0f bytes written, %.0f predicted.\n", realClients, realOut, realPredicted)
	t.Log(b.String())
}

// realPush connects n watchers to one hub, publishes ten load events, and
// returns the bytes the hub wrote and what one client's cost times n
// predicts.
func realPush(t *testing.T, n int) (got, predicted float64) {
	hub := NewHub(HubConfig{})
	defer hub.Close()
	hub.PublishMembers(costMembers(17))
	srv, cl := countingServer(t, hub)
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	defer tr.CloseIdleConnections()
	events := make(chan struct{}, n*12)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	watchers := make([]*Watcher, n)
	for i := range watchers {
		w := &Watcher{URL: srv.URL, Client: &http.Client{Transport: tr}, IdleTimeout: time.Hour,
			OnMembers: func(wire.Members) { events <- struct{}{} },
			OnLoad:    func(string, wire.Load) { events <- struct{}{} }}
		watchers[i] = w
		wg.Go(func() { w.Run(ctx) })
	}
	for range n {
		recv(t, events, "snapshot")
	}
	setup := cl.out.Load()
	for i := range 10 {
		hub.PublishLoad("", costLoad(i))
	}
	for range n * 10 {
		recv(t, events, "load")
	}
	waitGrow(t, &cl.out, setup)
	for _, w := range watchers {
		if st := w.Stats(); st.Connects != 1 || st.Errors != 0 {
			t.Fatalf("watcher reconnected during the run: %+v", st)
		}
	}
	// One client's cost: setup/n, plus each event frame as sent in one
	// chunk of the chunked encoding.
	var frames float64
	for i := range 10 {
		frame := appendEvent(nil, hub.cfg.Incarnation, uint64(2+i), "load", loadData(nil, "", costLoad(i)))
		frames += float64(len(frame) + len(fmt.Sprintf("%x\r\n\r\n", len(frame))))
	}
	return float64(cl.out.Load()), float64(setup) + float64(n)*frames
}
