package agent

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	psnet "github.com/shirou/gopsutil/v4/net"
	"golang.org/x/sys/unix"
)

// countMethod counts established connections by local port one way.
type countMethod struct {
	name  string
	count func(port uint16) (int, error)
}

// countMethods are the ways to count: the two the agent uses and, for
// BenchmarkConnCount, the gopsutil call it used before.
func countMethods(tb testing.TB, withGopsutil bool) []countMethod {
	buf := make([]byte, netlinkBufSize)
	ms := []countMethod{
		{ConnsFromNetlink, func(port uint16) (int, error) { return netlinkCount(context.Background(), port, buf) }},
		{ConnsFromProc, procCount},
	}
	if withGopsutil {
		ms = append(ms, countMethod{"gopsutil", gopsutilCount})
	}
	// Skip netlink only where there is no sock_diag socket to be had (a
	// sandbox); a request the kernel refuses is a failure.
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		tb.Logf("no NETLINK_SOCK_DIAG socket here (%v): netlink not tested", err)
		return ms[1:]
	}
	unix.Close(fd)
	return ms
}

// gopsutilCount is how the agent counted before sock_diag: gopsutil lists
// every TCP socket and maps each to its process by walking every
// process's open files.
func gopsutilCount(port uint16) (int, error) {
	conns, err := psnet.ConnectionsWithoutUidsWithContext(context.Background(), "tcp")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range conns {
		if c.Status == "ESTABLISHED" && c.Laddr.Port == uint32(port) {
			n++
		}
	}
	return n, nil
}

// heldServer accepts connections on a loopback address and holds them.
type heldServer struct {
	ln   net.Listener
	port uint16
	mu   sync.Mutex
	conn []net.Conn
}

func listenHeld(tb testing.TB, network, addr string) (*heldServer, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	s := &heldServer{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conn = append(s.conn, c)
			s.mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conn {
			c.Close()
		}
	})
	return s, nil
}

func (s *heldServer) accepted() []net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Conn(nil), s.conn...)
}

// dialHeld opens n connections to the server, closed at the end of the
// test. Each client binds its port before connecting: a port taken by
// connect alone may be shared with other processes' connections to other
// places, and the test counts by the client's port too.
func dialHeld(tb testing.TB, srv *heldServer, n int) []net.Conn {
	tb.Helper()
	addr := srv.ln.Addr().(*net.TCPAddr)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: addr.IP}}
	cs := make([]net.Conn, n)
	for i := range cs {
		c, err := d.Dial("tcp", addr.String())
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close() })
		cs[i] = c
	}
	return cs
}

// waitCount polls count until it gives want, with a deadline; the kernel
// finishes handshakes and closes on its own time.
func waitCount(tb testing.TB, what string, want int, count func() (int, error)) {
	tb.Helper()
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	deadline := time.After(10 * time.Second)
	for {
		n, err := count()
		if err != nil {
			tb.Fatalf("%s: %v", what, err)
		}
		if n == want {
			return
		}
		select {
		case <-tk.C:
		case <-deadline:
			tb.Fatalf("%s: counted %d, want %d", what, n, want)
		}
	}
}

// Each method counts the server sides of real loopback connections, IPv4
// and IPv6, and not their client sides, whose remote port is the
// server's; the count follows connections as either end closes them.
func TestConnCountLoopback(t *testing.T) {
	const n = 6
	for _, m := range countMethods(t, false) {
		for _, fam := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
			t.Run(m.name+"/"+fam.network, func(t *testing.T) {
				srv, err := listenHeld(t, fam.network, fam.addr)
				if err != nil {
					if fam.network == "tcp6" {
						t.Skipf("no IPv6 loopback here: %v", err)
					}
					t.Fatal(err)
				}
				count := func() (int, error) { return m.count(srv.port) }
				waitCount(t, "no connections", 0, count)
				clients := dialHeld(t, srv, n)
				waitCount(t, "all connections", n, count)
				// A client socket has the server's port as its remote port
				// and its own as its local one: counted under that only.
				cport := uint16(clients[0].LocalAddr().(*net.TCPAddr).Port)
				waitCount(t, "the client's port", 1, func() (int, error) { return m.count(cport) })

				clients[0].Close()
				clients[1].Close()
				waitCount(t, "after two clients closed", n-2, count)

				var held []net.Conn
				waitCount(t, "connections accepted", n, func() (int, error) { held = srv.accepted(); return len(held), nil })
				closed := 0
				for _, c := range held {
					// Close two the server holds whose clients are still open.
					if p := c.RemoteAddr().(*net.TCPAddr).Port; p != int(cport) && p != clients[1].LocalAddr().(*net.TCPAddr).Port && closed < 2 {
						c.Close()
						closed++
					}
				}
				waitCount(t, "after the server closed two", n-4, count)
			})
		}
	}
}

// The port and state filter runs in the kernel: the reply holds the
// server sides and nothing else, although the client sides are
// established too and the machine has other sockets.
func TestNetlinkFilterInKernel(t *testing.T) {
	const n = 3
	if len(countMethods(t, false)) < 2 {
		t.Skip("no netlink")
	}
	srv, err := listenHeld(t, "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dialHeld(t, srv, n)
	waitCount(t, "all connections", n, func() (int, error) { return procCount(srv.port) })
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, inetDiagRequest(unix.AF_INET, srv.port, 1), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, netlinkBufSize)
	records := 0
	for done := false; !done; {
		m, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatal(err)
		}
		for b := buf[:m]; len(b) >= nlmsgHdrLen; {
			l := int(ne.Uint32(b))
			switch ne.Uint16(b[4:]) {
			case sockDiagByFamily:
				records++
			case nlmsgDone:
				done = true
			}
			b = b[min((l+3)&^3, len(b)):]
		}
	}
	if records != n {
		t.Errorf("the kernel sent %d records, want the %d server sides", records, n)
	}
}

// BenchmarkConnCount compares the ways to count 200 established loopback
// connections (400 sockets) among whatever else the machine runs.
func BenchmarkConnCount(b *testing.B) {
	const n = 200
	srv, err := listenHeld(b, "tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	dialHeld(b, srv, n)
	waitCount(b, "all connections", n, func() (int, error) { return procCount(srv.port) })
	for _, m := range countMethods(b, true) {
		b.Run(fmt.Sprintf("%s/conns=%d", m.name, n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got, err := m.count(srv.port); err != nil || got != n {
					b.Fatalf("counted %d, %v; want %d", got, err, n)
				}
			}
		})
	}
}
