package etcdreg

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdBin is Debian's etcd-server (apt-get install -y etcd-server).
const etcdBin = "/usr/bin/etcd"

// etcdProc is a real single-node etcd on loopback, run by the test.
type etcdProc struct {
	t         *testing.T
	dir       string // data directory
	token     string // initial cluster token
	clientURL string
	peerURL   string
	logPath   string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// startEtcd starts etcd on free loopback ports with a data directory under
// t.TempDir, and kills it when the test ends.
func startEtcd(t *testing.T) *etcdProc {
	t.Helper()
	if _, err := os.Stat(etcdBin); err != nil {
		t.Fatalf("%s is missing: these tests run a real etcd; install it with `apt-get install -y etcd-server` (%v)", etcdBin, err)
	}
	e := &etcdProc{
		t:         t,
		dir:       filepath.Join(t.TempDir(), "data"),
		token:     "smartclient-test",
		clientURL: "http://" + freeAddr(t),
		peerURL:   "http://" + freeAddr(t),
		logPath:   filepath.Join(t.TempDir(), "etcd.log"),
	}
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			if b, err := os.ReadFile(e.logPath); err == nil {
				t.Logf("etcd log (last 4 KiB):\n%s", tail(b, 4<<10))
			}
		}
	})
	e.start()
	return e
}

func freeAddr(t *testing.T) string {
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

// start runs etcd on e's ports and data directory and waits until it
// serves with a leader.
func (e *etcdProc) start() {
	t := e.t
	t.Helper()
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// Short heartbeats make the single node elect itself at once and
	// lower etcd's minimum lease TTL to one second.
	cmd := exec.Command(etcdBin,
		"--name", "n1",
		"--data-dir", e.dir,
		"--listen-client-urls", e.clientURL,
		"--advertise-client-urls", e.clientURL,
		"--listen-peer-urls", e.peerURL,
		"--initial-advertise-peer-urls", e.peerURL,
		"--initial-cluster", "n1="+e.peerURL,
		"--initial-cluster-token", e.token,
		"--heartbeat-interval", "10",
		"--election-timeout", "100",
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies before its Cleanup runs (a -timeout panic),
	// the kernel kills etcd too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	e.cmd = cmd
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	e.exited = exited
	e.waitHealthy()
}

// waitHealthy polls /health until etcd reports a leader, with a deadline.
func (e *etcdProc) waitHealthy() {
	t := e.t
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(e.clientURL + "/health")
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(b), `"true"`) {
				return
			}
		}
		select {
		case <-e.exited:
			t.Fatalf("etcd exited during start-up; see the log")
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd not healthy after 15s: %v", err)
		}
	}
}

// stop kills etcd, as a crash would, and waits for it to exit.
func (e *etcdProc) stop() {
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Kill()
	<-e.exited
	e.cmd = nil
}

// replace stops etcd and starts an empty cluster on the same ports, as if
// it had been rebuilt; the cluster ID stays the same (same name, peer URL
// and token), only the revision goes back.
func (e *etcdProc) replace() {
	e.stop()
	e.dir = filepath.Join(e.t.TempDir(), "data")
	e.start()
}

// client returns a client of e, closed when the test ends.
func (e *etcdProc) client(t *testing.T) *clientv3.Client {
	return dialEtcd(t, e.clientURL)
}

func dialEtcd(t *testing.T, endpoint string) *clientv3.Client {
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

// cutProxy forwards TCP to a target and can cut every connection, so a
// test can disconnect one client from etcd while others still reach it.
type cutProxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *cutProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{l: l, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		l.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return "http://" + p.l.Addr().String() }

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

// setCut closes every connection and refuses new ones (true), or lets
// connections through again (false).
func (p *cutProxy) setCut(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = on
	if on {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

func TestEtcdHarness(t *testing.T) {
	e := startEtcd(t)
	c := e.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(ctx, "/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get = %v, %v", resp, err)
	}
	st, err := c.Status(ctx, e.clientURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd server %s, client %s", st.Version, version.Version)
}
