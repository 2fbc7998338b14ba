package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// runDNSCmd runs `smartclient dns args` as Run would and returns its exit
// status and output.
func runDNSCmd(ctx context.Context, args []string, ready chan<- string, stdout, stderr io.Writer) int {
	return report("dns", runDNS(ctx, args, stdout, stderr, ready), stdout, stderr)
}

func TestDNSBadFlags(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	const m = "http://127.0.0.1:9"
	z := []string{"--zone", "web.test."}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no zone", []string{"--member", m}, "--zone is required"},
		{"bad zone", []string{"--zone", "a..b", "--member", m}, `--zone "a..b": not a valid domain name`},
		{"no members", z, "no members: give at least one --member"},
		{"hostname member", append(z, "--member", "http://localhost:80"), `--member "http://localhost:80": the host must be an IP address`},
		{"not a URL", append(z, "--member", "10.0.0.1:80"), `--member "10.0.0.1:80": must be an absolute`},
		{"mixed ports", append(z, "--member", "http://10.0.0.1:80", "--member", "http://10.0.0.2:81"), `--member "http://10.0.0.2:81": port 81 differs`},
		{"duplicate", append(z, "--member", m, "--member", m+"/"), "duplicate member"},
		{"ttl fraction", append(z, "--member", m, "--ttl", "1500ms"), "--ttl 1.5s: must be whole seconds"},
		{"ttl garbage", append(z, "--member", m, "--ttl", "soon"), "-ttl"},
		{"answers", append(z, "--member", m, "--answers", "-1"), "--answers -1: must be >= 0"},
		{"interval", append(z, "--member", m, "--interval", "0s"), "--interval 0s: must be > 0"},
		{"check timeout", append(z, "--member", m, "--check-timeout", "-1s"), "--check-timeout -1s: must be > 0"},
		{"health path", append(z, "--member", m, "--health-path", "health"), `--health-path "health": must start with /`},
		{"path and agent", append(z, "--member", m, "--health-path", "/h", "--agent", m+"=http://127.0.0.1:9100"), "--health-path and --agent: give one"},
		{"agent unknown member", append(z, "--member", m, "--agent", "http://127.0.0.1:8=http://127.0.0.1:9100"), "is not one of the --member URLs"},
		{"agent missing", append(z, "--member", m, "--member", "http://127.0.0.2:9", "--agent", m+"=http://127.0.0.1:9100"), "--agent: member http://127.0.0.2:9 has no agent"},
		{"agent syntax", append(z, "--member", m, "--agent", "nope"), `--agent "nope": want MEMBER_URL=AGENT_URL`},
		{"listen syntax", append(z, "--member", m, "--listen", "nope"), `--listen "nope": want HOST:PORT`},
		{"listen busy", append(z, "--member", m, "--listen", busy.Addr().String()), `--listen "` + busy.Addr().String() + `"`},
		{"unknown flag", append(z, "--member", m, "--frob"), "flag provided but not defined: -frob"},
		{"positional", append(z, "--member", m, "extra"), `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o, e bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // should it start after all, it stops at once
			code := runDNSCmd(ctx, tc.args, nil, &o, &e)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr %q", code, ExitUsage, e.String())
			}
			if !strings.Contains(e.String(), tc.want) || strings.Count(e.String(), "\n") != 1 {
				t.Errorf("stderr %q; want one line containing %q", e.String(), tc.want)
			}
		})
	}
}

func TestDNSHelp(t *testing.T) {
	var o, e bytes.Buffer
	if code := runDNSCmd(context.Background(), []string{"-h"}, nil, &o, &e); code != ExitOK {
		t.Fatalf("-h: exit %d, stderr %q", code, e.String())
	}
	for _, s := range []string{"usage: smartclient dns", "-zone", "-health-path", "-agent", "-ttl", "-answers", "panic mode"} {
		if !strings.Contains(o.String(), s) {
			t.Errorf("help lacks %q:\n%s", s, o.String())
		}
	}
}

// dnsMember is an HTTP member whose /health can be failed.
type dnsMember struct {
	name string
	down atomic.Bool
}

func (m *dnsMember) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" && m.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprint(w, m.name)
}

// samePortMembers starts HTTP members on 127.0.0.1, 127.0.0.2, … sharing
// one port, as DNS round robin needs (Linux routes all of 127/8 to lo).
func samePortMembers(t *testing.T, hs []http.Handler) []*httptest.Server {
	t.Helper()
	for range 20 {
		first, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{first}
		for i := 2; i <= len(hs); i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", i, port))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		if len(lns) < len(hs) {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		out := make([]*httptest.Server, len(hs))
		for i, ln := range lns {
			s := httptest.NewUnstartedServer(hs[i])
			s.Listener.Close()
			s.Listener = ln
			s.Start()
			t.Cleanup(s.Close)
			out[i] = s
		}
		return out
	}
	t.Fatalf("could not bind %d loopback addresses on one port", len(hs))
	return nil
}

// TestDNSEndToEnd runs the command against real members and resolves its
// name with Go's own resolver: an HTTP client reaches every member through
// the name, a member failing its health check drops out of the answers and
// returns once it recovers.
func TestDNSEndToEnd(t *testing.T) {
	ms := []*dnsMember{{name: "one"}, {name: "two"}, {name: "three"}}
	srvs := samePortMembers(t, []http.Handler{ms[0], ms[1], ms[2]})
	_, port, _ := net.SplitHostPort(srvs[0].Listener.Addr().String())

	args := []string{"--zone", "web.test.", "--listen", "127.0.0.1:0", "--health-path", "/health",
		"--interval", "20ms", "--ttl", "0s"}
	for _, s := range srvs {
		args = append(args, "--member", s.URL)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	ready := make(chan string, 1)
	done := make(chan int, 1)
	go func() { done <- runDNSCmd(ctx, args, ready, stdout, stderr) }()
	var addr string
	select {
	case addr = <-ready:
	case code := <-done:
		cancel()
		t.Fatalf("dns exited with %d before listening: %s", code, stderr.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("dns did not start within 10s")
	}
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != ExitOK {
				t.Errorf("exit %d after cancel; stderr %s", code, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("dns did not stop within 10s of cancel")
		}
	}()

	res := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	lookup := func() []string {
		t.Helper()
		lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer lcancel()
		hs, err := res.LookupHost(lctx, "web.test.")
		if err != nil {
			t.Fatalf("LookupHost: %v", err)
		}
		slices.Sort(hs)
		return hs
	}
	// waitFor polls the name until the sorted answer is want.
	waitFor := func(what string, want []string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			got := lookup()
			if slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: answer %v, want %v; stderr:\n%s", what, got, want, stderr.String())
			}
			<-tick.C // pace the polls
		}
	}
	all := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	if got := lookup(); !slices.Equal(got, all) {
		t.Fatalf("answer %v, want %v", got, all)
	}
	_, srvs2, err := res.LookupSRV(context.Background(), "http", "tcp", "web.test.")
	if err != nil || len(srvs2) != 1 || fmt.Sprint(srvs2[0].Port) != port || srvs2[0].Target != "web.test." {
		t.Errorf("LookupSRV(http, tcp, web.test.) = %v, %v; want one record, port %s, target web.test.", srvs2, err, port)
	}

	// An ordinary client resolves the name on every new connection and
	// dials the first address: rotation spreads it over every member.
	dialer := &net.Dialer{Resolver: res, Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, a string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp4", a)
		},
	}}
	seen := map[string]int{}
	for range 9 {
		resp, err := client.Get("http://web.test.:" + port + "/")
		if err != nil {
			t.Fatalf("GET through the name: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(b)]++
	}
	if len(seen) != 3 {
		t.Errorf("9 requests reached %v; want all three members", seen)
	}

	ms[1].down.Store(true)
	waitFor("member two failing", []string{"127.0.0.1", "127.0.0.3"})
	ms[1].down.Store(false)
	waitFor("member two recovered", all)
	if s := stderr.String(); !strings.Contains(s, "left out") || !strings.Contains(s, "answered again") {
		t.Errorf("stderr lacks the member's changes:\n%s", s)
	}
	if s := stdout.String(); !strings.Contains(s, "listening: "+addr) || !strings.Contains(s, "zone: web.test.") {
		t.Errorf("stdout %q", s)
	}
}

// TestDNSRegistered checks the command is reachable through Run.
func TestDNSRegistered(t *testing.T) {
	if code, out, errOut := run("help", "dns"); code != ExitOK || !strings.Contains(out, "usage: smartclient dns") {
		t.Errorf("help dns: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut := run("dns", "--member", "http://127.0.0.1:9"); code != ExitUsage || !strings.Contains(errOut, "--zone is required") {
		t.Errorf("dns without --zone: exit %d, stderr %q", code, errOut)
	}
	if code, out, _ := run("help"); code != ExitOK || !strings.Contains(out, "  dns ") {
		t.Errorf("help does not list dns: %q", out)
	}
}
