package smarthttp

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartclient/smartclient/wire"
)

// loadOf parses the load record on a reply.
func loadOf(t *testing.T, h http.Header) wire.Load {
	t.Helper()
	l, err := wire.ParseLoad(h.Get(wire.LoadHeader))
	if err != nil {
		t.Fatalf("load record %q: %v", h.Get(wire.LoadHeader), err)
	}
	return l
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(testCtx(t), "GET", url, nil)
	c := &http.Client{Transport: NewBaseTransport()}
	t.Cleanup(c.CloseIdleConnections)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestMiddlewareRecords(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	clock := func() time.Time { return at }
	members := wire.Members{Epoch: 9, Members: []wire.Member{{URL: "http://a:1"}, {URL: "http://b:2", Zone: "z1"}}}
	tests := []struct {
		name        string
		m           *Middleware
		h           http.HandlerFunc
		want        wire.Load
		wantMembers string
	}{
		{"writes body", &Middleware{Capacity: 4, Clock: clock}, status(200, "x"),
			wire.Load{TimeMillis: at.UnixMilli(), InFlight: 1, Capacity: 4, Util: 0.25}, ""},
		{"writes nothing", &Middleware{Capacity: 2, Clock: clock}, func(http.ResponseWriter, *http.Request) {},
			wire.Load{TimeMillis: at.UnixMilli(), InFlight: 1, Capacity: 2, Util: 0.5}, ""},
		{"header only", &Middleware{Clock: clock}, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) },
			wire.Load{TimeMillis: at.UnixMilli(), InFlight: 1}, ""},
		{"draining", &Middleware{Capacity: 1, Clock: clock, Draining: func() bool { return true }}, status(503, ""),
			wire.Load{TimeMillis: at.UnixMilli(), InFlight: 1, Capacity: 1, Util: 1, State: wire.StateDraining}, ""},
		{"members", &Middleware{Clock: clock, Members: func() (wire.Members, bool) { return members, true }}, status(200, ""),
			wire.Load{TimeMillis: at.UnixMilli(), InFlight: 1, Epoch: 9}, members.String()},
		{"no members now", &Middleware{Clock: clock, Members: func() (wire.Members, bool) { return members, false }}, status(200, ""),
			wire.Load{TimeMillis: at.UnixMilli(), InFlight: 1}, ""},
		{"overwrites the handler's", &Middleware{Clock: clock}, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set(wire.LoadHeader, "v=1;t=5;q=99;u=9")
		}, wire.Load{TimeMillis: at.UnixMilli(), InFlight: 1}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.m.Wrap(tc.h))
			resp, _ := get(t, srv.URL)
			if got := loadOf(t, resp.Header); got != tc.want {
				t.Errorf("load %+v, want %+v", got, tc.want)
			}
			if got := resp.Header.Get(wire.MembersHeader); got != tc.wantMembers {
				t.Errorf("members %q, want %q", got, tc.wantMembers)
			}
			if n := tc.m.InFlight(); n != 0 {
				t.Errorf("InFlight %d after the request", n)
			}
		})
	}
}

func TestMiddlewareInFlight(t *testing.T) {
	const n = 4
	m := &Middleware{Capacity: 8}
	entered := make(chan struct{}, n)
	release := make(chan struct{})
	srv := newServer(t, m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		fmt.Fprint(w, "ok")
	})))
	loads := make(chan wire.Load, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := get(t, srv.URL)
			l, _ := wire.ParseLoad(resp.Header.Get(wire.LoadHeader))
			loads <- l
		}()
	}
	for range n {
		wait(t, entered, "a request to enter the handler")
	}
	if got := m.InFlight(); got != n {
		t.Errorf("InFlight = %d, want %d", got, n)
	}
	close(release)
	wg.Wait()
	close(loads)
	// Each count is taken at its own header write; the first writer saw
	// every request still in the handler.
	most := 0
	for l := range loads {
		if l.InFlight < 1 || l.InFlight > n || l.Util != float64(l.InFlight)/8 {
			t.Errorf("load %+v", l)
		}
		most = max(most, l.InFlight)
	}
	if most != n {
		t.Errorf("highest q = %d, want %d", most, n)
	}
}

func TestMiddlewareFlushStreams(t *testing.T) {
	m := &Middleware{Capacity: 1}
	next := make(chan struct{})
	srv := newServer(t, m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := w.(http.Flusher)
		if !ok {
			http.Error(w, "no flusher", 500)
			return
		}
		f.Flush() // the header goes out before any body
		fmt.Fprint(w, "first\n")
		f.Flush()
		<-next // the client must have the first line before the second is written
		fmt.Fprint(w, "second\n")
	})))
	req, _ := http.NewRequestWithContext(testCtx(t), "GET", srv.URL, nil)
	c := &http.Client{Transport: NewBaseTransport()}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	loadOf(t, resp.Header)
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(next)
	if rest, _ := io.ReadAll(br); string(rest) != "second\n" {
		t.Errorf("rest %q", rest)
	}
}

func TestMiddlewareInformational(t *testing.T) {
	m := &Middleware{}
	srv := newServer(t, m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(200)
		fmt.Fprint(w, "ok")
	})))
	var early []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		early = append(early, fmt.Sprint(code, " load=", h[wire.LoadHeader]))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(testCtx(t), trace), "GET", srv.URL, nil)
	c := &http.Client{Transport: NewBaseTransport()}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loadOf(t, resp.Header)
	if len(early) != 1 || early[0] != "103 load=[]" {
		t.Errorf("informational replies %q, want one 103 without a load record", early)
	}
}

func TestMiddlewareHijack(t *testing.T) {
	m := &Middleware{}
	done := make(chan struct{})
	var h http.Handler
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		close(done) // the reply reaches the client before the handler returns
	}))
	h = m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer conn.Close()
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		bw.Flush()
	}))
	resp, body := get(t, srv.URL)
	if body != "hijacked" || resp.Header.Get(wire.LoadHeader) != "" {
		t.Errorf("got %q with load %q", body, resp.Header.Get(wire.LoadHeader))
	}
	wait(t, done, "the handler to return")
	if m.InFlight() != 0 {
		t.Errorf("InFlight %d", m.InFlight())
	}
}

func TestMiddlewareReadFrom(t *testing.T) {
	m := &Middleware{}
	payload := strings.Repeat("r", 100<<10)
	srv := newServer(t, m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(io.ReaderFrom).ReadFrom(strings.NewReader(payload))
	})))
	resp, body := get(t, srv.URL)
	loadOf(t, resp.Header)
	if body != payload {
		t.Errorf("got %d bytes", len(body))
	}
}

func TestMiddlewareLoadBounds(t *testing.T) {
	m := &Middleware{Capacity: 1, Clock: func() time.Time { return time.UnixMilli(1) }}
	m.inflight.Store(wire.MaxInFlight + 5)
	l := m.load()
	if l.InFlight != wire.MaxInFlight || l.Util != wire.MaxUtil {
		t.Errorf("load %+v not clamped", l)
	}
	if err := l.Validate(); err != nil {
		t.Error(err)
	}
	for _, c := range []struct {
		capacity int
		ok       bool
	}{{0, true}, {1, true}, {wire.MaxInFlight, true}, {-1, false}, {wire.MaxInFlight + 1, false}} {
		if err := (&Middleware{Capacity: c.capacity}).Validate(); (err == nil) != c.ok {
			t.Errorf("Capacity %d: Validate = %v", c.capacity, err)
		}
	}
}

func TestServiceTimeAverage(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tau := 5 * time.Second
	var s serviceTime
	if got := s.micros(); got != 0 {
		t.Fatalf("before any sample: %d, want 0 (unknown)", got)
	}
	s.add(t0, 10*time.Millisecond, tau)
	if got := s.micros(); got != 10000 {
		t.Fatalf("first sample: %dµs, want 10000", got)
	}
	// One time constant later a 20 ms sample moves the average 1-1/e of the way.
	s.add(t0.Add(tau), 20*time.Millisecond, tau)
	want := int64((10 + 10*(1-math.Exp(-1))) * 1000)
	if got := s.micros(); got != want {
		t.Fatalf("after one tau: %dµs, want %d", got, want)
	}
	// A sample ending at the same instant carries no weight; one that ends
	// before the last (overlapping handlers) neither moves time back nor the average.
	s.add(t0.Add(tau), time.Second, tau)
	s.add(t0, time.Second, tau)
	if got := s.micros(); got != want {
		t.Fatalf("zero-weight samples moved the average to %dµs, want %d", got, want)
	}
	// Sub-microsecond handlers still report a known latency.
	var fast serviceTime
	fast.add(t0, 10*time.Nanosecond, tau)
	if got := fast.micros(); got != 1 {
		t.Fatalf("10ns handler: %dµs, want 1", got)
	}
}

func TestMiddlewareReportsServiceTime(t *testing.T) {
	var mu sync.Mutex
	now := time.UnixMilli(1_700_000_000_000)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := &Middleware{Clock: clock}
	srv := newServer(t, m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		now = now.Add(8 * time.Millisecond) // the handler "takes" 8 ms
		mu.Unlock()
		w.WriteHeader(200)
	})))
	resp, _ := get(t, srv.URL)
	if l := loadOf(t, resp.Header); l.LatencyMicros != 0 {
		t.Errorf("first reply reports l=%d before any request finished, want 0", l.LatencyMicros)
	}
	resp, _ = get(t, srv.URL)
	if l := loadOf(t, resp.Header); l.LatencyMicros != 8000 {
		t.Errorf("second reply reports l=%d, want 8000", l.LatencyMicros)
	}
	if got := m.ServiceTime(); got != 8*time.Millisecond {
		t.Errorf("ServiceTime() = %v, want 8ms", got)
	}
}
