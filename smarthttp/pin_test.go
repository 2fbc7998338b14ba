package smarthttp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/director"
)

// selfSigned returns a fresh self-signed certificate for 127.0.0.1 and
// localhost, and its pin.
func selfSigned(t testing.TB) (tls.Certificate, Pin) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "member"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, PinOf(leaf)
}

// tlsMember is an https member on loopback with its own self-signed key.
type tlsMember struct {
	*httptest.Server
	pin    Pin
	served counter       // requests that reached the handler
	conns  atomic.Int64  // TCP connections accepted
	h2     bool          // offer HTTP/2
	body   func() string // the reply; default the member's name
}

func newTLSMember(t testing.TB, name string, h2 bool) *tlsMember {
	t.Helper()
	crt, pin := selfSigned(t)
	m := &tlsMember{pin: pin, h2: h2}
	m.Server = httptest.NewUnstartedServer(m.served.wrap(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name+" "+r.Proto)
	}))
	m.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			m.conns.Add(1)
		}
	}
	m.EnableHTTP2 = h2
	m.TLS = &tls.Config{Certificates: []tls.Certificate{crt}}
	m.StartTLS()
	t.Cleanup(m.Close)
	return m
}

// addr is the member's address as PinSource is asked about it.
func (m *tlsMember) addr() string { return m.Listener.Addr().String() }

// pinnedBase returns a base transport set up by PinTLS, whose idle
// connections are closed when the test ends.
func pinnedBase(t testing.TB, pins PinSource) (*http.Transport, http.RoundTripper) {
	t.Helper()
	base := NewBaseTransport()
	rt, err := PinTLS(base, pins)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(base.CloseIdleConnections)
	return base, rt
}

// fetch GETs url with c and returns the body, or the error.
func fetch(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func mustPins(t testing.TB, m map[string]Pin) *Pins {
	t.Helper()
	p, err := NewPins(m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPinIsSHA256OfSPKI(t *testing.T) {
	crt, pin := selfSigned(t)
	spki, err := x509.MarshalPKIXPublicKey(crt.Leaf.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if pin != sha256.Sum256(spki) {
		t.Fatal("PinOf is not the SHA-256 of the DER SubjectPublicKeyInfo")
	}
	if got := Pin(sha256.Sum256(nil)).String(); got != "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" {
		t.Fatalf("String = %q", got)
	}
}

func TestPinsSet(t *testing.T) {
	var a, b Pin
	a[0], b[0] = 1, 2
	for _, tc := range []struct {
		name string
		in   map[string]Pin
		want map[string]Pin // lookups that must hit
		err  string
	}{
		{"default port and case", map[string]Pin{"https://Member.Example/api": a},
			map[string]Pin{"member.example:443": a}, ""},
		{"explicit port, IPv6", map[string]Pin{"https://[::1]:8443": a, "https://10.0.0.1:9443/": b},
			map[string]Pin{"[::1]:8443": a, "10.0.0.1:9443": b}, ""},
		{"two prefixes, one pin", map[string]Pin{"https://h:1/a": a, "https://h:1/b": a},
			map[string]Pin{"h:1": a}, ""},
		{"two prefixes, two pins", map[string]Pin{"https://h:1/a": a, "https://h:1/b": b}, nil, "two pins for h:1"},
		{"plain http", map[string]Pin{"http://h:1": a}, nil, "want an https member URL"},
		{"no host", map[string]Pin{"https:///x": a}, nil, "want an https member URL"},
		{"non-ASCII host", map[string]Pin{"https://%C3%A9.example": a}, nil, "must be ASCII"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Pins
			if err := p.Set(map[string]Pin{"https://old:1": a}); err != nil {
				t.Fatal(err)
			}
			err := p.Set(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Set = %v, want an error containing %q", err, tc.err)
				}
				if _, ok := p.Pin("old:1"); !ok {
					t.Fatal("a refused Set changed the table")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for addr, want := range tc.want {
				if got, ok := p.Pin(addr); !ok || got != want {
					t.Errorf("Pin(%q) = %v, %v; want %v", addr, got, ok, want)
				}
			}
			if _, ok := p.Pin("old:1"); ok {
				t.Error("Set kept a pin of the old table")
			}
		})
	}
	var zero Pins
	if _, ok := zero.Pin("h:1"); ok {
		t.Error("the zero Pins has a pin")
	}
}

// A pinned member is trusted by its key alone: its self-signed certificate
// would fail CA verification.
func TestPinTLSSelfSignedMember(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		m := newTLSMember(t, "a", h2)
		_, rt := pinnedBase(t, mustPins(t, map[string]Pin{m.URL: m.pin}))
		d := newDirector(t, director.Config{}, m.URL)
		c := &http.Client{Transport: NewTransport(d, rt)}
		for range 3 {
			body, err := fetch(c, "http://svc/")
			want := "a HTTP/1.1"
			if h2 {
				want = "a HTTP/2.0"
			}
			if err != nil || body != want {
				t.Fatalf("h2=%v: %q, %v; want %q", h2, body, err, want)
			}
		}
		if n := m.conns.Load(); n != 1 {
			t.Errorf("h2=%v: %d connections for 3 requests; want 1, reused", h2, n)
		}
		// Without the pin, the same member fails ordinary verification.
		plain := &http.Client{Transport: NewTransport(d, NewBaseTransport())}
		if _, err := fetch(plain, "http://svc/"); !errors.As(err, new(x509.UnknownAuthorityError)) {
			t.Errorf("h2=%v: unpinned client: %v, want an unknown-authority error", h2, err)
		}
		plain.CloseIdleConnections()
	}
}

// recordingRT remembers the error of every attempt by member address.
type recordingRT struct {
	rt   http.RoundTripper
	mu   sync.Mutex
	errs map[string][]error
}

func (r *recordingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.rt.RoundTrip(req)
	if err != nil {
		r.mu.Lock()
		r.errs[req.URL.Host] = append(r.errs[req.URL.Host], err)
		r.mu.Unlock()
	}
	return resp, err
}

// A member whose key does not match its pin fails every handshake; the
// director treats that as not reached, so even a POST, which is never
// retried once a member may have seen it, moves on to the good member.
func TestPinMismatchFailsOver(t *testing.T) {
	bad := newTLSMember(t, "bad", false)
	good := newTLSMember(t, "good", false)
	_, impostor := selfSigned(t) // the key the certificate expects of bad
	pins := mustPins(t, map[string]Pin{bad.URL: impostor, good.URL: good.pin})
	_, rt := pinnedBase(t, pins)
	rec := &recordingRT{rt: rt, errs: map[string][]error{}}
	d := newDirector(t, director.Config{PolicyImpl: ordered{}, Health: noEjection}, bad.URL, good.URL)
	c := &http.Client{Transport: NewTransport(d, rec)}
	const n = 5
	for i := range n {
		req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, "http://svc/", strings.NewReader("payload"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "good HTTP/1.1" {
			t.Fatalf("POST %d answered %q", i, b)
		}
	}
	if bad.served.n.Load() != 0 || good.served.n.Load() != n {
		t.Errorf("bad served %d, good %d; want 0 and %d", bad.served.n.Load(), good.served.n.Load(), n)
	}
	if bad.conns.Load() < n {
		t.Errorf("bad member saw %d connections; want a handshake per request (%d)", bad.conns.Load(), n)
	}
	rec.mu.Lock()
	errs := rec.errs[bad.addr()]
	other := len(rec.errs) - 1
	rec.mu.Unlock()
	if len(errs) != n || other != 0 {
		t.Fatalf("%d failed attempts at bad, %d other members failed; want %d and 0", len(errs), other, n)
	}
	var pe *PinError
	if !errors.As(errs[0], &pe) || pe.Addr != bad.addr() || pe.Want != impostor || pe.Got != bad.pin {
		t.Fatalf("error %v; want a PinError for %s, want %s, got %s", errs[0], bad.addr(), impostor, bad.pin)
	}
	for _, s := range []string{bad.addr(), impostor.String(), bad.pin.String()} {
		if !strings.Contains(errs[0].Error(), s) {
			t.Errorf("error %q does not name %s", errs[0], s)
		}
	}
	if cl := director.Classify(errs[0]); cl != director.NotReached {
		t.Errorf("a pin mismatch is %v, want not-reached", cl)
	}
}

// Pins are read on every handshake, and Set closes idle connections, so a
// new pin applies to the very next request.
func TestPinUpdateTakesEffect(t *testing.T) {
	m := newTLSMember(t, "a", false)
	_, wrong := selfSigned(t)
	pins := mustPins(t, map[string]Pin{m.URL: m.pin})
	_, rt := pinnedBase(t, pins)
	c := &http.Client{Transport: rt}
	set := func(p map[string]Pin) {
		t.Helper()
		if err := pins.Set(p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fetch(c, m.URL); err != nil {
		t.Fatalf("right pin: %v", err)
	}
	set(map[string]Pin{m.URL: wrong})
	var pe *PinError
	if _, err := fetch(c, m.URL); !errors.As(err, &pe) || pe.Want != wrong {
		t.Fatalf("after the pin changed: %v, want a PinError", err)
	}
	set(map[string]Pin{m.URL: m.pin})
	if _, err := fetch(c, m.URL); err != nil {
		t.Fatalf("pin restored: %v", err)
	}
	// Without its pin the member is back to CA verification, which its
	// self-signed certificate fails.
	set(nil)
	if _, err := fetch(c, m.URL); !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Fatalf("pin removed: %v, want an unknown-authority error", err)
	}
	if n := m.conns.Load(); n != 4 {
		t.Errorf("%d connections; want 4, one per pin change", n)
	}
}

// A member without a pin keeps ordinary verification: its chain must reach
// a trusted root and name its host, whatever other members are pinned.
func TestUnpinnedMemberVerifiedAsUsual(t *testing.T) {
	pinned := newTLSMember(t, "pinned", false)
	ca := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ca") }))
	t.Cleanup(ca.Close)
	pins := mustPins(t, map[string]Pin{pinned.URL: pinned.pin})

	_, rt := pinnedBase(t, pins)
	c := &http.Client{Transport: rt}
	if _, err := fetch(c, ca.URL); !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Fatalf("unpinned member, untrusted root: %v, want an unknown-authority error", err)
	} else if director.Classify(err) != director.NotReached {
		t.Errorf("a failed handshake is %v, want not-reached", director.Classify(err))
	}

	base := NewBaseTransport()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	base.TLSClientConfig = &tls.Config{RootCAs: roots}
	rt, err := PinTLS(base, pins)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(base.CloseIdleConnections)
	c = &http.Client{Transport: rt}
	if body, err := fetch(c, ca.URL); err != nil || body != "ca" {
		t.Fatalf("unpinned member, trusted root: %q, %v", body, err)
	}
	if body, err := fetch(c, pinned.URL); err != nil || body != "pinned HTTP/1.1" {
		t.Fatalf("pinned member beside it: %q, %v", body, err)
	}
	// The host name still counts for the unpinned member: its certificate
	// names 127.0.0.1 and example.com, not localhost.
	u, _ := url.Parse(ca.URL)
	if _, err := fetch(c, "https://localhost:"+u.Port()); !errors.As(err, new(x509.HostnameError)) {
		t.Fatalf("wrong host name: %v, want a hostname error", err)
	}
}

// A WebSocket upgrade is dialed over HTTP/1.1 even when the member speaks
// HTTP/2, as net/http does on its own.
func TestPinTLSUpgradeUsesHTTP1(t *testing.T) {
	m := newTLSMember(t, "a", true)
	_, rt := pinnedBase(t, mustPins(t, map[string]Pin{m.URL: m.pin}))
	c := &http.Client{Transport: rt}
	if body, err := fetch(c, m.URL); err != nil || body != "a HTTP/2.0" {
		t.Fatalf("plain request: %q, %v", body, err)
	}
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet, m.URL, nil)
	req.Header.Set("Connection", "keep-alive, Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "a HTTP/1.1" {
		t.Fatalf("upgrade request went as %q", b)
	}
}

// A pinned member is never reached through a proxy, whose tunnel the
// pinning dialer does not make.
func TestPinTLSRefusesProxyForPinned(t *testing.T) {
	m := newTLSMember(t, "a", false)
	base := NewBaseTransport()
	var proxied atomic.Int64
	base.Proxy = func(*http.Request) (*url.URL, error) {
		proxied.Add(1)
		return url.Parse("http://user:secret@127.0.0.1:1")
	}
	rt, err := PinTLS(base, mustPins(t, map[string]Pin{m.URL: m.pin}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(base.CloseIdleConnections)
	_, err = fetch(&http.Client{Transport: rt}, m.URL)
	if err == nil || !strings.Contains(err.Error(), "NO_PROXY") || strings.Contains(err.Error(), "secret") ||
		director.Classify(err) != director.NotReached || proxied.Load() != 1 {
		t.Fatalf("err = %v (%v), proxy asked %d times", err, director.Classify(err), proxied.Load())
	}
}

func TestPinTLSRefusesMisuse(t *testing.T) {
	if _, err := PinTLS(nil, new(Pins)); err == nil {
		t.Error("nil transport accepted")
	}
	if _, err := PinTLS(NewBaseTransport(), nil); err == nil {
		t.Error("nil PinSource accepted")
	}
	base := NewBaseTransport()
	base.DialTLSContext = new(tls.Dialer).DialContext
	if _, err := PinTLS(base, new(Pins)); err == nil {
		t.Error("a transport with its own TLS dialer accepted")
	}
}
