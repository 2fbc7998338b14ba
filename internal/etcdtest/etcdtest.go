// Package etcdtest runs a real one-node etcd (Debian's etcd-server) on
// loopback for tests: free ports, a data directory under the test's temp
// directory, a log that is shown when the test fails, and no process left
// when it ends. It skips nothing: without etcd the test fails, saying how
// to install it.
package etcdtest

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary is Debian's etcd, from the etcd-server package.
const Binary = "/usr/bin/etcd"

// readyTimeout bounds the wait for a started etcd to report a leader.
const readyTimeout = 15 * time.Second

// Server is a running single-node etcd owned by one test. Its methods call
// t.Fatal, so they belong on the test's goroutine.
type Server struct {
	// ClientURL is where clients reach it: "http://127.0.0.1:PORT".
	ClientURL string
	// Endpoint is ClientURL's host:port.
	Endpoint string

	t       testing.TB
	dataDir string
	peerURL string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Start runs etcd on free loopback ports with a fresh data directory, and
// returns once it serves with a leader. The test fails if Binary is
// missing or etcd does not become healthy within 15 s. When the test ends
// etcd is killed, and if the test failed the end of etcd's log is logged.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("%s is missing: these tests run a real etcd; run scripts/install-deps.sh (or apt-get install -y etcd-server): %v", Binary, err)
	}
	endpoint := freeAddr(t)
	s := &Server{
		ClientURL: "http://" + endpoint,
		Endpoint:  endpoint,
		t:         t,
		dataDir:   filepath.Join(t.TempDir(), "data"),
		peerURL:   "http://" + freeAddr(t),
		logPath:   filepath.Join(t.TempDir(), "etcd.log"),
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(s.logPath); err == nil {
				t.Logf("etcd log (last 4 KiB):\n%s", tail(b, 4<<10))
			}
		}
	})
	s.start()
	return s
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// start runs etcd on s's ports and data directory and waits until it
// serves with a leader.
func (s *Server) start() {
	t := s.t
	t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// Short heartbeats make the single node elect itself at once and
	// lower etcd's minimum lease TTL to one second. Name, peer URL and
	// token fix the cluster ID, so Replace keeps it.
	cmd := exec.Command(Binary,
		"--name", "n1",
		"--data-dir", s.dataDir,
		"--listen-client-urls", s.ClientURL,
		"--advertise-client-urls", s.ClientURL,
		"--listen-peer-urls", s.peerURL,
		"--initial-advertise-peer-urls", s.peerURL,
		"--initial-cluster", "n1="+s.peerURL,
		"--initial-cluster-token", "smartclient-test",
		"--heartbeat-interval", "10",
		"--election-timeout", "100",
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies before its Cleanup runs (a -timeout panic),
	// the kernel kills etcd too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", Binary, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	s.waitHealthy()
}

// waitHealthy polls /health until etcd reports a leader, with a deadline.
func (s *Server) waitHealthy() {
	t := s.t
	t.Helper()
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(s.ClientURL + "/health")
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(b), `"true"`) {
				return
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("%s exited during start-up; its log is %s", Binary, s.logPath)
		case <-deadline.C:
			t.Fatalf("%s not healthy after %v: %v", Binary, readyTimeout, err)
		case <-tick.C:
		}
	}
}

// Stop kills etcd, as a crash would, and waits for it to exit. It does
// nothing if etcd is not running.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart stops etcd if it runs and starts it again on the same ports and
// data, as after a crash; it returns once etcd has a leader again.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Replace stops etcd and starts an empty cluster on the same ports, as if
// it had been rebuilt: the cluster ID stays the same (same name, peer URL
// and token), only the revision goes back.
func (s *Server) Replace() {
	s.t.Helper()
	s.Stop()
	s.dataDir = filepath.Join(s.t.TempDir(), "data")
	s.start()
}

// Client returns a client of s, closed when t ends.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return Dial(t, s.ClientURL)
}

// Dial returns a client of the etcd at endpoint (a URL), with its logging
// off, closed when t ends.
func Dial(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
