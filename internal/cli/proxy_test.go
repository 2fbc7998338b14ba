package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/smartclient/smartclient/smarthttp"
	"github.com/smartclient/smartclient/wire"
)

// syncBuffer is a bytes.Buffer safe for the proxy's goroutine to write
// while the test reads.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{} // closed by the next Write; nil until someone waits
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wrote != nil {
		close(s.wrote)
		s.wrote = nil
	}
	return s.b.Write(p)
}

// next returns the output so far and a channel closed by the next write,
// read together so that no write falls between them.
func (s *syncBuffer) next() (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wrote == nil {
		s.wrote = make(chan struct{})
	}
	return s.b.String(), s.wrote
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testMember is a real HTTP member on a loopback port that counts the
// requests it served and reports load through the smarthttp middleware.
type testMember struct {
	*httptest.Server
	name   string
	served atomic.Int64
}

func newMember(t *testing.T, name string, h http.HandlerFunc) *testMember {
	t.Helper()
	m := &testMember{name: name}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s %s", name, r.URL.Path) }
	}
	mw := &smarthttp.Middleware{Capacity: 4}
	m.Server = httptest.NewServer(mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Member", name)
		h(w, r)
		m.served.Add(1)
	})))
	t.Cleanup(m.Server.Close)
	return m
}

// kill crashes the member: open connections are cut and the listener closed.
func (m *testMember) kill() {
	m.CloseClientConnections()
	m.Close()
}

type runningProxy struct {
	url    string
	stdout *syncBuffer
	stderr *syncBuffer
	lines  chan string // stdout, line by line, as printed
	cancel context.CancelFunc
	done   chan int
}

// startProxy runs `smartclient proxy` in-process on a free port and waits
// until it accepts connections. The proxy is stopped at the end of the test.
func startProxy(t *testing.T, args ...string) *runningProxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &runningProxy{
		stdout: &syncBuffer{}, stderr: &syncBuffer{}, lines: make(chan string, 1000),
		cancel: cancel, done: make(chan int, 1),
	}
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.stdout.Write([]byte(sc.Text() + "\n"))
			p.lines <- sc.Text()
		}
	}()
	ready := make(chan string, 1)
	args = append([]string{"proxy", "--listen", "127.0.0.1:0"}, args...)
	go func() {
		code := Run(ctx, args, pw, p.stderr, ready)
		pw.Close()
		p.done <- code
	}()
	select {
	case addr := <-ready:
		p.url = "http://" + addr
	case code := <-p.done:
		cancel()
		t.Fatalf("proxy exited with %d before listening: %s", code, p.stderr)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("proxy did not start within 10s")
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

// waitLine waits for a line of the proxy's output that contains s.
func (p *runningProxy) waitLine(t *testing.T, s string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-p.lines:
			if strings.Contains(l, s) {
				return
			}
		case <-timeout:
			t.Fatalf("no output line containing %q within 10s; output:\n%s", s, p.stdout)
		}
	}
}

// stop cancels the proxy (as SIGTERM would) and returns its exit status.
func (p *runningProxy) stop(t *testing.T) int {
	t.Helper()
	p.cancel()
	select {
	case code := <-p.done:
		p.done <- code // later calls see it too
		return code
	case <-time.After(15 * time.Second):
		t.Fatal("proxy did not stop within 15s of cancellation")
		return -1
	}
}

var client = &http.Client{Timeout: 10 * time.Second}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestProxyPassesRequestsAndSpreadsThem(t *testing.T) {
	a, b, c := newMember(t, "a", nil), newMember(t, "b", nil), newMember(t, "c", nil)
	p := startProxy(t, "--policy", "round-robin", "--member", a.URL, "--member", b.URL, "--member", c.URL)

	p.waitLine(t, "listening: ")
	out := p.stdout.String()
	for _, want := range []string{"policy: round-robin\n", "member: " + a.URL + "\n", "member: " + c.URL + "\n", "listening: " + p.url} {
		if !strings.Contains(out, want) {
			t.Errorf("start-up output lacks %q:\n%s", want, out)
		}
	}
	const n = 30
	for i := range n {
		code, body, h := get(t, fmt.Sprintf("%s/item/%d?x=1", p.url, i))
		if code != 200 {
			t.Fatalf("request %d: status %d: %s", i, code, body)
		}
		// The path reaches the member unchanged, and the member's own
		// headers come back.
		if want := fmt.Sprintf("%s /item/%d", h.Get("Member"), i); body != want {
			t.Fatalf("request %d: body %q, want %q", i, body, want)
		}
	}
	for _, m := range []*testMember{a, b, c} {
		if got := m.served.Load(); got != n/3 {
			t.Errorf("member %s served %d requests, want %d (round robin)", m.name, got, n/3)
		}
	}
}

func TestProxyRidesOutAKilledMember(t *testing.T) {
	// Member a is slow enough that the kill catches requests in flight there.
	a := newMember(t, "a", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "a")
	})
	b, c := newMember(t, "b", nil), newMember(t, "c", nil)
	p := startProxy(t, "--policy", "round-robin", "--member", a.URL, "--member", b.URL, "--member", c.URL)

	const workers, each = 4, 60
	var (
		wg       sync.WaitGroup
		done     atomic.Int64
		failures atomic.Int64
		killOnce sync.Once
		killed   = make(chan struct{})
		firstErr atomic.Value
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				resp, err := client.Get(p.url + "/x")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				if done.Add(1) == workers*each/3 {
					killOnce.Do(func() { a.kill(); close(killed) })
				}
			}
		}()
	}
	wg.Wait()
	<-killed
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d of %d GETs failed through the proxy after a member was killed; first: %v", f, workers*each, firstErr.Load())
	}
	servedBefore := a.served.Load()
	if b.served.Load()+c.served.Load()+servedBefore < workers*each {
		t.Fatalf("members served %d+%d+%d < %d requests", servedBefore, b.served.Load(), c.served.Load(), workers*each)
	}

	st := fetchStats(t, p.url)
	if st.Failed != 0 || st.Requests != workers*each {
		t.Errorf("director stats: requests=%d failed=%d, want %d and 0", st.Requests, st.Failed, workers*each)
	}
	for _, m := range st.Members {
		if m.URL == a.URL && m.Failures == 0 {
			t.Errorf("killed member %s has no failures in stats: %+v", a.URL, m)
		}
	}
}

func fetchStats(t *testing.T, base string) StatsJSON {
	t.Helper()
	code, body, h := get(t, base+StatsPath)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("stats: status %d, content type %q", code, h.Get("Content-Type"))
	}
	var st StatsJSON
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("stats: %v\n%s", err, body)
	}
	return st
}

func TestProxyStatsJSON(t *testing.T) {
	a, b := newMember(t, "a", nil), newMember(t, "b", nil)
	p := startProxy(t, "--member", a.URL, "--member", b.URL, "--policy", "least-loaded")
	for range 10 {
		if code, body, _ := get(t, p.url+"/"); code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
	}
	_, body, _ := get(t, p.url+StatsPath)
	// Check the field names as a client sees them, not through our struct.
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"policy", "requests", "failed", "retries", "hedges", "budget_denied", "epoch", "members"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("stats lack %q: %s", k, body)
		}
	}
	if raw["policy"] != "least-loaded" || raw["requests"] != 10.0 || raw["failed"] != 0.0 {
		t.Errorf("policy=%v requests=%v failed=%v, want least-loaded 10 0", raw["policy"], raw["requests"], raw["failed"])
	}
	members, _ := raw["members"].([]any)
	if len(members) != 2 {
		t.Fatalf("members: %v", raw["members"])
	}
	var picks, successes float64
	urls := map[string]bool{}
	for _, x := range members {
		m := x.(map[string]any)
		for _, k := range []string{"url", "state", "picks", "in_flight", "ewma_latency_ms", "successes", "failures", "ejections", "last_load"} {
			if _, ok := m[k]; !ok {
				t.Errorf("member lacks %q: %v", k, m)
			}
		}
		urls[m["url"].(string)] = true
		picks += m["picks"].(float64)
		successes += m["successes"].(float64)
		if m["state"] != "healthy" || m["in_flight"] != 0.0 {
			t.Errorf("member %v: state %v in_flight %v", m["url"], m["state"], m["in_flight"])
		}
		if m["picks"].(float64) > 0 {
			// The middleware's load record came back with the reply.
			ll, ok := m["last_load"].(map[string]any)
			if !ok || ll["capacity"] != 4.0 || ll["state"] != "ok" {
				t.Errorf("member %v last_load = %v, want capacity 4 state ok", m["url"], m["last_load"])
			}
		}
	}
	if !urls[a.URL] || !urls[b.URL] || picks != 10 || successes != 10 {
		t.Errorf("urls %v picks %v successes %v, want both members, 10, 10", urls, picks, successes)
	}
}

func TestProxyMetrics(t *testing.T) {
	a := newMember(t, "a", nil)
	p := startProxy(t, "--member", a.URL)
	for range 3 {
		get(t, p.url+"/x")
	}
	code, body, h := get(t, p.url+MetricsPath)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: status %d content type %q", code, h.Get("Content-Type"))
	}
	for _, want := range []string{
		"smartclient_director_info{policy=\"p2c\"} 1",
		"smartclient_requests_total 3",
		"smartclient_failed_requests_total 0",
		"smartclient_retries_total 0",
		"smartclient_hedges_total 0",
		fmt.Sprintf("smartclient_member_picks_total{member=%q} 3", a.URL),
		fmt.Sprintf("smartclient_member_failures_total{member=%q} 0", a.URL),
		fmt.Sprintf("smartclient_member_in_flight{member=%q} 0", a.URL),
		fmt.Sprintf("smartclient_member_state{member=%q,state=\"healthy\"} 1", a.URL),
		fmt.Sprintf("smartclient_member_state{member=%q,state=\"ejected\"} 0", a.URL),
		fmt.Sprintf("smartclient_member_ewma_latency_seconds{member=%q}", a.URL),
		"smartclient_proxy_request_duration_seconds_count{code=\"2xx\"} 3",
		"smartclient_proxy_in_flight 0",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The same metrics under the path that does not shadow the service's.
	if code, alt, _ := get(t, p.url+AltMetricsPath); code != 200 || !strings.Contains(alt, "smartclient_requests_total") {
		t.Errorf("%s: status %d", AltMetricsPath, code)
	}
}

func TestCollectorLints(t *testing.T) {
	a := newMember(t, "a", nil)
	cfg, err := parseProxyFlags([]string{"--member", a.URL})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProxy(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := NewCollector(p.Director())
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("lint: %s: %s", pr.Metric, pr.Text)
	}
	// 12 director-wide series; per member 6, plus 4 states (no load yet).
	if n := testutil.CollectAndCount(c); n != 12+6+4 {
		t.Errorf("collected %d series, want %d", n, 12+6+4)
	}
}

func TestProxyForwardedForIsNotForgeable(t *testing.T) {
	got := make(chan http.Header, 1)
	a := newMember(t, "a", func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Clone() })
	p := startProxy(t, "--member", a.URL)
	req, _ := http.NewRequest("GET", p.url+"/", nil)
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := <-got
	if xff := h.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the peer address 127.0.0.1 only", xff)
	}
	if xfh := h.Get("X-Forwarded-Host"); xfh != strings.TrimPrefix(p.url, "http://") {
		t.Errorf("X-Forwarded-Host = %q, want %q", xfh, strings.TrimPrefix(p.url, "http://"))
	}
}

func TestProxyStreams(t *testing.T) {
	release := make(chan struct{})
	a := newMember(t, "a", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second\n")
	})
	p := startProxy(t, "--member", a.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.url+"/events", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	// The member holds the rest of the reply until the first line has
	// arrived: the proxy must flush it at once, not buffer the response.
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(release)
	if rest, err := io.ReadAll(br); err != nil || string(rest) != "second\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

func TestProxyGracefulShutdown(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	a := newMember(t, "a", func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "done")
	})
	p := startProxy(t, "--member", a.URL)
	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := client.Get(p.url + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{resp.StatusCode, string(b), err}
	}()
	<-arrived
	p.cancel() // SIGTERM, as far as Run can tell
	p.waitLine(t, "shutting down")
	select {
	case code := <-p.done:
		t.Fatalf("proxy exited (%d) with a request in flight", code)
	default:
	}
	close(release)
	r := <-res
	if r.err != nil || r.code != 200 || r.body != "done" {
		t.Fatalf("in-flight request during shutdown: %d %q %v", r.code, r.body, r.err)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d, stderr %s", code, p.stderr)
	}
	if !strings.Contains(p.stdout.String(), "stopped\n") {
		t.Errorf("no 'stopped' line: %s", p.stdout)
	}
}

func TestProxyAllMembersDown(t *testing.T) {
	a := newMember(t, "a", nil)
	a.kill()
	p := startProxy(t, "--member", a.URL, "--max-attempts", "2")
	code, body, _ := get(t, p.url+"/x")
	if code != http.StatusBadGateway || !strings.Contains(body, "no member could serve") {
		t.Fatalf("status %d body %q, want 502", code, body)
	}
	if st := fetchStats(t, p.url); st.Failed != 1 {
		t.Errorf("failed = %d, want 1", st.Failed)
	}
}

// The proxy relays a member's 5xx when every attempt got one, and retries
// a GET elsewhere when one member fails.
func TestProxyRetriesServerErrors(t *testing.T) {
	bad := newMember(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "broken", http.StatusInternalServerError)
	})
	good := newMember(t, "good", nil)
	p := startProxy(t, "--policy", "round-robin", "--member", bad.URL, "--member", good.URL)
	for i := range 4 {
		if code, body, _ := get(t, p.url+"/x"); code != 200 || !strings.HasPrefix(body, "good") {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if st := fetchStats(t, p.url); st.Retries == 0 || st.Failed != 0 {
		t.Errorf("retries %d failed %d, want >0 and 0", st.Retries, st.Failed)
	}
}

func TestProxyAttemptTimeoutIs504(t *testing.T) {
	a := newMember(t, "a", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers; the proxy gives up
	})
	p := startProxy(t, "--member", a.URL, "--max-attempts", "1", "--attempt-timeout", "50ms")
	code, body, _ := get(t, p.url+"/hang")
	if code != http.StatusGatewayTimeout || !strings.Contains(body, "attempt timed out") {
		t.Fatalf("status %d body %q, want 504 naming the timeout", code, body)
	}
}

// TestProxyPollsAgents: members that cannot report load (plain servers, no
// middleware) are polled through the agents beside them, named with
// --agent; an agent saying its server is unhealthy (draining) takes the
// member out of rotation.
func TestProxyPollsAgents(t *testing.T) {
	var servedA, servedB atomic.Int64
	plain := func(n *atomic.Int64) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1) }))
		t.Cleanup(s.Close)
		return s
	}
	a, b := plain(&servedA), plain(&servedB)
	var polls atomic.Int64
	agentB := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/load" {
			http.NotFound(w, r)
			return
		}
		polls.Add(1)
		w.Header().Set(wire.LoadHeader, wire.Load{TimeMillis: time.Now().UnixMilli(), State: wire.StateDraining}.String())
	}))
	t.Cleanup(agentB.Close)
	p := startProxy(t, "--member", a.URL, "--member", b.URL, "--agent", b.URL+"="+agentB.URL, "--poll-interval", "10ms")
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond) // the proxy's stats page offers no event to wait on
	defer tick.Stop()
	for {
		st := fetchStats(t, p.url)
		var state string
		for _, m := range st.Members {
			if m.URL == b.URL {
				state = m.State
			}
		}
		if state == "draining" {
			break
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("member b never became draining through its agent (polls=%d, state %q)", polls.Load(), state)
		}
	}
	before := servedB.Load()
	for i := range 20 {
		if code, body, _ := get(t, p.url+"/"); code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	if got := servedB.Load() - before; got != 0 {
		t.Errorf("draining member b served %d of 20 requests after its agent said draining", got)
	}
	if servedA.Load() < 20 {
		t.Errorf("member a served %d, want >= 20", servedA.Load())
	}
}

func TestProxyAgentFlagErrors(t *testing.T) {
	m := "--member=http://127.0.0.1:1"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{m, "--agent", "http://127.0.0.1:1"}, "want MEMBER_URL=AGENT_URL"},
		{[]string{m, "--agent", "http://127.0.0.1:2=http://127.0.0.1:9"}, "is not one of the --member URLs"},
		{[]string{m, "--agent", "http://127.0.0.1:1=ftp:/x"}, "agent:"},
		{[]string{m, "--agent", "http://127.0.0.1:1=http://a:9", "--agent", "http://127.0.0.1:1=http://b:9"}, "already has an agent"},
	} {
		_, err := parseProxyFlags(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestProxyTuningFlags(t *testing.T) {
	m := "--member=http://127.0.0.1:1"
	cfg, err := parseProxyFlags([]string{m, "--hedge", "--hedge-quantile", "0.9", "--eject-base", "200ms", "--eject-max", "1s", "--probe-timeout", "300ms"})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Director
	if d.Hedge.Quantile != 0.9 || d.Health.BaseEjection != 200*time.Millisecond || d.Health.MaxEjection != time.Second || d.ProbeTimeout != 300*time.Millisecond {
		t.Errorf("flags not applied: hedge %+v health %+v probe %v", d.Hedge, d.Health, d.ProbeTimeout)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{m, "--hedge-quantile", "1"}, "--hedge-quantile 1: must be in (0, 1)"},
		{[]string{m, "--eject-base", "2s", "--eject-max", "1s"}, "want 0 < base <= max"},
		{[]string{m, "--eject-base", "0s"}, "want 0 < base <= max"},
		{[]string{m, "--probe-timeout", "0s"}, "--probe-timeout 0s: must be > 0"},
	} {
		if _, err := parseProxyFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}
