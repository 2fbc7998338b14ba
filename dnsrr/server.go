package dnsrr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Viewer supplies the addresses to answer with. View must not block and
// returns an immutable value, or nil for no members. *Monitor is one.
type Viewer interface {
	View() *View
}

// StaticView is a Viewer that always returns the same view.
type StaticView struct{ V *View }

// View implements Viewer.
func (s StaticView) View() *View { return s.V }

// Handler is the dns.Handler that answers for a zone: each query takes the
// next turn of the rotation and is answered by Zone.Answer from the
// current view. It holds no lock and does no I/O but the reply.
type Handler struct {
	Zone   *Zone
	Viewer Viewer

	turn atomic.Uint64
}

// ServeDNS implements dns.Handler.
func (h *Handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	m := h.Zone.Answer(req, h.Viewer.View(), h.turn.Add(1)-1, udp)
	// A client that went away is no concern of ours.
	_ = w.WriteMsg(m)
}

// Server serves one handler over UDP and TCP on the same address.
type Server struct {
	udp, tcp *dns.Server
	addr     string
}

// Listen binds UDP and TCP on addr (host:port; port 0 picks one free for
// both) and serves h on them until Shutdown. It returns once both accept
// queries.
func Listen(addr string, h dns.Handler) (*Server, error) {
	var (
		ln  net.Listener
		pc  net.PacketConn
		err error
	)
	// With port 0 the TCP port the kernel picks may be taken for UDP: try a
	// few times.
	for range 10 {
		ln, err = net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("dnsrr: listen tcp %s: %w", addr, err)
		}
		pc, err = net.ListenPacket("udp", ln.Addr().String())
		if err == nil {
			break
		}
		ln.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" {
			return nil, fmt.Errorf("dnsrr: listen udp %s: %w", addr, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dnsrr: listen udp %s: %w", addr, err)
	}
	s := &Server{addr: ln.Addr().String()}
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: ln, Handler: h, NotifyStartedFunc: notify,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- s.udp.ActivateAndServe() }()
	go func() { errc <- s.tcp.ActivateAndServe() }()
	for range 2 {
		select {
		case <-started:
		case err := <-errc:
			s.Shutdown(context.Background())
			pc.Close()
			ln.Close()
			return nil, fmt.Errorf("dnsrr: serve %s: %w", s.addr, err)
		}
	}
	return s, nil
}

// Addr returns the bound address, the same for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Shutdown stops both servers, waiting for queries in progress until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error {
	return errors.Join(ignoreNotStarted(s.udp.ShutdownContext(ctx)), ignoreNotStarted(s.tcp.ShutdownContext(ctx)))
}

func ignoreNotStarted(err error) error {
	if err != nil && err.Error() == "dns: server not started" {
		return nil
	}
	return err
}
