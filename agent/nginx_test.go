package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/internal/nginxproc"
)

// nginxBinary finds nginx, installing Debian's package if it is missing.
// A machine where that fails fails the test, saying why.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := nginxproc.LookPath(); err == nil {
		return p
	}
	t.Log("nginx is missing: installing Debian's nginx package")
	apt := func(args ...string) ([]byte, error) {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	out, err := apt("install", "-y", "--no-install-recommends", "nginx")
	if err != nil {
		// The package lists may be missing or stale.
		if out2, err2 := apt("update"); err2 != nil {
			t.Fatalf("nginx is not installed and apt-get update failed: %v\n%s", err2, out2)
		}
		out, err = apt("install", "-y", "--no-install-recommends", "nginx")
	}
	if err != nil {
		t.Fatalf("nginx is not installed and apt-get install -y nginx failed (root and Debian's archive are needed): %v\n%s", err, out)
	}
	p, err := nginxproc.LookPath()
	if err != nil {
		t.Fatalf("apt-get installed nginx but: %v\n%s", err, out)
	}
	return p
}

// startNginx runs nginx on a free loopback port with a private prefix,
// configuration and logs, and stops it when the test ends. It returns the
// address and a function that stops it early.
func startNginx(t *testing.T) (addr string, stop func()) {
	t.Helper()
	bin := nginxBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := nginxproc.Start(ctx, nginxproc.Options{Binary: bin, Dir: t.TempDir(), Addr: addr, Config: nginxproc.Config{
		Connections: 64,
		HTTP: fmt.Sprintf(`	keepalive_timeout 60s;
	server {
		listen %s;
		location = /health { return 200 "ok\n"; }
		location / { return 200 "hello from nginx\n"; }
	}
`, addr),
	}})
	if err != nil {
		t.Fatal(err)
	}
	stop = func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return addr, stop
}

// Debian's nginx as the unmodified target: the agent checks it over HTTP,
// counts its connections, and reports it unhealthy once it stops.
func TestNginxTarget(t *testing.T) {
	addr, stop := startNginx(t)
	_, base := startAgent(t, Config{Target: addr, CheckHTTP: "/health", Capacity: 50, Interval: fast,
		CheckTimeout: 500 * time.Millisecond})
	r, _, l := getLoad(t, base)
	if !r.Healthy || l.LatencyMicros <= 0 || r.Check.Kind != "http GET /health" {
		t.Fatalf("nginx: %+v", r)
	}
	// Four idle keep-alive clients of nginx.
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		buf := make([]byte, 512)
		if n, err := c.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "hello from nginx") {
			t.Fatalf("nginx answered %q, %v", buf[:n], err)
		}
	}
	r = waitReport(t, base, "nginx's 4 connections", func(r Report) bool { return r.Connections >= 4 })
	if r.Util != float64(r.Connections)/50 || l.Capacity != 50 {
		t.Errorf("util %v for %d connections", r.Util, r.Connections)
	}
	stop()
	r = waitReport(t, base, "unhealthy after nginx stopped", func(r Report) bool { return !r.Healthy })
	if r.State != "draining" || r.Check.Error == "" {
		t.Errorf("after stop: %+v", r)
	}
}
