package agent

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/smartclient/smartclient/wire"
)

// tcpTarget is a TCP server the test controls: it accepts connections and
// holds them open until closed, like a server with idle clients.
type tcpTarget struct {
	t    testing.TB
	addr string
	mu   sync.Mutex
	ln   net.Listener
	conn []net.Conn
}

func newTCPTarget(t testing.TB) *tcpTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tt := &tcpTarget{t: t, addr: ln.Addr().String()}
	tt.serve(ln)
	t.Cleanup(tt.down)
	return tt
}

func (tt *tcpTarget) serve(ln net.Listener) {
	tt.mu.Lock()
	tt.ln = ln
	tt.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tt.mu.Lock()
			tt.conn = append(tt.conn, c)
			tt.mu.Unlock()
		}
	}()
}

// down closes the listener and every accepted connection.
func (tt *tcpTarget) down() {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if tt.ln != nil {
		tt.ln.Close()
		tt.ln = nil
	}
	for _, c := range tt.conn {
		c.Close()
	}
	tt.conn = nil
}

// up listens again on the same address.
func (tt *tcpTarget) up() {
	ln, err := net.Listen("tcp", tt.addr)
	if err != nil {
		tt.t.Fatalf("relisten on %s: %v", tt.addr, err)
	}
	tt.serve(ln)
}

// dial opens n client connections to the target, closed at the end of the test.
func dial(t testing.TB, addr string, n int) {
	t.Helper()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
}

// startAgent runs an agent on a loopback port until the end of the test.
func startAgent(t *testing.T, cfg Config) (*Agent, string) {
	t.Helper()
	if cfg.DrainGrace == 0 {
		cfg.DrainGrace = 10 * time.Millisecond
	}
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return a, "http://" + ln.Addr().String()
}

// loadClient enforces the contract: /load answers within a second.
var loadClient = &http.Client{Timeout: time.Second}

// getLoad fetches /load and returns the decoded report and the wire
// record from the header.
func getLoad(t *testing.T, base string) (Report, map[string]any, wire.Load) {
	t.Helper()
	resp, err := loadClient.Get(base + LoadPath)
	if err != nil {
		t.Fatalf("GET /load: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /load: status %d, type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var r Report
	var raw map[string]any
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("report %s: %v", body, err)
	}
	json.Unmarshal(body, &raw)
	l, err := wire.ParseLoad(resp.Header.Get(wire.LoadHeader))
	if err != nil {
		t.Fatalf("%s header %q: %v", wire.LoadHeader, resp.Header.Get(wire.LoadHeader), err)
	}
	if l.String() != r.Load {
		t.Errorf("header %q, body's load %q", l, r.Load)
	}
	r.WireLoad = l // not in the JSON
	return r, raw, l
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tk.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitReport polls /load until cond holds for the report.
func waitReport(t *testing.T, base, what string, cond func(Report) bool) Report {
	t.Helper()
	var r Report
	waitFor(t, what, func() bool {
		r, _, _ = getLoad(t, base)
		return cond(r)
	})
	return r
}
