package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Link is a slow link between the client and one host's port: a TCP proxy
// (Shopify's toxiproxy, run as a library in the test process) listening on
// the gateway address, whose latency and bandwidth can change while
// clients keep using its address. It is the Fault that Slow returns.
//
// This kernel has no netem, so latency cannot be added in the network
// stack; the proxy adds it in user space instead. Only connections made to
// Addr are slowed: the host itself, and clients that dial it directly, see
// a normal network.
type Link struct {
	bed    *Bed
	name   string
	addr   string
	proxy  *toxiproxy.Proxy
	server *toxiproxy.ApiServer

	mu      sync.Mutex
	latency time.Duration
	jitter  time.Duration
	bw      int64
	closed  bool
}

const (
	latencyToxic   = "latency"
	bandwidthToxic = "bandwidth"
)

// Slow starts a link to h's port with the given latency and jitter (see
// Link.Set) and returns the address clients use instead of h's, and the
// link as a Fault: Heal removes its latency and bandwidth cap but keeps it
// listening, so clients keep their address; Bed.Close stops it.
// Slow(h, port, 0, 0) is a pass-through link whose latency a test sets
// later.
func (b *Bed) Slow(h *Host, port int, latency, jitter time.Duration) (addr string, f Fault, err error) {
	l, err := b.SlowLink(h, port)
	if err != nil {
		return "", nil, err
	}
	if err := l.Set(latency, jitter); err != nil {
		l.Close()
		return "", nil, err
	}
	return l.Addr(), l, nil
}

// SlowLink is Slow returning the *Link itself, with no latency yet.
func (b *Bed) SlowLink(h *Host, port int) (*Link, error) {
	if err := b.own(h); err != nil {
		return nil, err
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("testbed: Slow: port %d out of 1..65535", port)
	}
	upstream := netip.AddrPortFrom(h.Addr, uint16(port)).String()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	l := &Link{bed: b, name: "slow " + h.Name + ":" + strconv.Itoa(port), server: srv}
	l.proxy = toxiproxy.NewProxy(srv, l.name, netip.AddrPortFrom(b.gw, 0).String(), upstream)
	if err := b.track(l); err != nil {
		return nil, err
	}
	if err := l.proxy.Start(); err != nil {
		b.untrack(l)
		return nil, fmt.Errorf("testbed: starting the link proxy to %s: %w", upstream, err)
	}
	l.addr = l.proxy.Listen
	return l, nil
}

// Name says which host and port the link leads to.
func (l *Link) Name() string { return l.name }

// Addr is the address (gateway:port) clients dial instead of the host's.
func (l *Link) Addr() string { return l.addr }

// Set changes the link's latency: every chunk of data from the host to the
// client is delayed by latency ± jitter (uniform), so a request-reply
// exchange takes latency longer. Resolution is a millisecond; 0, 0 removes
// the delay. Connections open through the link are affected at once.
func (l *Link) Set(latency, jitter time.Duration) error {
	if latency < 0 || jitter < 0 || jitter > latency {
		return fmt.Errorf("testbed: slow link latency %v ± %v: want 0 <= jitter <= latency", latency, jitter)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	attrs := fmt.Sprintf(`{"latency":%d,"jitter":%d}`, latency.Milliseconds(), jitter.Milliseconds())
	if err := l.setToxic(latencyToxic, "latency", attrs, latency > 0); err != nil {
		return err
	}
	l.latency, l.jitter = latency, jitter
	return nil
}

// SetBandwidth caps the data the host sends the client through the link at
// bytesPerSec (toxiproxy's bandwidth toxic, KB/s resolution, at least
// 1 KB/s); 0 removes the cap.
func (l *Link) SetBandwidth(bytesPerSec int64) error {
	if bytesPerSec < 0 || bytesPerSec > 0 && bytesPerSec < 1024 {
		return fmt.Errorf("testbed: slow link bandwidth %d B/s: want 0 (no cap) or at least 1024", bytesPerSec)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	attrs := fmt.Sprintf(`{"rate":%d}`, bytesPerSec/1024)
	if err := l.setToxic(bandwidthToxic, "bandwidth", attrs, bytesPerSec > 0); err != nil {
		return err
	}
	l.bw = bytesPerSec
	return nil
}

// setToxic adds, updates or (on is false) removes the downstream toxic
// name of type typ. The caller holds l.mu.
func (l *Link) setToxic(name, typ, attrs string, on bool) error {
	tc := l.proxy.Toxics
	exists := tc.GetToxic(name) != nil
	var err error
	switch {
	case on && exists:
		_, err = tc.UpdateToxicJson(name, strings.NewReader(`{"attributes":`+attrs+`,"toxicity":1}`))
	case on:
		_, err = tc.AddToxicJson(strings.NewReader(
			`{"name":"` + name + `","type":"` + typ + `","stream":"downstream","toxicity":1,"attributes":` + attrs + `}`))
	case exists:
		err = tc.RemoveToxic(context.Background(), name)
	}
	if err != nil {
		return fmt.Errorf("testbed: %s: setting %s: %w", l.name, name, err)
	}
	return nil
}

// Heal removes the link's latency and bandwidth cap; the link keeps
// listening at Addr. A healed link can be slowed again with Set.
func (l *Link) Heal() error {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil
	}
	return errors.Join(l.Set(0, 0), l.SetBandwidth(0))
}

// Close stops the link: its listener and every connection through it are
// closed. Idempotent.
func (l *Link) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.proxy.Stop()
	l.bed.untrack(l)
	return nil
}
