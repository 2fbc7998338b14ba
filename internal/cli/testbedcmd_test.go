package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smartclient/smartclient/testbed"
)

// cmdPrefix is this test's own testbed prefix, so that its `down` removes
// nothing another test made.
const cmdPrefix = "sccl"

func runTestbedCmd(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := runTestbed(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatalf("testbed %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestTestbedCommand walks a person's session: up, status, a fault, heal,
// down. It needs root, iproute2 and iptables, and fails saying so.
func TestTestbedCommand(t *testing.T) {
	var name string // the bed's, once up has printed it
	t.Cleanup(func() {
		if name == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := testbed.Down(ctx, name); err != nil {
			t.Errorf("removing the bed: %v", err)
		}
	})
	var out bytes.Buffer
	if err := runTestbed(context.Background(), []string{"up", "--hosts", "2", "--prefix", cmdPrefix}, &out, io.Discard); err != nil {
		t.Fatalf("THIS MACHINE CANNOT RUN THE TESTBED (root, iproute2, iptables): %v", err)
	}
	up := out.String()
	name = regexp.MustCompile(cmdPrefix + `-[0-9a-f]{4}`).FindString(up) // for the cleanup, whatever the format
	m := regexp.MustCompile(`(?m)^bed (` + cmdPrefix + `-[0-9a-f]{4}): subnet \S+, gateway \(this machine\) (\S+)$`).FindStringSubmatch(up)
	hm := regexp.MustCompile(`(?m)^h1\s+(\S+)\s+netns (\S+)$`).FindStringSubmatch(up)
	if m == nil || hm == nil {
		t.Fatalf("up printed:\n%s", up)
	}
	name = m[1]
	h1, ns := hm[1], hm[2]

	// The bed outlives the command, and the printed namespace is usable.
	if out, err := exec.Command("ip", "netns", "exec", ns, "true").CombinedOutput(); err != nil {
		t.Fatalf("ip netns exec %s true: %v: %s", ns, err, out)
	}
	if st := runTestbedCmd(t, "status", "--prefix", cmdPrefix); !strings.Contains(st, name) || !strings.Contains(st, "persistent") || !strings.Contains(st, ns) {
		t.Errorf("status does not list the bed as persistent with its namespace:\n%s", st)
	}

	// Nothing listens on h1: refused, until a black hole makes it silent.
	dial := func() string {
		c, err := net.DialTimeout("tcp", h1+":9", 300*time.Millisecond)
		if err == nil {
			c.Close()
			return "ok"
		}
		var ne net.Error
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return "refused"
		case errors.As(err, &ne) && ne.Timeout():
			return "timeout"
		}
		return err.Error()
	}
	if got := dial(); got != "refused" {
		t.Fatalf("dial h1 before the fault: %s", got)
	}
	if f := runTestbedCmd(t, "fault", "--bed", name, "blackhole", "h1"); !strings.Contains(f, "blackhole h1") {
		t.Errorf("fault printed %q", f)
	}
	if got := dial(); got != "timeout" {
		t.Errorf("dial h1 in a black hole: %s, want timeout", got)
	}
	runTestbedCmd(t, "fault", "--bed", name, "heal")
	if got := dial(); got != "refused" {
		t.Errorf("dial h1 after heal: %s, want refused", got)
	}

	if d := runTestbedCmd(t, "down", "--bed", name); !strings.Contains(d, "removed "+name) {
		t.Errorf("down printed %q", d)
	}
	if st := runTestbedCmd(t, "status", "--prefix", cmdPrefix); strings.Contains(st, name) {
		t.Errorf("status after down still lists %s:\n%s", name, st)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), name) {
		t.Errorf("namespaces left after down:\n%s", out)
	}
}

func TestTestbedCommandBadLines(t *testing.T) {
	for _, c := range []struct {
		args  []string
		usage bool // a usage error (exit 2), not a failure (exit 1)
	}{
		{[]string{}, true},
		{[]string{"sideways"}, true},
		{[]string{"up", "--hosts", "0"}, true},
		{[]string{"up", "--prefix", "Bad-Prefix"}, true},
		{[]string{"up", "extra"}, true},
		{[]string{"down", "--prefix", ""}, false},
		{[]string{"fault", "--bed", "sccl-0000"}, true},
		{[]string{"fault", "--bed", "sccl-0000", "explode", "h1"}, true},
		{[]string{"fault", "--bed", "sccl-0000", "refuse", "h1"}, true},
		{[]string{"fault", "--bed", "Bad", "heal"}, false},
		{[]string{"fault", "--bed", "sccl-0000", "heal"}, false}, // no such bed
	} {
		err := runTestbed(context.Background(), c.args, io.Discard, io.Discard)
		var ue *usageError
		if err == nil || errors.As(err, &ue) != c.usage {
			t.Errorf("testbed %q: %v, want an error (usage: %v)", c.args, err, c.usage)
		}
	}
	for _, args := range [][]string{{"up", "-h"}, {"-h"}, {"fault", "--help"}} {
		var he helpError
		if err := runTestbed(context.Background(), args, io.Discard, io.Discard); !errors.As(err, &he) {
			t.Errorf("testbed %q: %v, want help", args, err)
		}
	}
}
