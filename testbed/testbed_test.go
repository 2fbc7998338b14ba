package testbed_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/smartclient/smartclient/testbed"
	"github.com/smartclient/smartclient/wire"
)

const (
	port        = 8080
	crashPrefix = "sccr" // the crash test's own prefix, so its sweep touches nothing else
)

// newBed makes a bed that is closed at the end of the test, failing the
// test loudly when the machine cannot make one.
func newBed(t *testing.T, cfg testbed.Config) *testbed.Bed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := testbed.New(ctx, cfg)
	if err != nil {
		if errors.Is(err, testbed.ErrNoNetns) {
			t.Fatalf("THIS MACHINE CANNOT RUN THE TESTBED (network namespaces, veths, a bridge; run as root with iproute2 and iptables installed): %v", err)
		}
		t.Fatalf("testbed.New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// startServer runs the helper HTTP server on h:port and waits until it
// accepts connections.
func startServer(t *testing.T, h *testbed.Host) *testbed.Proc {
	t.Helper()
	out := &lockedBuffer{}
	addr := netip.AddrPortFrom(h.Addr, port).String()
	p, err := h.Start(context.Background(), helperCmd(t, "serve", addr, 0, out, "TESTBED_NAME="+h.Name))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitTCP(ctx, port); err != nil {
		t.Fatalf("server on %s: %v; output: %s", h.Name, err, out)
	}
	return p
}

// probe runs a helper (dial or get) on h against target and returns its
// one-word verdict.
func probe(t *testing.T, h *testbed.Host, mode, target string, timeout time.Duration) string {
	t.Helper()
	var out lockedBuffer
	p, err := h.Start(context.Background(), helperCmd(t, mode, target, timeout, &out))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	case <-time.After(timeout + 20*time.Second):
		t.Fatalf("%s probe on %s did not finish", mode, h.Name)
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("%s probe on %s: %v: %s", mode, h.Name, err, out.String())
	}
	return strings.TrimSpace(out.String())
}

func hostPort(h *testbed.Host) string { return netip.AddrPortFrom(h.Addr, port).String() }

func dialVerdict(addr string, timeout time.Duration) string {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err == nil {
		c.Close()
	}
	return classify(err)
}

var shortClient = &http.Client{Timeout: 2 * time.Second}

// eventually polls check until it returns "" or the deadline passes, for
// state that settles without an event to wait on.
func eventually(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		msg := check()
		if msg == "" {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s: %s", what, msg)
		}
	}
}

func TestHostsReachEachOther(t *testing.T) {
	b := newBed(t, testbed.Config{Hosts: 4})
	hs := b.Hosts()
	if len(hs) != 4 {
		t.Fatalf("%d hosts, want 4", len(hs))
	}
	seen := map[netip.Addr]bool{b.Gateway(): true}
	for _, h := range hs {
		if !b.Subnet().Contains(h.Addr) || seen[h.Addr] {
			t.Fatalf("host %s: address outside %s or duplicated", h, b.Subnet())
		}
		seen[h.Addr] = true
		if !strings.HasPrefix(h.Namespace(), b.Name()+"-") {
			t.Errorf("host %s: namespace %q does not start with the bed's name %q", h.Name, h.Namespace(), b.Name())
		}
		startServer(t, h)
	}
	// Gateway (the client, this process) to every host.
	for _, h := range hs {
		if got := get(shortClient, "http://"+hostPort(h)+"/"); got != "ok "+h.Name {
			t.Errorf("gateway → %s: %q, want %q", h.Name, got, "ok "+h.Name)
		}
	}
	// Host to host, from inside h1's namespace; and h1 to the gateway.
	for _, h := range hs[1:] {
		if got := probe(t, hs[0], "get", hostPort(h), 2*time.Second); got != "ok "+h.Name {
			t.Errorf("h1 → %s: %q", h.Name, got)
		}
	}
	gw, err := net.Listen("tcp", netip.AddrPortFrom(b.Gateway(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if got := probe(t, hs[3], "dial", gw.Addr().String(), 2*time.Second); got != "ok" {
		t.Errorf("h4 → gateway: %q", got)
	}

	// A second bed at the same time gets its own subnet and names.
	b2 := newBed(t, testbed.Config{Hosts: 1})
	if b2.Subnet().Overlaps(b.Subnet()) || b2.Name() == b.Name() {
		t.Errorf("two live beds share a subnet or name: %s %s, %s %s", b.Name(), b.Subnet(), b2.Name(), b2.Subnet())
	}
	startServer(t, b2.Hosts()[0])
	if got := get(shortClient, "http://"+hostPort(b2.Hosts()[0])+"/"); got != "ok h1" {
		t.Errorf("gateway → second bed's h1: %q", got)
	}
}

func TestFaults(t *testing.T) {
	b := newBed(t, testbed.Config{Hosts: 4})
	hs := b.Hosts()
	procs := make([]*testbed.Proc, len(hs))
	// A failed reachability check logs what the machine looked like at
	// that moment (the subtests after it change it); any other failure
	// logs it at the end.
	var logged atomic.Bool
	logState := func(t *testing.T) {
		if logged.CompareAndSwap(false, true) {
			logMachineState(t, b, procs)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			logState(t)
		}
	})
	for i, h := range hs {
		procs[i] = startServer(t, h)
	}
	healthy := func(t *testing.T, hosts ...*testbed.Host) {
		t.Helper()
		for _, h := range hosts {
			if got := get(shortClient, "http://"+hostPort(h)+"/"); got != "ok "+h.Name {
				logState(t)
				t.Fatalf("after heal, gateway → %s: %q", h.Name, got)
			}
		}
	}

	t.Run("kill", func(t *testing.T) {
		if err := procs[0].Kill(); err != nil {
			t.Fatal(err)
		}
		<-procs[0].Exited()
		if got := dialVerdict(hostPort(hs[0]), 5*time.Second); got != "refused" {
			t.Errorf("dial a killed server: %q, want refused", got)
		}
		if err := procs[0].Kill(); !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("Kill of an exited process: %v, want os.ErrProcessDone", err)
		}
		procs[0] = startServer(t, hs[0]) // heal: restart
		healthy(t, hs[0])
	})

	t.Run("hang", func(t *testing.T) {
		// Stop returns once the server has stopped, not once the signal is
		// sent: on a busy machine a server answers for a while after that.
		// The signal races the server's threads, so check a few times.
		for range 20 {
			if err := procs[1].Stop(); err != nil {
				t.Fatal(err)
			}
			running := notStopped(t, procs[1].Pid())
			if err := procs[1].Cont(); err != nil {
				t.Fatal(err)
			}
			if len(running) > 0 {
				t.Fatalf("Stop returned while threads of the server's group still ran (pid/tid state): %v", running)
			}
		}
		if err := procs[1].Stop(); err != nil {
			t.Fatal(err)
		}
		defer procs[1].Cont() // a failure here must not leave h2 stopped for the subtests after
		// The kernel still completes the handshake...
		if got := dialVerdict(hostPort(hs[1]), 5*time.Second); got != "ok" {
			t.Errorf("dial a stopped server: %q, want ok (the kernel accepts)", got)
		}
		// ...but no reply comes until SIGCONT.
		done := make(chan string, 1)
		go func() { done <- get(&http.Client{Timeout: 20 * time.Second}, "http://"+hostPort(hs[1])+"/") }()
		select {
		case got := <-done:
			logState(t)
			t.Fatalf("a stopped server answered: %q", got)
		case <-time.After(300 * time.Millisecond):
		}
		if err := procs[1].Cont(); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-done:
			if got != "ok h2" {
				t.Errorf("after SIGCONT: %q", got)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("no reply 15s after SIGCONT")
		}
	})

	t.Run("blackhole", func(t *testing.T) {
		f, err := b.BlackHole(hs[2])
		if err != nil {
			t.Fatal(err)
		}
		if got := dialVerdict(hostPort(hs[2]), 300*time.Millisecond); got != "timeout" {
			t.Errorf("dial a black-holed host: %q, want timeout (no reset)", got)
		}
		if got := probe(t, hs[0], "dial", hostPort(hs[2]), 300*time.Millisecond); got != "timeout" {
			t.Errorf("h1 → black-holed h3: %q, want timeout", got)
		}
		if err := f.Heal(); err != nil {
			t.Fatal(err)
		}
		if err := f.Heal(); err != nil {
			t.Errorf("second Heal: %v", err)
		}
		healthy(t, hs[2])
	})

	t.Run("refuse", func(t *testing.T) {
		// A connection opened before the fault is reset on its next segment.
		old, err := net.Dial("tcp", hostPort(hs[2]))
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		f, err := b.Refuse(hs[2], port)
		if err != nil {
			t.Fatal(err)
		}
		if got := dialVerdict(hostPort(hs[2]), 5*time.Second); got != "refused" {
			t.Errorf("dial a refusing host: %q, want refused (ECONNREFUSED, well before the 5s timeout)", got)
		}
		old.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.WriteString(old, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if err == nil {
			_, err = old.Read(make([]byte, 1))
		}
		if got := classify(err); got != "reset" {
			t.Errorf("established connection after Refuse: %q, want reset", got)
		}
		if err := f.Heal(); err != nil {
			t.Fatal(err)
		}
		healthy(t, hs[2])
	})

	t.Run("loss", func(t *testing.T) {
		f, err := b.Loss(hs[3], 50)
		if err != nil {
			t.Fatal(err)
		}
		// A connect within 1s needs the SYN in and the SYN-ACK out, each
		// passing with p=0.5: about a quarter succeed. Out of 100, none or
		// all succeeding has probability below 1e-12.
		ok := parallelDials(hostPort(hs[3]), 100, time.Second)
		t.Logf("50%% loss: %d of 100 connects within 1s", ok)
		if ok == 0 || ok == 100 {
			t.Errorf("%d of 100 connects succeeded under 50%% loss; want some but not all", ok)
		}
		if err := f.Heal(); err != nil {
			t.Fatal(err)
		}
		if ok := parallelDials(hostPort(hs[3]), 100, 5*time.Second); ok != 100 {
			t.Errorf("after heal %d of 100 connects succeeded", ok)
		}
	})

	t.Run("partition", func(t *testing.T) {
		f, err := b.Partition(hs[0], hs[2])
		if err != nil {
			t.Fatal(err)
		}
		if got := probe(t, hs[0], "dial", hostPort(hs[2]), 300*time.Millisecond); got != "timeout" {
			t.Errorf("h1 → h3 across the partition: %q, want timeout", got)
		}
		if got := probe(t, hs[2], "dial", hostPort(hs[0]), 300*time.Millisecond); got != "timeout" {
			t.Errorf("h3 → h1 across the partition: %q, want timeout", got)
		}
		if got := probe(t, hs[0], "dial", hostPort(hs[1]), 2*time.Second); got != "ok" {
			t.Errorf("h1 → h2 beside the partition: %q, want ok", got)
		}
		healthy(t, hs[0], hs[2]) // the client still reaches both
		if err := f.Heal(); err != nil {
			t.Fatal(err)
		}
		if got := probe(t, hs[0], "dial", hostPort(hs[2]), 2*time.Second); got != "ok" {
			t.Errorf("h1 → h3 after heal: %q", got)
		}
	})

	t.Run("partition-client", func(t *testing.T) {
		f, err := b.PartitionClient(hs[1])
		if err != nil {
			t.Fatal(err)
		}
		if got := dialVerdict(hostPort(hs[1]), 300*time.Millisecond); got != "timeout" {
			t.Errorf("client → h2: %q, want timeout", got)
		}
		if got := probe(t, hs[0], "get", hostPort(hs[1]), 2*time.Second); got != "ok h2" {
			t.Errorf("h1 → h2 while the client is cut off: %q, want ok h2", got)
		}
		if err := f.Heal(); err != nil {
			t.Fatal(err)
		}
		healthy(t, hs[1])
	})

	t.Run("slow", func(t *testing.T) {
		const lat = 150 * time.Millisecond
		addr, f, err := b.Slow(hs[3], port, lat, 0)
		if err != nil {
			t.Fatal(err)
		}
		if a, _ := netip.ParseAddrPort(addr); a.Addr() != b.Gateway() {
			t.Errorf("slow link listens on %s, want the gateway %s", addr, b.Gateway())
		}
		c := &http.Client{Timeout: 10 * time.Second}
		defer c.CloseIdleConnections()
		for range 3 {
			start := time.Now()
			if got := get(c, "http://"+addr+"/"); got != "ok h4" {
				t.Fatalf("through the slow link: %q", got)
			}
			d := time.Since(start)
			t.Logf("request through a %v link: %v", lat, d)
			if d < lat {
				t.Errorf("request through a %v link took %v", lat, d)
			}
		}
		l, ok := f.(*testbed.Link)
		if !ok {
			t.Fatalf("Slow's fault is %T, want *testbed.Link", f)
		}
		// Faster, same address, same connection: the best of a few
		// requests is under the old latency.
		if err := l.Set(0, 0); err != nil {
			t.Fatal(err)
		}
		best := time.Hour
		for range 5 {
			start := time.Now()
			if got := get(c, "http://"+addr+"/"); got != "ok h4" {
				t.Fatalf("through the healed link: %q", got)
			}
			best = min(best, time.Since(start))
		}
		t.Logf("after Set(0, 0): fastest of 5 requests %v", best)
		if best >= lat {
			t.Errorf("after Set(0, 0) the fastest of 5 requests took %v, not under %v", best, lat)
		}
		if err := l.Set(2*lat, lat/2); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		get(c, "http://"+addr+"/")
		if d := time.Since(start); d < 2*lat-lat/2 {
			t.Errorf("after Set(%v ± %v) a request took %v", 2*lat, lat/2, d)
		}
		if err := f.Heal(); err != nil {
			t.Fatal(err)
		}
		if got := get(c, "http://"+addr+"/"); got != "ok h4" {
			t.Errorf("a healed link must keep its address: %q", got)
		}
	})

	t.Run("bandwidth", func(t *testing.T) {
		const capBits = 16_000_000 // 2 MB/s
		const size = 1 << 20
		f, err := b.Bandwidth(hs[3], capBits)
		if err != nil {
			t.Fatalf("Bandwidth (tc tbf): %v", err)
		}
		rate := download(t, hostPort(hs[3]), size)
		t.Logf("capped at %d bit/s: %.0f bit/s", capBits, rate)
		if rate > 1.25*capBits {
			t.Errorf("download at %.0f bit/s under a %d bit/s cap", rate, capBits)
		}
		if err := f.Heal(); err != nil {
			t.Fatal(err)
		}
		best := 0.0
		for range 3 {
			best = max(best, download(t, hostPort(hs[3]), size))
		}
		t.Logf("healed: %.0f bit/s", best)
		if best < 2*capBits {
			t.Errorf("after heal the best of 3 downloads ran at %.0f bit/s, under twice the old cap", best)
		}
	})

	t.Run("heal-all", func(t *testing.T) {
		// Faults injected by another process (the CLI attaches to the bed)
		// are found by their tag and removed.
		other, err := testbed.Attach(context.Background(), b.Name())
		if err != nil {
			t.Fatal(err)
		}
		oh := other.Hosts()
		if _, err := other.BlackHole(oh[0]); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Bandwidth(oh[1], 1_000_000); err != nil {
			t.Fatal(err)
		}
		if got := dialVerdict(hostPort(hs[0]), 300*time.Millisecond); got != "timeout" {
			t.Fatalf("black hole from an attached bed: %q", got)
		}
		if err := b.HealAll(); err != nil {
			t.Fatal(err)
		}
		healthy(t, hs...)
		for _, h := range hs {
			if rules := taggedRules(t, h.Namespace(), b.Name()); rules != "" {
				t.Errorf("%s still has fault rules after HealAll:\n%s", h.Name, rules)
			}
			out, _ := exec.Command("tc", "-n", h.Namespace(), "qdisc", "show", "dev", "eth0").Output()
			if strings.Contains(string(out), "tbf") {
				t.Errorf("%s still has a tbf qdisc after HealAll: %s", h.Name, out)
			}
		}
		if err := other.Close(); err != nil {
			t.Errorf("closing the attached bed: %v", err)
		}
		healthy(t, hs...) // closing an attached bed leaves the bed alone
	})
}

func taggedRules(t *testing.T, ns, name string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "iptables", "-w", "5", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -S in %s: %v: %s", ns, err, out)
	}
	var tagged []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, name) {
			tagged = append(tagged, l)
		}
	}
	return strings.Join(tagged, "\n")
}

// parallelDials makes n connection attempts at once and counts those that
// connect within timeout.
func parallelDials(addr string, n int, timeout time.Duration) int {
	res := make(chan bool, n)
	for range n {
		go func() {
			c, err := net.DialTimeout("tcp", addr, timeout)
			if err == nil {
				c.Close()
			}
			res <- err == nil
		}()
	}
	ok := 0
	for range n {
		if <-res {
			ok++
		}
	}
	return ok
}

// download fetches size bytes from the helper server and returns the rate
// in bit/s.
func download(t *testing.T, addr string, size int) float64 {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	start := time.Now()
	resp, err := c.Get("http://" + addr + "/big?n=" + strconv.Itoa(size))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != int64(size) {
		t.Fatalf("download: %d of %d bytes: %v", n, size, err)
	}
	return float64(size*8) / time.Since(start).Seconds()
}

func TestNginx(t *testing.T) {
	b := newBed(t, testbed.Config{Hosts: 1})
	h := b.Hosts()[0]
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("legacy server\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := h.StartNginx(ctx, port, root)
	if err != nil {
		t.Fatalf("StartNginx (Debian's nginx: apt-get install -y nginx): %v", err)
	}
	resp, err := shortClient.Get("http://" + hostPort(h) + "/index.html")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "legacy server\n" || !strings.HasPrefix(resp.Header.Get("Server"), "nginx") {
		t.Fatalf("nginx answered %d %q, Server %q", resp.StatusCode, body, resp.Header.Get("Server"))
	}
	// Stop stops the worker with the master: once it returns nothing in
	// the group runs, and a request waits for Cont.
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	running := notStopped(t, p.Pid())
	got := get(&http.Client{Timeout: 300 * time.Millisecond}, "http://"+hostPort(h)+"/index.html")
	if err := p.Cont(); err != nil {
		t.Fatal(err)
	}
	if len(running) > 0 {
		t.Errorf("Stop returned while threads of nginx's group still ran (pid/tid state): %v", running)
	}
	if got != "timeout" {
		t.Errorf("a stopped nginx: %q, want timeout", got)
	}
	if got := get(shortClient, "http://"+hostPort(h)+"/index.html"); got != "ok " {
		t.Errorf("nginx after Cont: %q, want an answer", got)
	}
	// Kill takes the workers with the master: nothing listens any more.
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
	eventually(t, "nginx's port after Kill", func() string {
		if got := dialVerdict(hostPort(h), 2*time.Second); got != "refused" {
			return "dial: " + got + ", want refused (a worker survived?)"
		}
		return ""
	})
}

// TestSmartclientMember runs the real command on a host: the binary the
// failure suite uses.
func TestSmartclientMember(t *testing.T) {
	bin := testbed.BuildSmartclient(t)
	b := newBed(t, testbed.Config{Hosts: 1})
	h := b.Hosts()[0]
	out := &lockedBuffer{}
	p, err := h.Start(context.Background(), testbed.Cmd{
		Path:   bin,
		Args:   []string{"member", "--listen", hostPort(h), "--name", "m1", "--capacity", "4", "--drain-announce", "100ms", "--drain-refuse", "50ms"},
		Stdout: out, Stderr: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitTCP(ctx, port); err != nil {
		t.Fatalf("member: %v; output: %s", err, out)
	}
	resp, err := shortClient.Get("http://" + hostPort(h) + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Member") != "m1" {
		t.Errorf("Member header %q, want m1", resp.Header.Get("Member"))
	}
	if l, err := wire.ParseLoad(resp.Header.Get(wire.LoadHeader)); err != nil || l.Capacity != 4 {
		t.Errorf("load record %q: %+v, %v", resp.Header.Get(wire.LoadHeader), l, err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	case <-time.After(15 * time.Second):
		t.Fatal("member did not exit 15s after SIGTERM")
	}
	if err := p.Wait(); err != nil || !strings.Contains(out.String(), "drained") {
		t.Errorf("member after SIGTERM: %v; output: %s", err, out)
	}
}

// leftovers lists the namespaces, links and root FORWARD rules whose names
// contain s.
func leftovers(t *testing.T, s string) []string {
	t.Helper()
	var found []string
	for _, c := range [][]string{{"ip", "netns", "list"}, {"ip", "-o", "link", "show"}, {"iptables", "-w", "5", "-S"}} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, s) {
				found = append(found, strings.Join(c[:len(c)-1], " ")+": "+l)
			}
		}
	}
	for _, p := range []string{filepath.Join(testbed.RunDir, s), filepath.Join(testbed.RunDir, s+".json")} {
		if _, err := os.Stat(p); err == nil {
			found = append(found, p)
		}
	}
	return found
}

func TestCloseLeavesNothing(t *testing.T) {
	ctx := context.Background()
	b, err := testbed.New(ctx, testbed.Config{Hosts: 2})
	if err != nil {
		t.Fatalf("THIS MACHINE CANNOT RUN THE TESTBED: %v", err)
	}
	defer b.Close() // in case an assertion below stops the test early
	name := b.Name()
	if len(leftovers(t, name)) == 0 {
		t.Fatal("a live bed shows no namespaces, links or record: the leftover check cannot see anything")
	}
	hs := b.Hosts()
	sleep, err := hs[0].Start(ctx, testbed.Cmd{Path: "sleep", Args: []string{"1000"}})
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, hs[1])
	if err := sleep.Stop(); err != nil { // a stopped process must die too
		t.Fatal(err)
	}
	for _, inject := range []func() (testbed.Fault, error){
		func() (testbed.Fault, error) { return b.Loss(hs[1], 10) },
		func() (testbed.Fault, error) { return b.Bandwidth(hs[0], 1_000_000) },
		func() (testbed.Fault, error) { return b.PartitionClient(hs[0]) },
		func() (testbed.Fault, error) { _, f, err := b.Slow(hs[1], port, 10*time.Millisecond, 0); return f, err },
	} {
		if _, err := inject(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-sleep.Exited():
	default:
		t.Error("Close returned before its processes were reaped")
	}
	if got := leftovers(t, name); len(got) > 0 {
		t.Errorf("after Close:\n%s", strings.Join(got, "\n"))
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := hs[0].Start(ctx, testbed.Cmd{Path: "true"}); !errors.Is(err, testbed.ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
	if _, err := b.BlackHole(hs[0]); !errors.Is(err, testbed.ErrClosed) {
		t.Errorf("BlackHole after Close: %v, want ErrClosed", err)
	}
}

// TestCrashedRunIsSwept kills a process that owns a bed (with a process
// and nginx running on it) and checks that its processes died with it and
// that the next New removes what it left.
func TestCrashedRunIsSwept(t *testing.T) {
	var out, errOut lockedBuffer
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(exe)
	child.Env = append(os.Environ(), helperEnv+"=crashchild", noExitSleep, "TESTBED_TARGET="+t.TempDir())
	child.Stderr = &errOut
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var info crashInfo
	line, rerr := bufio.NewReader(io.TeeReader(stdout, &out)).ReadString('\n')
	if rerr != nil || json.Unmarshal([]byte(line), &info) != nil || info.Name == "" {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("crash child: %q %v; stderr: %s", line, rerr, errOut.String())
	}
	// Whatever happens below, remove the child's bed (only it: a
	// concurrent run of this test has its own).
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := testbed.Down(ctx, info.Name); err != nil {
			t.Errorf("removing the crashed bed: %v", err)
		}
	})
	// The bed is there while its owner lives (no other process may sweep
	// it: its owner is alive)...
	for _, ns := range info.Netns {
		if len(leftovers(t, ns)) == 0 {
			t.Fatalf("namespace %s of the live child's bed is missing", ns)
		}
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()

	// ...its processes die with their owner (parent-death signal), its
	// namespaces stay until a New sweeps them (this test's, or a
	// concurrent test binary's: New sweeps every dead owner's bed).
	for _, pid := range []int{info.SleepPid, info.NginxPid} {
		eventually(t, "process "+strconv.Itoa(pid)+" after its owner was killed", func() string {
			if processAlive(pid) {
				return "still running"
			}
			return ""
		})
	}

	b := newBed(t, testbed.Config{Hosts: 1, Prefix: crashPrefix})
	if got := leftovers(t, info.Name); len(got) > 0 {
		t.Errorf("New did not sweep the crashed bed %s:\n%s", info.Name, strings.Join(got, "\n"))
	}
	// The new bed works.
	startServer(t, b.Hosts()[0])
	if got := get(shortClient, "http://"+hostPort(b.Hosts()[0])+"/"); got != "ok h1" {
		t.Errorf("the bed made after the sweep: %q", got)
	}
}

// processAlive reports whether pid runs (a zombie does not count).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// TestDownSparesLiveBeds: `testbed down --prefix P` must not pull a bed out
// from under a test that is still running; naming the bed still removes it.
func TestDownSparesLiveBeds(t *testing.T) {
	ctx := context.Background()
	b := newBed(t, testbed.Config{Hosts: 1, Prefix: "scdn"})
	removed, err := testbed.Down(ctx, "scdn")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(removed, b.Name()) {
		t.Fatalf("Down by prefix removed %s, whose owner (this test) still runs", b.Name())
	}
	if len(leftovers(t, b.Name())) == 0 {
		t.Fatalf("%s's namespaces and record are gone after Down by prefix", b.Name())
	}
	removed, err = testbed.Down(ctx, b.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, b.Name()) {
		t.Fatalf("Down(%s) removed %v, want the bed", b.Name(), removed)
	}
	if left := leftovers(t, b.Name()); len(left) != 0 {
		t.Fatalf("left after Down by name: %v", left)
	}
}

// logMachineState logs what a failed reachability check needs to be
// understood: every bed on the machine (owner alive or not) and the
// records, the root namespace's addresses, routes, neighbours, bridge
// ports, FORWARD rules and the sysctls that route bridged frames through
// them, each host's addresses, routes, neighbours, rules and qdiscs, and
// every process in the bed's namespaces, thread by thread, with its
// process group and state (T: stopped).
func logMachineState(t *testing.T, b *testbed.Bed, procs []*testbed.Proc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := func(args ...string) string {
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Sprintf("%s(%v)\n", out, err)
		}
		return string(out)
	}
	var log strings.Builder
	show := func(args ...string) { fmt.Fprintf(&log, "$ %s\n%s", strings.Join(args, " "), cmd(args...)) }

	fmt.Fprintf(&log, "bed %s: subnet %s, gateway %s\n", b.Name(), b.Subnet(), b.Gateway())
	for i, p := range procs {
		if p != nil {
			fmt.Fprintf(&log, "procs[%d]: pid %d on %s\n", i, p.Pid(), p.Host())
		}
	}
	beds, err := testbed.List(ctx, "")
	fmt.Fprintf(&log, "testbed.List: %v\n", err)
	for _, bi := range beds {
		fmt.Fprintf(&log, "  %+v\n", bi)
	}
	recs, _ := filepath.Glob(filepath.Join(testbed.RunDir, "*.json"))
	for _, r := range recs {
		body, err := os.ReadFile(r)
		fmt.Fprintf(&log, "%s (%v): %s\n", r, err, strings.Join(strings.Fields(string(body)), " "))
	}
	for _, f := range []string{"/proc/sys/net/bridge/bridge-nf-call-iptables", "/proc/sys/net/ipv4/ip_forward"} {
		v, err := os.ReadFile(f)
		fmt.Fprintf(&log, "%s: %s (%v)\n", f, strings.TrimSpace(string(v)), err)
	}
	show("ip", "netns", "list")
	show("ip", "-br", "addr")
	show("ip", "route", "show", "table", "all")
	show("ip", "neigh", "show")
	show("bridge", "link", "show")
	show("iptables", "-w", "5", "-S")
	var pids []string
	for _, h := range b.Hosts() {
		ns := h.Namespace()
		fmt.Fprintf(&log, "--- %s, netns %s\n", h, ns)
		out := cmd("ip", "netns", "pids", ns)
		fmt.Fprintf(&log, "$ ip netns pids %s\n%s", ns, out)
		pids = append(pids, strings.Fields(out)...)
		show("ip", "-n", ns, "-br", "addr")
		show("ip", "-n", ns, "route")
		show("ip", "-n", ns, "neigh")
		show("ip", "netns", "exec", ns, "iptables", "-w", "5", "-S")
		show("tc", "-n", ns, "qdisc", "show")
	}
	for _, p := range procs {
		if p != nil && !slices.Contains(pids, strconv.Itoa(p.Pid())) {
			pids = append(pids, strconv.Itoa(p.Pid()))
		}
	}
	if len(pids) > 0 {
		show("ps", "-L", "-o", "pid,lwp,ppid,pgid,stat,wchan:24,args", "-p", strings.Join(pids, ","))
	}
	t.Log(log.String())
}

// notStopped lists the threads of process group pgid that can still run,
// as "pid/tid state"; it is empty once the whole group is stopped (T).
func notStopped(t *testing.T, pgid int) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var running []string
	members := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		// Fields from 3 on: state, ppid, pgrp.
		if f := statFields("/proc/" + e.Name() + "/stat"); len(f) < 3 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		members++
		tasks, _ := os.ReadDir("/proc/" + e.Name() + "/task")
		for _, task := range tasks {
			if f := statFields("/proc/" + e.Name() + "/task/" + task.Name() + "/stat"); len(f) > 0 && !strings.ContainsAny(f[0], "TtZX") {
				running = append(running, e.Name()+"/"+task.Name()+" "+f[0])
			}
		}
	}
	if members == 0 {
		t.Fatalf("no process in group %d", pgid)
	}
	return running
}

// statFields returns the fields of a /proc stat file from field 3 (the
// state) on, after the command name, which may hold spaces; nil if the
// process is gone.
func statFields(path string) []string {
	b, err := os.ReadFile(path)
	i := strings.LastIndexByte(string(b), ')')
	if err != nil || i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}
