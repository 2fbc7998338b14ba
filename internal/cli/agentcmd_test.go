package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/wire"
)

// runAgentCmd runs `smartclient agent ARGS` to completion and returns its
// exit status and output, as Run would.
func runAgentCmd(args ...string) (int, string, string) {
	var out, errs bytes.Buffer
	code := report("agent", runAgent(context.Background(), args, &out, &errs), &out, &errs)
	return code, out.String(), errs.String()
}

func TestAgentBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string // in stderr
	}{
		{nil, "--target is required"},
		{[]string{"--target", "nohost"}, "--target"},
		{[]string{"--target", "127.0.0.1:0"}, "--target"},
		{[]string{"--target", "127.0.0.1:70000"}, "--target"},
		{[]string{"--target", "0.0.0.0:80"}, "--advertise"},
		{[]string{"--target", "127.0.0.1:80", "--listen", "9100"}, "--listen"},
		{[]string{"--target", "127.0.0.1:80", "--capacity", "-1"}, "--capacity"},
		{[]string{"--target", "127.0.0.1:80", "--capacity", "x"}, "-capacity"},
		{[]string{"--target", "127.0.0.1:80", "--util-from", "ram"}, "--util-from"},
		{[]string{"--target", "127.0.0.1:80", "--util-from", "cmd"}, "--util-from cmd needs --load-cmd"},
		{[]string{"--target", "127.0.0.1:80", "--util-from", "conns"}, "--util-from conns needs --capacity"},
		{[]string{"--target", "127.0.0.1:80", "--interval", "1ms"}, "--interval"},
		{[]string{"--target", "127.0.0.1:80", "--check-timeout", "-1s"}, "--check-timeout"},
		{[]string{"--target", "127.0.0.1:80", "--drain-grace", "0s"}, "--drain-grace"},
		{[]string{"--target", "127.0.0.1:80", "--check-http", "health"}, "--check-http"},
		{[]string{"--target", "127.0.0.1:80", "--advertise", "10.0.0.1:80"}, "--advertise"},
		{[]string{"--target", "127.0.0.1:80", "--service", "web"}, "--service"},
		{[]string{"--target", "127.0.0.1:80", "--gossip-bind", "127.0.0.1:0"}, "--gossip-bind needs --service"},
		{[]string{"--target", "127.0.0.1:80", "--gossip-bind", "localhost:7946", "--service", "service://web"}, "--gossip-bind"},
		{[]string{"--target", "127.0.0.1:80", "--join", "127.0.0.1:7946"}, "--join and --zone need --gossip-bind"},
		{[]string{"--target", "127.0.0.1:80", "--gossip-bind", "127.0.0.1:0", "--service", "service://web", "--join", "x"}, "--join"},
		{[]string{"--target", "127.0.0.1:80", "extra"}, "unexpected argument"},
		{[]string{"--target", "127.0.0.1:80", "--listen", "192.0.2.1:1"}, "--listen"}, // an address not on this host
	}
	for _, tc := range tests {
		code, _, errs := runAgentCmd(tc.args...)
		if code != ExitUsage || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("agent %q: exit %d, stderr %q; want %d and one line containing %q", tc.args, code, errs, ExitUsage, tc.want)
		}
	}
}

func TestAgentHelp(t *testing.T) {
	code, out, _ := runAgentCmd("-h")
	if code != ExitOK || !strings.Contains(out, "usage: smartclient agent") || !strings.Contains(out, "-check-http") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
}

// runningAgent is `smartclient agent` running in-process.
type runningAgent struct {
	cancel context.CancelFunc
	done   chan error
	stdout *syncBuffer
	base   string
}

var listeningRE = regexp.MustCompile(`(?m)^listening on (\S+)$`)

func startAgentCmd(t *testing.T, args ...string) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{cancel: cancel, done: make(chan error, 1), stdout: &syncBuffer{}}
	go func() {
		ra.done <- runAgent(ctx, append([]string{"--listen", "127.0.0.1:0", "--drain-grace", "20ms"}, args...), ra.stdout, io.Discard)
	}()
	t.Cleanup(func() { ra.stop(t) })
	deadline := time.After(10 * time.Second)
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for {
		if m := listeningRE.FindStringSubmatch(ra.stdout.String()); m != nil {
			ra.base = "http://" + m[1]
			return ra
		}
		select {
		case err := <-ra.done:
			t.Fatalf("agent exited before listening: %v\n%s", err, ra.stdout)
		case <-tk.C:
		case <-deadline:
			t.Fatalf("no 'listening on' within 10s:\n%s", ra.stdout)
		}
	}
}

// stop cancels the agent (as SIGTERM would) and returns runAgent's error.
func (ra *runningAgent) stop(t *testing.T) error {
	t.Helper()
	ra.cancel()
	select {
	case err := <-ra.done:
		ra.done <- err
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop within 10s")
		return nil
	}
}

func (ra *runningAgent) load(t *testing.T) (map[string]any, wire.Load) {
	t.Helper()
	resp, err := (&http.Client{Timeout: time.Second}).Get(ra.base + "/load")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m); err != nil {
		t.Fatal(err)
	}
	l, err := wire.ParseLoad(resp.Header.Get(wire.LoadHeader))
	if err != nil {
		t.Fatal(err)
	}
	return m, l
}

func TestAgentCommand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	target := ln.Addr().String()
	ra := startAgentCmd(t, "--target", target, "--service", "service://web", "--capacity", "8", "--interval", "50ms",
		"--load-cmd", "echo 0.5", "--advertise", "http://web1.example:8080")
	out := ra.stdout.String()
	if !strings.Contains(out, "target: "+target+" (tcp check) healthy") || !strings.Contains(out, "member: http://web1.example:8080") {
		t.Errorf("output:\n%s", out)
	}
	m, l := ra.load(t)
	if m["healthy"] != true || m["address"] != target || m["url"] != "http://web1.example:8080" || m["t"] == nil ||
		m["cmd_value"] != 0.5 || m["service"] != "service://web" || l.Capacity != 8 || l.State != wire.StateOK {
		t.Errorf("load %v, wire %+v", m, l)
	}

	// POST /drain ends the command after the grace.
	resp, err := http.Post(ra.base+"/drain", "", nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /drain: %v %v", resp, err)
	}
	resp.Body.Close()
	select {
	case err := <-ra.done:
		ra.done <- err
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent still running after POST /drain")
	}
	if !strings.HasSuffix(ra.stdout.String(), "stopped\n") {
		t.Errorf("output:\n%s", ra.stdout)
	}
}

// A target that is down: the agent starts, says so, serves healthy:false,
// and stops cleanly on SIGTERM (context cancellation).
func TestAgentCommandTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()
	ra := startAgentCmd(t, "--target", target, "--check-http", "/health", "--interval", "50ms")
	if !strings.Contains(ra.stdout.String(), "unhealthy: ") {
		t.Errorf("output:\n%s", ra.stdout)
	}
	m, l := ra.load(t)
	if m["healthy"] != false || m["state"] != "draining" || l.State != wire.StateDraining {
		t.Errorf("load %v", m)
	}
	if err := ra.stop(t); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// Two agents gossip through the command's flags.
func TestAgentCommandGossip(t *testing.T) {
	var targets []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		targets = append(targets, ln.Addr().String())
	}
	a := startAgentCmd(t, "--target", targets[0], "--service", "service://web", "--interval", "50ms", "--gossip-bind", "127.0.0.1:0")
	g := regexp.MustCompile(`gossip on (\S+)`).FindStringSubmatch(a.stdout.String())
	if g == nil {
		t.Fatalf("no gossip address:\n%s", a.stdout)
	}
	startAgentCmd(t, "--target", targets[1], "--service", "service://web", "--interval", "50ms", "--gossip-bind", "127.0.0.1:0",
		"--join", g[1], "--zone", "b")
	deadline := time.After(10 * time.Second)
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	for {
		m, _ := a.load(t)
		if s, _ := m["members"].(string); strings.Contains(s, "http://"+targets[0]) && strings.Contains(s, "http://"+targets[1]+"#z=b") {
			break
		}
		select {
		case <-tk.C:
		case <-deadline:
			t.Fatalf("members never listed both agents: %v", m["members"])
		}
	}
}
