package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/smarthttp"
	"github.com/smartclient/smartclient/wire"
)

// smarthttp.LoadPoller, unchanged, reads the agent's load record.
func TestSmarthttpLoadPollerReadsAgent(t *testing.T) {
	tt := newTCPTarget(t)
	dial(t, tt.addr, 2)
	_, base := startAgent(t, Config{Target: tt.addr, Capacity: 8, Interval: fast})
	waitReport(t, base, "2 connections", func(r Report) bool { return r.Connections >= 2 })
	l, err := (&smarthttp.LoadPoller{Path: LoadPath}).PollLoad(context.Background(), balance.Member{URL: base})
	if err != nil {
		t.Fatal(err)
	}
	if l.InFlight < 2 || l.Capacity != 8 || l.Util != float64(l.InFlight)/8 || l.State != wire.StateOK || l.TimeMillis <= 0 {
		t.Errorf("polled load %+v", l)
	}
	if _, err := (&Poller{}).PollLoad(context.Background(), balance.Member{URL: "http://elsewhere:1"}); err == nil {
		t.Error("Poller polled a member without an agent")
	}
}

// sickServer is an unmodified HTTP server: / answers and counts the
// test's requests (marked with testHeader, so that stray traffic from other
// processes to a reused port is not counted), /health answers 503 while
// sick.
type sickServer struct {
	*httptest.Server
	hits atomic.Int64
	sick atomic.Bool
}

const testHeader = "X-Agent-Test"

func newSickServer(t *testing.T) *sickServer {
	s := &sickServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			if s.sick.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		if r.Header.Get(testHeader) == t.Name() {
			s.hits.Add(1)
		}
		io.WriteString(w, "hello\n")
	}))
	t.Cleanup(s.Close)
	return s
}

// A director polling agents through Poller learns each unmodified
// server's connections, and stops sending work to a server whose health
// check fails although the server itself still answers.
func TestDirectorUsesAgents(t *testing.T) {
	a, b := newSickServer(t), newSickServer(t)
	agents := map[string]string{}
	for _, s := range []*sickServer{a, b} {
		_, base := startAgent(t, Config{Target: strings.TrimPrefix(s.URL, "http://"), CheckHTTP: "/health", Interval: fast, Capacity: 100})
		agents[s.URL] = base
	}
	d, err := director.New(director.Config{
		Poller:       &Poller{Agents: agents},
		PollInterval: fast,
		Health:       balance.HealthConfig{ConsecutiveFailures: 1 << 30, FailureRate: 1, MinRequests: 1 << 30},
	}, []balance.Member{{URL: a.URL}, {URL: b.URL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	tr := smarthttp.NewTransport(d, nil)
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	member := func(url string) balance.EndpointStats {
		for _, m := range d.Stats().Members {
			if m.Member.URL == url {
				return m
			}
		}
		t.Fatalf("no member %s", url)
		return balance.EndpointStats{}
	}
	dial(t, strings.TrimPrefix(a.URL, "http://"), 5)
	waitFor(t, "the director to learn a's 5 connections", func() bool { return member(a.URL).LastLoad.InFlight >= 5 })
	if l := member(a.URL).LastLoad; l.Capacity != 100 || l.LatencyMicros <= 0 {
		t.Errorf("a's load %+v: want c=100 and the check's service time", l)
	}

	b.sick.Store(true)
	waitFor(t, "the director to see b draining", func() bool { return member(b.URL).State == balance.Draining })
	beforeA, before := a.hits.Load(), b.hits.Load()
	for range 30 {
		req, _ := http.NewRequest(http.MethodGet, "http://service/", nil)
		req.Header.Set(testHeader, t.Name())
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if n, na := b.hits.Load()-before, a.hits.Load()-beforeA; n != 0 || na != 30 {
		t.Errorf("unhealthy b got %d of 30 requests, a %d", n, na)
	}
	b.sick.Store(false)
	waitFor(t, "b back in service", func() bool { return member(b.URL).State == balance.Healthy })
	if st := d.Stats(); st.PollErrors != 0 {
		t.Errorf("%d poll errors", st.PollErrors)
	}
}

// A poll that finds the agent gone fails fast; the director counts it.
func TestPollerAgentGone(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	gone := srv.URL
	srv.Close()
	p := &Poller{Agents: map[string]string{"http://m:1": gone}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.PollLoad(ctx, balance.Member{URL: "http://m:1"}); err == nil {
		t.Error("poll of a closed agent succeeded")
	}
}
