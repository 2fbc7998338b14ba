package smarthttp

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/smartclient/smartclient/director"
)

// Pin is the SHA-256 digest of a TLS server's SubjectPublicKeyInfo: the key
// pin a service certificate may give a member (cert.Member.Pin, read with
// cert.ParsePin), as in HPKP's pin-sha256. It is what
//
//	openssl x509 -in member.crt -pubkey -noout |
//	  openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64
//
// prints, in base64.
type Pin [sha256.Size]byte

// PinOf returns the pin of c's public key.
func PinOf(c *x509.Certificate) Pin { return sha256.Sum256(c.RawSubjectPublicKeyInfo) }

// String returns the pin as a certificate writes it: "sha256/" and the
// standard base64 of the digest.
func (p Pin) String() string { return "sha256/" + base64.StdEncoding.EncodeToString(p[:]) }

// PinSource tells PinTLS which key, if any, the server at an address must
// present.
type PinSource interface {
	// Pin returns the pin of the server at addr, the "host:port" being
	// dialed, lower-cased, with the port always present (443 for an https
	// URL without one); false means addr has no pin and its certificate
	// chain is verified as usual. It is called once per TLS handshake,
	// from many goroutines at once, and must not block.
	Pin(addr string) (Pin, bool)
}

// Pins is a PinSource holding a table of member pins that can be replaced
// at any time (Set) while connections are being made: each handshake reads
// the table in force when it starts, without a lock. The zero value holds
// no pins and is ready to use.
type Pins struct {
	table atomic.Pointer[map[string]Pin] // by lower-cased host:port

	mu    sync.Mutex                     // serialises Set
	users []weak.Pointer[http.Transport] // transports PinTLS set up with p
}

var _ PinSource = (*Pins)(nil)

// NewPins returns a Pins holding byMember; see Set.
func NewPins(byMember map[string]Pin) (*Pins, error) {
	p := new(Pins)
	if err := p.Set(byMember); err != nil {
		return nil, err
	}
	return p, nil
}

// Set replaces the table with byMember: pins by member URL
// ("https://HOST[:PORT][/PREFIX]", port 443 by default). A pin applies to
// every connection to its member's host and port, so members that share
// both must have the same pin. Set refuses, and leaves the table as it
// was, a URL that is not https with an ASCII host, and two different pins
// for one address. An empty byMember removes every pin.
//
// When the table changes, Set closes the idle connections of every
// transport PinTLS set up with p, so that the next request to each member
// makes a new handshake under the new pins. A connection busy at that
// moment stays in use: it was checked against the pins in force when it
// was made.
func (p *Pins) Set(byMember map[string]Pin) error {
	next := make(map[string]Pin, len(byMember))
	for raw, pin := range byMember {
		addr, err := pinAddr(raw)
		if err != nil {
			return err
		}
		if prev, ok := next[addr]; ok && prev != pin {
			return fmt.Errorf("smarthttp: two pins for %s (%s and %s): members on one host and port share one key", addr, prev, pin)
		}
		next[addr] = pin
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.table.Load(); old != nil && maps.Equal(*old, next) || old == nil && len(next) == 0 {
		return nil
	}
	p.table.Store(&next)
	live := p.users[:0]
	for _, w := range p.users {
		if t := w.Value(); t != nil {
			t.CloseIdleConnections()
			live = append(live, w)
		}
	}
	clear(p.users[len(live):])
	p.users = live
	return nil
}

// Pin implements PinSource.
func (p *Pins) Pin(addr string) (Pin, bool) {
	m := p.table.Load()
	if m == nil {
		return Pin{}, false
	}
	pin, ok := (*m)[addr]
	return pin, ok
}

// watch registers t for Set to close its idle connections. The reference
// is weak: a transport dropped by its owner is not kept alive by p.
func (p *Pins) watch(t *http.Transport) {
	p.mu.Lock()
	p.users = append(p.users, weak.Make(t))
	p.mu.Unlock()
}

// pinAddr returns the address a transport dials for the https member URL
// raw, in the form PinSource is asked about.
func pinAddr(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return "", fmt.Errorf("smarthttp: pin for %q: want an https member URL with a host", raw)
	}
	host := u.Hostname()
	for i := 0; i < len(host); i++ {
		// net/http dials a non-ASCII host by its punycode form; refusing it
		// here keeps a pin from silently not matching.
		if host[i] >= 0x80 {
			return "", fmt.Errorf("smarthttp: pin for %q: the host must be ASCII", raw)
		}
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return strings.ToLower(net.JoinHostPort(host, port)), nil
}

// PinError is the error of a TLS handshake in which a pinned member
// presented a key other than its pin. PinTLS reports it as
// director.NotReached: the handshake failed, so no byte of the request was
// sent, and another member may serve it.
type PinError struct {
	Addr string // the member's host:port
	Want Pin    // the pin it must match
	Got  Pin    // the pin of the key it presented; zero if it presented none
}

func (e *PinError) Error() string {
	got := e.Got.String()
	if e.Got == (Pin{}) {
		got = "no certificate"
	}
	return fmt.Sprintf("smarthttp: TLS key of %s does not match its pin: want %s, got %s", e.Addr, e.Want, got)
}

// PinTLS makes base check member key pins, and returns the RoundTripper to
// send requests with (NewTransport's base, or an http.Client's Transport):
// base itself, behind a wrapper that tells the dialer when a request must
// use HTTP/1.1 (a WebSocket upgrade), as net/http's own dialing knows.
// CloseIdleConnections on it closes base's.
//
// For an https address with a pin in pins, the handshake succeeds only if
// the server's leaf certificate carries the pinned public key; the pin
// then replaces chain, host name and expiry checks, so a member may use a
// self-signed certificate. (crypto/tls still makes the server prove it
// holds the key.) A mismatch fails the handshake with a *PinError. An
// address without a pin is verified against base.TLSClientConfig as
// usual. Every failed handshake is director.NotReached, since nothing was
// sent yet; a failure to connect keeps its own error. pins is consulted on
// every handshake, so a table that changes (Pins.Set) takes effect for
// every new connection.
//
// PinTLS sets base.DialTLSContext, which dials with base.DialContext (or
// base.Dial, or a plain net.Dialer) and honours base.TLSClientConfig, its
// protocols (HTTP/2 when base has it on) and base.TLSHandshakeTimeout. A
// pinned member is never reached through base.Proxy: a proxy's tunnel is
// not dialed by base.DialTLSContext, so the key could not be checked, and
// such a request fails NotReached instead (exclude members with NO_PROXY).
// Call PinTLS before base is first used. It refuses a transport that
// already has DialTLS or DialTLSContext.
func PinTLS(base *http.Transport, pins PinSource) (http.RoundTripper, error) {
	switch {
	case base == nil || pins == nil:
		return nil, errors.New("smarthttp: PinTLS needs a transport and a PinSource")
	case base.DialTLSContext != nil || base.DialTLS != nil:
		return nil, errors.New("smarthttp: PinTLS: the transport already has a TLS dialer")
	}
	d := &pinDialer{t: base, pins: pins, dial: base.DialContext}
	if d.dial == nil {
		if dial := base.Dial; dial != nil {
			d.dial = func(_ context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) }
		} else {
			d.dial = new(net.Dialer).DialContext
		}
	}
	base.DialTLSContext = d.dialTLS
	if proxy := base.Proxy; proxy != nil {
		base.Proxy = d.noProxyForPinned(proxy)
	}
	if p, ok := pins.(*Pins); ok {
		p.watch(base)
	}
	return &pinnedTransport{base}, nil
}

// pinDialer is a Transport's DialTLSContext that checks pins.
type pinDialer struct {
	t    *http.Transport
	pins PinSource
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (d *pinDialer) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	raw, err := d.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	// Cloned per connection, as net/http does, and read only now: the
	// transport adds its ALPN protocols to TLSClientConfig on first use.
	cfg := d.t.TLSClientConfig.Clone()
	if cfg == nil {
		cfg = new(tls.Config)
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if ctx.Value(http1Only{}) != nil {
		cfg.NextProtos = nil
	}
	if want, ok := d.pins.Pin(strings.ToLower(addr)); ok {
		next := cfg.VerifyConnection
		cfg.InsecureSkipVerify = true // the pin replaces chain verification
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			var got Pin
			if len(cs.PeerCertificates) > 0 {
				got = PinOf(cs.PeerCertificates[0])
			}
			if len(cs.PeerCertificates) == 0 || got != want {
				return &PinError{Addr: addr, Want: want, Got: got}
			}
			if next != nil {
				return next(cs)
			}
			return nil
		}
	}
	hctx := ctx
	if timeout := d.t.TLSHandshakeTimeout; timeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, director.WithClass(err, director.NotReached)
	}
	return tc, nil
}

// noProxyForPinned wraps a transport's Proxy function so that a request to
// a pinned address fails instead of going through a proxy.
func (d *pinDialer) noProxyForPinned(proxy func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	return func(req *http.Request) (*url.URL, error) {
		u, err := proxy(req)
		if u == nil || err != nil || req.URL.Scheme != "https" {
			return u, err
		}
		addr, aerr := pinAddr(req.URL.String())
		if aerr != nil {
			return u, nil // not a URL a pin could name
		}
		if want, ok := d.pins.Pin(addr); ok {
			return nil, director.WithClass(fmt.Errorf(
				"smarthttp: %s is pinned to %s and would be reached through proxy %s, where its key cannot be checked; exclude it with NO_PROXY",
				addr, want, u.Redacted()), director.NotReached)
		}
		return u, nil
	}
}

// http1Only marks a request context whose connection must speak HTTP/1.1.
type http1Only struct{}

// pinnedTransport is what PinTLS returns.
type pinnedTransport struct{ t *http.Transport }

// RoundTrip sends req through the pinning transport. net/http dials a
// WebSocket upgrade, which HTTP/2 cannot carry, with HTTP/2 off; a custom
// TLS dialer has to be told, through the request's context.
func (p *pinnedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL != nil && req.URL.Scheme == "https" && websocketUpgrade(req.Header) {
		req = req.WithContext(context.WithValue(req.Context(), http1Only{}, true))
	}
	return p.t.RoundTrip(req)
}

// CloseIdleConnections closes the transport's idle connections.
func (p *pinnedTransport) CloseIdleConnections() { p.t.CloseIdleConnections() }

// websocketUpgrade reports whether h asks for a WebSocket upgrade, by the
// rule net/http uses to keep such a request on HTTP/1.1.
func websocketUpgrade(h http.Header) bool {
	if !strings.EqualFold(h.Get("Upgrade"), "websocket") {
		return false
	}
	for _, v := range h.Values("Connection") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}
