package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/smartclient/smartclient/smarthttp"
)

// serviceName is the name the DNS round-robin contender resolves. Rooted,
// so no search domain from /etc/resolv.conf is tried.
const serviceName = "svc.bench.test."

// rrServer is a DNS server on loopback that answers A queries for
// serviceName with every member's address, rotated by one on each query,
// with TTL 0: classic DNS round robin.
type rrServer struct {
	srv   *dns.Server
	addr  string
	ips   []net.IP
	next  atomic.Uint64
	count atomic.Int64 // queries answered
}

func startRRServer(ips []net.IP) (*rrServer, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &rrServer{addr: pc.LocalAddr().String(), ips: ips}
	started := make(chan struct{})
	s.srv = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: func() { close(started) }}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.ActivateAndServe() }()
	select {
	case <-started:
		return s, nil
	case err := <-errc:
		pc.Close()
		return nil, fmt.Errorf("dns server: %w", err)
	case <-time.After(5 * time.Second):
		s.srv.Shutdown()
		return nil, fmt.Errorf("dns server: did not start within 5s")
	}
}

// ServeDNS answers one query.
func (s *rrServer) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) == 1 && strings.EqualFold(q.Question[0].Name, serviceName) {
		if q.Question[0].Qtype == dns.TypeA {
			k := int(s.next.Add(1)-1) % len(s.ips)
			for i := range s.ips {
				ip := s.ips[(k+i)%len(s.ips)]
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: serviceName, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
					A:   ip,
				})
			}
		}
		// Other types: an empty NOERROR answer (the name exists).
	} else {
		m.Rcode = dns.RcodeNameError
	}
	s.count.Add(1)
	w.WriteMsg(m)
}

func (s *rrServer) close() { s.srv.Shutdown() }

// resolverFor is an ordinary Go resolver whose every query goes to addr.
func resolverFor(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

// startDNSRR starts the DNS server and n ordinary clients: each resolves
// the name when it opens a connection (Go does not cache DNS answers) and
// dials the first address, then keeps the connection alive as any client
// would.
func startDNSRR(_ context.Context, e *runEnv, n int) (*target, error) {
	ips := make([]net.IP, len(e.members.urls))
	for i, hp := range e.members.hostPorts() {
		h, _, err := net.SplitHostPort(hp)
		if err != nil {
			return nil, err
		}
		ips[i] = net.ParseIP(h)
	}
	srv, err := startRRServer(ips)
	if err != nil {
		return nil, err
	}
	t := &target{base: fmt.Sprintf("http://%s:%d", serviceName, e.members.port)}
	t.stopFns = append(t.stopFns, srv.close)
	for i := 0; i < n; i++ {
		tr := smarthttp.NewBaseTransport()
		d := &net.Dialer{Resolver: resolverFor(srv.addr), Timeout: 5 * time.Second}
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp4", addr) // A records only
		}
		t.clients = append(t.clients, &http.Client{Transport: tr})
	}
	return t, nil
}
