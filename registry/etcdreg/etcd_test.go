package etcdreg

import (
	"io"
	"net"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartclient/smartclient/internal/etcdtest"
)

// etcdProc is the real single-node etcd on loopback that the tests run
// (internal/etcdtest), under the names they use.
type etcdProc struct {
	*etcdtest.Server
	clientURL string
}

// startEtcd starts etcd on free loopback ports with a data directory under
// t.TempDir, and kills it when the test ends.
func startEtcd(t *testing.T) *etcdProc {
	t.Helper()
	s := etcdtest.Start(t)
	return &etcdProc{Server: s, clientURL: s.ClientURL}
}

// stop kills etcd, as a crash would, and waits for it to exit.
func (e *etcdProc) stop() { e.Stop() }

// start runs etcd again on the same ports and data after stop.
func (e *etcdProc) start() { e.Restart() }

// replace stops etcd and starts an empty cluster with the same cluster ID
// on the same ports; only the revision goes back.
func (e *etcdProc) replace() { e.Replace() }

// client returns a client of e, closed when the test ends.
func (e *etcdProc) client(t *testing.T) *clientv3.Client { return e.Client(t) }

func dialEtcd(t *testing.T, endpoint string) *clientv3.Client { return etcdtest.Dial(t, endpoint) }

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
