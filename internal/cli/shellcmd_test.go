package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/testbed"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbed.RemoveBuilds() // the smartclient binary the shell test's agents run
	os.Exit(code)
}

func TestShellBadCommandLines(t *testing.T) {
	const m = "ssh://127.0.0.1:9"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"shell"}, "no members: give at least one --member ssh://HOST[:PORT]"},
		{[]string{"shell", "--member", "http://h"}, `--member "http://h": must be ssh://HOST or ssh://HOST:PORT`},
		{[]string{"shell", "--member", "ssh://root@h"}, "give -l USER"},
		{[]string{"shell", "--member", "ssh://h:99999"}, `port "99999" must be in 1..65535`},
		{[]string{"shell", "--member", "ssh://h", "--member", "SSH://H:22"}, `duplicate member, same as "ssh://h"`},
		{[]string{"shell", "--member", m, "--agent", "ssh://127.0.0.1:9"}, "want ssh://HOST[:PORT]=http://AGENT:PORT"},
		{[]string{"shell", "--member", m, "--agent", "ssh://other=http://a:9100"}, "ssh://other is not one of the --member URLs"},
		{[]string{"shell", "--member", m, "--agent", m + "=ftp://a"}, "agent: must be an absolute http:// or https:// URL"},
		{[]string{"shell", "--member", m, "--agent", m + "=http://a:1", "--agent", m + "=http://b:1"}, "already has an agent"},
		{[]string{"shell", "--member", m, "--policy", "best"}, `unknown policy "best"`},
		{[]string{"shell", "--member", m, "--max-attempts", "-1"}, "--max-attempts -1: must be in 0..100"},
		{[]string{"shell", "--member", m, "--banner-timeout", "0s"}, "--banner-timeout 0s: must be > 0"},
		{[]string{"shell", "--member", m, "--poll-timeout", "-1s"}, "--poll-timeout -1s: must be > 0"},
		{[]string{"shell", "--member", m, "-l", "-oProxyCommand=x"}, "a login name cannot start with '-'"},
		{[]string{"shell", "--member", m, "--ssh", ""}, "--ssh: empty program name"},
		{[]string{"shell", "--member", m, "--bogus"}, "flag provided but not defined: -bogus"},
	} {
		code, _, stderr := run(tc.args...)
		if code != ExitUsage || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if code, stdout, _ := run("help", "shell"); code != ExitOK || !strings.Contains(stdout, "usage: smartclient shell") || !strings.Contains(stdout, "-banner-timeout") {
		t.Errorf("help shell: %d %q", code, stdout)
	}
	// A missing ssh program is not the members' fault: one attempt, exit 1.
	code, _, stderr := run("shell", "--member", "ssh://"+sshBannerServer(t), "--member", "ssh://"+sshBannerServer(t), "--ssh", "/nonexistent/ssh", "--", "true")
	if code != ExitFailure || !strings.Contains(stderr, "failure is not safe to retry") || !strings.Contains(stderr, "/nonexistent/ssh") || strings.Contains(stderr, "#2") {
		t.Errorf("missing ssh: exit %d, stderr %q", code, stderr)
	}
}

// sshBannerServer is a loopback "sshd" that only greets.
func sshBannerServer(t *testing.T) string {
	t.Helper()
	return newTCPGreeter(t, "SSH-2.0-OpenSSH_9.2p1\r\n")
}

// The paper's telnet front-end over real sshd servers: three testbed hosts,
// each with Debian's sshd and a smartclient agent whose load a file sets.
func TestShellOnLeastLoadedSSHD(t *testing.T) {
	for _, p := range []string{"/usr/sbin/sshd"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing: install openssh-server (scripts/install-deps.sh): %v", p, err)
		}
	}
	for _, p := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is missing: install openssh-client (scripts/install-deps.sh): %v", p, err)
		}
	}
	// sshd insists on its privilege-separation directory, which Debian
	// makes at boot; make it if missing and remove it after.
	if _, err := os.Stat("/run/sshd"); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove("/run/sshd") })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bed, err := testbed.New(ctx, testbed.Config{Hosts: 3})
	if err != nil {
		if errors.Is(err, testbed.ErrNoNetns) {
			t.Fatalf("THIS MACHINE CANNOT RUN THE TESTBED (network namespaces; run as root with iproute2 and iptables): %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bed.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	bin := testbed.BuildSmartclient(t)
	dir := t.TempDir()
	keygen := func(path string) {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	userKey := filepath.Join(dir, "user")
	keygen(userKey)
	pub, err := os.ReadFile(userKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, pub, 0o600); err != nil {
		t.Fatal(err)
	}

	const sshPort, agentPort = 2222, 9100
	type node struct {
		h        *testbed.Host
		url      string
		conf     string
		loadFile string
		sshd     *testbed.Proc
		log      *syncBuffer
	}
	var nodes []*node
	startSSHD := func(n *node, extra ...string) {
		t.Helper()
		n.log = &syncBuffer{}
		p, err := n.h.Start(ctx, testbed.Cmd{Path: "/usr/sbin/sshd", Args: append([]string{"-D", "-e", "-f", n.conf}, extra...), Stderr: n.log})
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		defer wcancel()
		if err := p.WaitTCP(wctx, sshPort); err != nil {
			t.Fatalf("sshd on %s: %v; log: %s", n.h, err, n.log)
		}
		n.sshd = p
	}
	var args []string
	for _, h := range bed.Hosts() {
		n := &node{h: h, url: fmt.Sprintf("ssh://%s:%d", h.Addr, sshPort),
			conf: filepath.Join(dir, h.Name+".sshd_config"), loadFile: filepath.Join(dir, h.Name+".load")}
		keygen(filepath.Join(dir, h.Name+".hostkey"))
		conf := strings.Join([]string{
			"ListenAddress " + h.Addr.String(),
			"Port " + strconv.Itoa(sshPort),
			"HostKey " + filepath.Join(dir, h.Name+".hostkey"),
			"PidFile none",
			"AuthorizedKeysFile " + authorized,
			"StrictModes no",
			"UsePAM no",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"PermitRootLogin prohibit-password",
			"SetEnv SC_HOST=" + h.Name, // the marker that says where a session ran
		}, "\n") + "\n"
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(n.loadFile, []byte("0\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		startSSHD(n)
		agentURL := fmt.Sprintf("http://%s:%d", h.Addr, agentPort)
		alog := &syncBuffer{}
		p, err := h.Start(ctx, testbed.Cmd{Path: bin, Args: []string{"agent",
			"--target", fmt.Sprintf("%s:%d", h.Addr, sshPort), "--listen", fmt.Sprintf("%s:%d", h.Addr, agentPort),
			"--util-from", "cmd", "--load-cmd", "cat " + n.loadFile, "--interval", "100ms"}, Stdout: alog, Stderr: alog})
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		if err := p.WaitTCP(wctx, agentPort); err != nil {
			t.Fatalf("agent on %s: %v; log: %s", h, err, alog)
		}
		wcancel()
		nodes = append(nodes, n)
		args = append(args, "--member", n.url, "--agent", n.url+"="+agentURL)
	}
	args = append(args, "-l", "root", "-i", userKey,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile="+filepath.Join(dir, "known_hosts"),
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "--ssh-arg=-F", "--ssh-arg=/dev/null",
		"--banner-timeout", "2s", "--poll-timeout", "500ms", "--", `echo "ran on $SC_HOST"; exit 3`)

	// setLoads writes each host's load and waits until its agent reports it.
	setLoads := func(loads ...float64) {
		t.Helper()
		for i, n := range nodes {
			if err := os.WriteFile(n.loadFile, []byte(strconv.FormatFloat(loads[i], 'f', -1, 64)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(15 * time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i, n := range nodes {
			for {
				u, err := agentUtil(n.h.Addr.String(), agentPort)
				if err == nil && u == loads[i] {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("agent of %s reports util %v (%v), want %v", n.h, u, err, loads[i])
				}
				<-tick.C
			}
		}
	}
	shell := func() (int, string, string) {
		var o, e bytes.Buffer
		code := report("shell", runShellIO(ctx, args, strings.NewReader(""), &o, &e), &o, &e)
		return code, o.String(), e.String()
	}
	expect := func(step string, host int, stderrHas ...string) {
		t.Helper()
		code, stdout, stderr := shell()
		want := "ran on " + nodes[host].h.Name + "\n"
		if code != 3 || stdout != want {
			t.Fatalf("%s: exit %d, stdout %q; want 3 and %q; stderr:\n%s", step, code, stdout, want, stderr)
		}
		stderrHas = append(stderrHas, "chose "+nodes[host].url+" (load ")
		for _, s := range stderrHas {
			if !strings.Contains(stderr, s) {
				t.Errorf("%s: stderr lacks %q:\n%s", step, s, stderr)
			}
		}
		t.Logf("%s: stderr:\n%s", step, stderr)
	}

	setLoads(5, 1, 9)
	expect("least-loaded", 1, "(load 1.00, policy least-loaded; members "+nodes[1].url+"=1.00 "+nodes[0].url+"=5.00 "+nodes[2].url+"=9.00)")

	setLoads(5, 9, 1)
	expect("loads changed", 2)

	// A black-holed host: its agent does not answer either, so it ranks
	// last instead of looking idle, and is not even tried.
	f, err := bed.BlackHole(nodes[2].h)
	if err != nil {
		t.Fatal(err)
	}
	expect("black hole", 0, nodes[2].url+"=?)")
	if err := f.Heal(); err != nil {
		t.Fatal(err)
	}

	// A hung sshd still completes TCP handshakes (its agent's check passes
	// and it reports the least load), but sends no banner: the next one.
	if err := nodes[2].sshd.Stop(); err != nil {
		t.Fatal(err)
	}
	expect("hung sshd", 0, nodes[2].url+": attempt 1 failed (not-reached): ", "no SSH banner within 2s")
	if err := nodes[2].sshd.Cont(); err != nil {
		t.Fatal(err)
	}

	// An sshd that refuses the login: ssh exits 255 before the session
	// started, so the member is left for the next one.
	if err := nodes[0].sshd.Kill(); err != nil {
		t.Fatal(err)
	}
	<-nodes[0].sshd.Exited()
	startSSHD(nodes[0], "-o", "DenyUsers=root")
	setLoads(0.5, 9, 1)
	expect("login refused", 2, nodes[0].url+": attempt 1 failed (not-reached): ssh exited 255 before the session started")

	// Every sshd down: exit 1, and the error names every attempt.
	for _, n := range nodes {
		n.sshd.Kill()
		<-n.sshd.Exited()
	}
	code, stdout, stderr := shell()
	if code != ExitFailure || stdout != "" {
		t.Fatalf("all down: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	t.Logf("all down: stderr:\n%s", stderr)
	if !strings.Contains(stderr, "smartclient shell: no member could open a session: director: all attempts failed: #1 ") {
		t.Errorf("all down: stderr %q", stderr)
	}
	for _, n := range nodes {
		if !strings.Contains(stderr, n.url+": not-reached: dial tcp "+n.h.Addr.String()) && !strings.Contains(stderr, n.url+" (draining)") {
			t.Errorf("all down: stderr does not name %s's attempt:\n%s", n.url, stderr)
		}
	}
}

// agentUtil reads the util an agent reports, and fails while the agent
// reports its sshd unhealthy.
func agentUtil(host string, port int) (float64, error) {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s:%d/load", host, port))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Util    float64 `json:"util"`
		Healthy bool    `json:"healthy"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if !r.Healthy {
		// Still reporting the check of a restarted sshd that failed: the
		// member would be left out as draining, not tried.
		return r.Util, errors.New("agent reports the sshd unhealthy")
	}
	return r.Util, nil
}

// newTCPGreeter is a loopback server that writes greet to each connection
// and closes it; it returns its address.
func newTCPGreeter(t *testing.T, greet string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(greet))
			c.Close()
		}
	}()
	return ln.Addr().String()
}
