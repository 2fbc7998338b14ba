package agent

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nginxBinary finds nginx, installing Debian's package if it is missing.
// A machine where that fails fails the test, saying why.
func nginxBinary(t *testing.T) string {
	t.Helper()
	find := func() string {
		if p, err := exec.LookPath("nginx"); err == nil {
			return p
		}
		if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			return "/usr/sbin/nginx"
		}
		return ""
	}
	if p := find(); p != "" {
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
	p := find()
	if p == "" {
		t.Fatalf("apt-get installed nginx but no nginx binary was found:\n%s", out)
	}
	return p
}

// startNginx runs nginx on a free loopback port with a private prefix,
// configuration and logs, and stops it when the test ends. It returns the
// address and a function that stops it early.
func startNginx(t *testing.T) (addr string, stop func()) {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	keepalive_timeout 60s;
	server {
		listen %[2]s;
		location = /health { return 200 "ok\n"; }
		location / { return 200 "hello from nginx\n"; }
	}
}
`, dir, addr)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		syscall.Kill(cmd.Process.Pid, syscall.SIGTERM) // fast shutdown of master and workers
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		// Whatever is left of the group (a worker, if the master died hard).
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	t.Cleanup(stop)
	waitFor(t, "nginx to accept connections on "+addr, func() bool {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %s\n%s", out.String(), log)
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
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
