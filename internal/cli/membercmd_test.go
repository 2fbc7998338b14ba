package cli

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartclient/smartclient/wire"
)

var memberListenRE = regexp.MustCompile(`(?m)^listening on (\S+)$`)

type runningMember struct {
	url    string
	stdout *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startMemberCmd runs `smartclient member` in-process on a loopback port
// and waits until it listens; it is stopped at the end of the test.
func startMemberCmd(t *testing.T, args ...string) *runningMember {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := &runningMember{stdout: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	args = append([]string{"--listen", "127.0.0.1:0"}, args...)
	go func() { m.done <- runMember(ctx, args, m.stdout, io.Discard) }()
	deadline := time.After(10 * time.Second)
	for m.url == "" {
		out, wrote := m.stdout.next()
		if mm := memberListenRE.FindStringSubmatch(out); mm != nil {
			m.url = "http://" + mm[1]
			break
		}
		select {
		case err := <-m.done:
			cancel()
			t.Fatalf("member exited before listening: %v\n%s", err, m.stdout)
		case <-deadline:
			cancel()
			t.Fatalf("no 'listening on' within 10s:\n%s", m.stdout)
		case <-wrote:
		}
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-m.done:
			m.done <- err
		case <-time.After(15 * time.Second):
			t.Error("member did not stop within 15s of cancellation")
		}
	})
	return m
}

// waitOutput waits until the member has printed s.
func (m *runningMember) waitOutput(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		out, wrote := m.stdout.next()
		if strings.Contains(out, s) {
			return
		}
		select {
		case <-wrote:
		case <-deadline:
			t.Fatalf("member did not print %q within 10s:\n%s", s, m.stdout)
		}
	}
}

func memberGet(t *testing.T, method, url string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
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

func TestMemberServes(t *testing.T) {
	m := startMemberCmd(t, "--name", "m1", "--capacity", "3")
	resp, body := memberGet(t, "GET", m.url+"/", nil)
	if resp.StatusCode != 200 || body != "m1\n" || resp.Header.Get(MemberHeader) != "m1" {
		t.Fatalf("GET /: %d %q %s=%q", resp.StatusCode, body, MemberHeader, resp.Header.Get(MemberHeader))
	}
	l, err := wire.ParseLoad(resp.Header.Get(wire.LoadHeader))
	if err != nil || l.Capacity != 3 || l.State != wire.StateOK {
		t.Errorf("load record %q: %+v %v", resp.Header.Get(wire.LoadHeader), l, err)
	}
	resp, body = memberGet(t, "POST", m.url+"/any/path", strings.NewReader(strings.Repeat("x", 5000)))
	if resp.StatusCode != 200 || body != "m1\n" {
		t.Errorf("POST: %d %q", resp.StatusCode, body)
	}
	resp, body = memberGet(t, "GET", m.url+"/healthz", nil)
	if resp.StatusCode != 200 || body != "ok\n" || resp.Header.Get(MemberHeader) != "m1" {
		t.Errorf("GET /healthz: %d %q", resp.StatusCode, body)
	}
	resp, _ = memberGet(t, "DELETE", m.url+"/", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d, want 405", resp.StatusCode)
	}
	resp, _ = memberGet(t, "POST", m.url+"/", strings.NewReader(strings.Repeat("x", maxMemberRequest+1)))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST over the limit: %d, want 413", resp.StatusCode)
	}
}

func TestMemberBodyBytes(t *testing.T) {
	m := startMemberCmd(t, "--name", "m2", "--body-bytes", "100000")
	resp, body := memberGet(t, "GET", m.url+"/", nil)
	if resp.StatusCode != 200 || len(body) != 100000 || resp.ContentLength != 100000 {
		t.Errorf("GET: %d, %d bytes (Content-Length %d), want 100000", resp.StatusCode, len(body), resp.ContentLength)
	}
}

// TestMemberCapacityQueues: with capacity 1 and a 100ms service time, three
// concurrent requests are served one after another.
func TestMemberCapacityQueues(t *testing.T) {
	const st = 100 * time.Millisecond
	m := startMemberCmd(t, "--capacity", "1", "--service-time", st.String())
	start := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(m.url + "/")
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if d := time.Since(start); d < 3*st {
		t.Errorf("3 requests at capacity 1 and %v each took %v, less than %v: not queued", st, d, 3*st)
	}
}

// TestMemberDrainsOnCancel: ending the context (SIGTERM in the command)
// drains: a request in flight is answered, its reply says draining, and
// the command returns nil.
func TestMemberDrainsOnCancel(t *testing.T) {
	m := startMemberCmd(t, "--service-time", "1s", "--drain-announce", "100ms", "--drain-refuse", "50ms")
	type result struct {
		resp *http.Response
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := client.Get(m.url + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		inflight <- result{resp, err}
	}()
	// Cancel once the request is in the handler: its load record then
	// counts it.
	// The member offers no event for it, so ask its load record every 5ms.
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, _ := memberGet(t, "GET", m.url+"/healthz", nil)
		if l, err := wire.ParseLoad(resp.Header.Get(wire.LoadHeader)); err == nil && l.InFlight >= 2 {
			break
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("the slow request never showed in the load record")
		}
	}
	m.cancel()
	m.waitOutput(t, "draining")
	r := <-inflight
	if r.err != nil {
		t.Fatalf("request in flight during the drain: %v", r.err)
	}
	l, err := wire.ParseLoad(r.resp.Header.Get(wire.LoadHeader))
	if r.resp.StatusCode != 200 || err != nil || l.State != wire.StateDraining {
		t.Errorf("reply finished during the drain: %d, load %+v %v; want 200 and draining", r.resp.StatusCode, l, err)
	}
	select {
	case err := <-m.done:
		m.done <- err
		if err != nil {
			t.Errorf("member after drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("member did not return 10s after cancellation")
	}
	if !strings.Contains(m.stdout.String(), "drained") {
		t.Errorf("output lacks 'drained':\n%s", m.stdout)
	}
}

func TestMemberBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--service-dist", "uniform"},
		{"--capacity", "-1"},
		{"--name", ""},
		{"--name", "has space"},
		{"--service-time", "-1s"},
		{"--body-bytes", "-5"},
		{"--listen", "256.0.0.1:0"},
		{"extra"},
	} {
		err := runMember(context.Background(), args, io.Discard, io.Discard)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("member %q: %v, want a usage error", args, err)
		}
	}
	var he helpError
	if err := runMember(context.Background(), []string{"-h"}, io.Discard, io.Discard); !errors.As(err, &he) {
		t.Errorf("member -h: %v, want help", err)
	}
}

// TestServiceSampler: fixed is fixed; exponential draws with a seed have
// the configured mean and never exceed the cap.
func TestServiceSampler(t *testing.T) {
	if d := serviceSampler(7*time.Millisecond, "fixed", 1)(); d != 7*time.Millisecond {
		t.Errorf("fixed: %v", d)
	}
	const mean = 10 * time.Millisecond
	s := serviceSampler(mean, "exp", 42)
	var sum time.Duration
	const n = 20000
	for range n {
		d := s()
		if d < 0 || d > expCap*mean {
			t.Fatalf("draw %v outside 0..%v", d, expCap*mean)
		}
		sum += d
	}
	got := float64(sum/n) / float64(mean)
	if math.Abs(got-1) > 0.05 {
		t.Errorf("exponential mean %.3f × the configured mean, want within 5%%", got)
	}
}
