package bootstrap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/cert"
	"github.com/smartclient/smartclient/smarthttp"
)

// pinnedMember is an https member with its own self-signed key.
type pinnedMember struct {
	*httptest.Server
	pin    string // as a certificate writes it
	served atomic.Int64
}

func newPinnedMember(t *testing.T, name string) *pinnedMember {
	t.Helper()
	crt, pin := selfSigned(t)
	m := &pinnedMember{pin: pin.String()}
	m.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.served.Add(1)
		io.WriteString(w, name)
	}))
	m.TLS = &tls.Config{Certificates: []tls.Certificate{crt}}
	m.StartTLS()
	t.Cleanup(m.Close)
	return m
}

func selfSigned(t *testing.T) (tls.Certificate, smarthttp.Pin) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, smarthttp.PinOf(leaf)
}

// otherPin is a pin no member's key has.
func otherPin(t *testing.T) string {
	_, p := selfSigned(t)
	return p.String()
}

// signMembers returns a certificate for "chat" at version v with members.
func (f *fixture) signMembers(v uint64, members ...cert.Member) []byte {
	f.t.Helper()
	c := &cert.Certificate{
		Service: "chat", Version: v, MemberList: members,
		IssuedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(24 * time.Hour),
		Refresh: cert.Duration(10 * time.Minute), Policy: cert.Policy{Name: "round-robin"},
	}
	data, err := cert.Sign(c, f.priv)
	if err != nil {
		f.t.Fatal(err)
	}
	return data
}

// The client's transport trusts each member by the pin its certificate
// gives, and a newer certificate's pins replace the old ones at once.
func TestPinsFollowTheCertificate(t *testing.T) {
	f := newFixture(t, 0)
	a, b := newPinnedMember(t, "a"), newPinnedMember(t, "b")
	r := newRoot(t, f.signMembers(1, cert.Member{URL: a.URL, Pin: a.pin}, cert.Member{URL: b.URL, Pin: otherPin(t)}))
	c, err := f.open(f.roots(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := c.NewTransport(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: tr}
	defer hc.CloseIdleConnections()
	getAll := func(want string) {
		t.Helper()
		for i := range 4 {
			req, _ := http.NewRequest(http.MethodPost, "http://chat/", strings.NewReader("x"))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != want {
				t.Fatalf("request %d answered by %q, want %q", i, body, want)
			}
		}
	}
	// Version 1 pins b to a key it does not have: b is never reached.
	getAll("a")
	if b.served.Load() != 0 {
		t.Fatalf("b, whose key does not match its pin, served %d requests", b.served.Load())
	}
	// Version 2 turns it round; a's pooled connection is not reused.
	r.set(f.signMembers(2, cert.Member{URL: a.URL, Pin: otherPin(t)}, cert.Member{URL: b.URL, Pin: b.pin}))
	served := a.served.Load()
	if err := c.Revalidate(context.Background()); err != nil {
		t.Fatal(err)
	}
	// b was ejected for its failures under version 1; let that end (the
	// director runs on the fake clock; the next refresh is 9 minutes away).
	f.clk.Advance(time.Minute)
	getAll("b")
	if a.served.Load() != served {
		t.Fatalf("a served %d requests after its pin changed", a.served.Load()-served)
	}
}

// Probes and load polls go to members over the pinned transport too.
func TestProberChecksPins(t *testing.T) {
	f := newFixture(t, 0)
	a, b := newPinnedMember(t, "a"), newPinnedMember(t, "b")
	r := newRoot(t, f.signMembers(1, cert.Member{URL: a.URL, Pin: a.pin}, cert.Member{URL: b.URL, Pin: otherPin(t)}))
	c, err := f.open(f.roots(r), func(cfg *Config) { cfg.Director.Prober = &smarthttp.Prober{Path: "/health"} })
	if err != nil {
		t.Fatal(err)
	}
	p, ok := c.Config().Prober.(*smarthttp.Prober)
	if !ok || p.Path != "/health" || p.Client == nil {
		t.Fatalf("prober %#v: want a copy of the configured one with a client", c.Config().Prober)
	}
	if err := p.Probe(context.Background(), balance.Member{URL: a.URL}); err != nil {
		t.Errorf("probe of the self-signed pinned member: %v", err)
	}
	var pe *smarthttp.PinError
	if err := p.Probe(context.Background(), balance.Member{URL: b.URL}); !errors.As(err, &pe) {
		t.Errorf("probe of the mispinned member: %v, want a PinError", err)
	}
}
