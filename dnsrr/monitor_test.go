package dnsrr

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smartclient/smartclient/agent"
	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/smarthttp"
	"github.com/smartclient/smartclient/wire"
)

// logLines collects Monitor.Logf lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logLines) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.lines, func(x string) bool { return strings.Contains(x, s) })
}

func TestMemberAddr(t *testing.T) {
	for _, tt := range []struct {
		url, want string
		err       error
	}{
		{"http://127.0.0.1:8080", "127.0.0.1:8080", nil},
		{"http://[::1]:80", "[::1]:80", nil},
		{"https://10.0.0.1", "10.0.0.1:443", nil},
		{"http://10.0.0.1", "10.0.0.1:80", nil},
		{"http://web.example:80", "", ErrNotAddress},
	} {
		ap, err := MemberAddr(tt.url)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("MemberAddr(%q) error %v, want %v", tt.url, err, tt.err)
			}
			continue
		}
		if err != nil || ap.String() != tt.want {
			t.Errorf("MemberAddr(%q) = %v, %v; want %s", tt.url, ap, err, tt.want)
		}
	}
}

func TestNewMonitorRefuses(t *testing.T) {
	chk := ProbeChecker{&smarthttp.Prober{}}
	for _, tt := range []struct {
		members []string
		err     error
	}{
		{[]string{"http://10.0.0.1:80", "http://10.0.0.2:81"}, ErrMixedPorts},
		{[]string{"http://10.0.0.1:80", "http://host.example:80"}, ErrNotAddress},
		{nil, balance.ErrNoMembers},
	} {
		var ms []balance.Member
		for _, u := range tt.members {
			ms = append(ms, balance.Member{URL: u})
		}
		if _, err := NewMonitor(MonitorConfig{}, ms, chk); !errors.Is(err, tt.err) {
			t.Errorf("NewMonitor(%v) error %v, want %v", tt.members, err, tt.err)
		}
	}
}

// TestHealthChangesAnswers runs the monitor on a fake clock against real
// members: a member whose health check fails leaves the answers and comes
// back once it passes again; with every member down, all are answered.
func TestHealthChangesAnswers(t *testing.T) {
	const n = 3
	sw := make([]*switchable, n)
	srvs := samePortMembers(t, n, func(i int) http.Handler {
		sw[i] = &switchable{}
		return sw[i]
	})
	var members []balance.Member
	for _, s := range srvs {
		members = append(members, balance.Member{URL: s.URL})
	}
	clk := clock.NewFake(time.Unix(1e9, 0))
	var log logLines
	mon, err := NewMonitor(MonitorConfig{Clock: clk, Logf: log.logf},
		members, ProbeChecker{&smarthttp.Prober{Path: "/health"}})
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	z, _ := NewZone("web.example.", 5*time.Second, 0)
	s := startServer(t, &Handler{Zone: z, Viewer: mon})

	answered := func() []string {
		t.Helper()
		ips := answerIPs(exchange(t, "udp", s.Addr(), query("web.example.", dns.TypeA)))
		slices.Sort(ips)
		return ips
	}
	all := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	// round advances the fake clock by one interval and runs a round.
	round := func() {
		clk.Advance(time.Second)
		mon.Round()
	}
	// until runs rounds until the answer is want, for at most a minute of
	// fake time (longer than the longest ejection).
	until := func(what string, want []string) {
		t.Helper()
		for range 60 {
			round()
			if got := answered(); slices.Equal(got, want) {
				return
			}
		}
		t.Fatalf("%s: answer %v after 60 rounds, want %v", what, answered(), want)
	}

	round()
	if got := answered(); !slices.Equal(got, all) {
		t.Fatalf("all healthy: answer %v, want %v", got, all)
	}

	sw[1].down.Store(true)
	until("member 2 down", []string{"127.0.0.1", "127.0.0.3"})
	if !log.contains("left out") {
		t.Errorf("no log line for the member left out: %q", log.lines)
	}

	sw[1].down.Store(false)
	until("member 2 recovered", all)
	if !log.contains("answered again") {
		t.Errorf("no log line for the member readmitted: %q", log.lines)
	}

	for _, m := range sw {
		m.down.Store(true)
	}
	for range 10 {
		round()
		if mon.View().Panic {
			break
		}
	}
	if !mon.View().Panic {
		t.Fatal("every member down: view not in panic mode")
	}
	if got := answered(); !slices.Equal(got, all) {
		t.Errorf("every member down: answer %v, want all %v", got, all)
	}
	if !log.contains("panic mode") {
		t.Errorf("no log line for panic mode: %q", log.lines)
	}

	for _, m := range sw {
		m.down.Store(false)
	}
	until("all recovered", all)
	for range 60 {
		if !mon.View().Panic {
			break
		}
		round()
	}
	if mon.View().Panic {
		t.Error("all recovered: still in panic mode")
	}
}

// TestStartRunsRounds checks that Start schedules rounds on the clock.
func TestStartRunsRounds(t *testing.T) {
	sw := &switchable{}
	srvs := samePortMembers(t, 1, func(int) http.Handler { return sw })
	clk := clock.NewFake(time.Unix(1e9, 0))
	mon, err := NewMonitor(MonitorConfig{Clock: clk, Interval: time.Second},
		[]balance.Member{{URL: srvs[0].URL}}, ProbeChecker{&smarthttp.Prober{Path: "/health"}})
	if err != nil {
		t.Fatal(err)
	}
	mon.Start()
	for i := 1; i <= 3; i++ {
		clk.Advance(time.Second) // runs the round on this goroutine
		if got := sw.hits.Load(); got != int64(i) {
			t.Fatalf("after %d intervals: %d checks, want %d", i, got, i)
		}
	}
	mon.Close()
	clk.Advance(time.Second)
	if got := sw.hits.Load(); got != 3 {
		t.Errorf("after Close: %d checks, want 3", got)
	}
}

// TestAgentDraining checks members through their agents: a member whose
// agent reports draining (the agent's answer when its health check fails)
// is left out after one round, without waiting for the failure count.
func TestAgentDraining(t *testing.T) {
	var draining atomic.Bool
	ag := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := wire.Load{TimeMillis: 1, Capacity: 1}
		if r.URL.Query().Get("m") == "2" && draining.Load() {
			l.State = wire.StateDraining
		}
		w.Header().Set(wire.LoadHeader, l.String())
	}))
	defer ag.Close()
	poller := &agent.Poller{Agents: map[string]string{
		"http://10.0.0.1:80": ag.URL + "/?m=1",
		"http://10.0.0.2:80": ag.URL + "/?m=2",
	}}
	// The agent URL carries the member's number in its query; LoadPoller
	// joins LoadPath to the URL's path and keeps the query.
	mon, err := NewMonitor(MonitorConfig{Clock: clock.NewFake(time.Unix(1e9, 0))},
		[]balance.Member{{URL: "http://10.0.0.1:80"}, {URL: "http://10.0.0.2:80"}}, poller)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	ips := func() []string {
		var out []string
		for _, a := range mon.View().V4 {
			out = append(out, a.String())
		}
		return out
	}
	mon.Round()
	if got := ips(); !slices.Equal(got, []string{"10.0.0.1", "10.0.0.2"}) {
		t.Fatalf("both OK: view %v", got)
	}
	draining.Store(true)
	mon.Round()
	if got := ips(); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Fatalf("member 2 draining: view %v, want only 10.0.0.1", got)
	}
	draining.Store(false)
	mon.Round()
	if got := ips(); !slices.Equal(got, []string{"10.0.0.1", "10.0.0.2"}) {
		t.Fatalf("member 2 back: view %v", got)
	}
}
