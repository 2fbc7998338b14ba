package demo

import (
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/smarthttp"
	"github.com/smartclient/smartclient/wire"
)

// ServedByHeader names the member that produced a reply. The demo counts
// per-member results from it, so the table shows what really came back,
// not what the director believes it sent.
const ServedByHeader = "Demo-Served-By"

// member is one real HTTP server of the demo cluster, listening on its own
// loopback port.
type member struct {
	url      string
	mean     time.Duration // mean of the exponential service time
	capacity int
	srv      *http.Server
	mw       *smarthttp.Middleware
	sem      chan struct{}
	served   chan error  // Serve's result
	killed   atomic.Bool // crashed on purpose by the demo
	down     atomic.Bool // server closed
	added    bool        // joined after the start; set by the demo's loop
}

// cluster is the demo's service: its members and the membership record
// they piggy-back on replies.
type cluster struct {
	mu      sync.Mutex
	members []*member
	record  atomic.Pointer[wire.Members]
}

// start launches a member on a fresh loopback port. avoid lists ports that
// must not be reused: a new member must never answer on a killed member's
// address, or the demo would credit the dead member with its work.
func (c *cluster) start(mean time.Duration, capacity int, avoid map[string]bool) (*member, error) {
	var ln net.Listener
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		if !avoid[l.Addr().String()] {
			ln = l
			break
		}
		// Hold the unwanted port until we have another, so the kernel
		// cannot hand it straight back.
		held = append(held, l)
		if len(held) > 16 {
			return nil, fmt.Errorf("demo: no fresh loopback port after %d tries", len(held))
		}
	}
	m := &member{
		url:      "http://" + ln.Addr().String(),
		mean:     mean,
		capacity: capacity,
		sem:      make(chan struct{}, capacity),
		served:   make(chan error, 1),
	}
	m.mw = &smarthttp.Middleware{
		Capacity: capacity,
		Members: func() (wire.Members, bool) {
			r := c.record.Load()
			if r == nil {
				return wire.Members{}, false
			}
			return *r, true
		},
		Clock: time.Now,
	}
	m.srv = &http.Server{
		Handler:           m.mw.Wrap(http.HandlerFunc(m.serve)),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { m.served <- m.srv.Serve(ln) }()
	c.mu.Lock()
	c.members = append(c.members, m)
	c.mu.Unlock()
	return m, nil
}

// serve does the member's work: wait for one of its capacity slots, then
// take an exponentially distributed service time, as a CPU-bound server
// with a fixed worker pool would.
func (m *member) serve(w http.ResponseWriter, r *http.Request) {
	select {
	case m.sem <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	defer func() { <-m.sem }()
	d := time.Duration(rand.ExpFloat64() * float64(m.mean))
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-r.Context().Done():
		t.Stop()
		return
	}
	w.Header().Set(ServedByHeader, m.url)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "served by %s in %v\n", m.url, d.Round(time.Microsecond))
}

// kill crashes the member as the network sees it: the listener and every
// open connection, idle or mid-request, are closed at once.
func (m *member) kill() {
	m.killed.Store(true)
	m.stop()
}

// stop closes the server once.
func (m *member) stop() {
	if m.down.CompareAndSwap(false, true) {
		m.srv.Close()
		<-m.served
	}
}

// advertise makes every member piggy-back ms at epoch from now on.
func (c *cluster) advertise(epoch uint64, ms []*member) {
	rec := wire.Members{Epoch: epoch, Members: make([]wire.Member, len(ms))}
	for i, m := range ms {
		rec.Members[i] = wire.Member{URL: m.url}
	}
	c.record.Store(&rec)
}

// live returns the members not killed, in start order.
func (c *cluster) live() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*member
	for _, m := range c.members {
		if !m.killed.Load() {
			out = append(out, m)
		}
	}
	return out
}

// all returns every member ever started, in start order.
func (c *cluster) all() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*member(nil), c.members...)
}

// close stops every member still running.
func (c *cluster) close() {
	for _, m := range c.all() {
		m.stop()
	}
}
