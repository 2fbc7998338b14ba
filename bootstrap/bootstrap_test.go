package bootstrap

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/cache"
	"github.com/smartclient/smartclient/cert"
	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/resolve"
	"github.com/smartclient/smartclient/smarthttp"
)

// t0 is the fake clock's start; certificates are issued an hour before.
var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

type fixture struct {
	t       *testing.T
	priv    ed25519.PrivateKey
	trust   *cert.Trust
	clk     *clock.Fake
	members []string // URLs of real member servers
	cache   string
	logs    logSink
}

type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logSink) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func newFixture(t *testing.T, nMembers int) *fixture {
	t.Helper()
	priv, err := cert.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, priv: priv, trust: &cert.Trust{}, clk: clock.NewFake(t0), cache: t.TempDir()}
	if err := f.trust.AddKey("chat", priv.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	for i := range nMembers {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "member %d", i)
		}))
		t.Cleanup(srv.Close)
		f.members = append(f.members, srv.URL)
	}
	return f
}

// sign returns a certificate for "chat" at version v naming members.
func (f *fixture) sign(v uint64, members []string, ttl time.Duration) []byte {
	f.t.Helper()
	return f.signWith(f.priv, v, members, ttl)
}

func (f *fixture) signWith(priv ed25519.PrivateKey, v uint64, members []string, ttl time.Duration, roots ...string) []byte {
	f.t.Helper()
	c := &cert.Certificate{
		Roots:   roots,
		Service: "chat", Version: v,
		IssuedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(ttl),
		Refresh: cert.Duration(10 * time.Minute),
	}
	for _, m := range members {
		c.MemberList = append(c.MemberList, cert.Member{URL: m})
	}
	data, err := cert.Sign(c, priv)
	if err != nil {
		f.t.Fatal(err)
	}
	return data
}

// root is an HTTP root serving whatever body it holds, counting requests.
type root struct {
	srv  *httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	body []byte
	code int
}

func newRoot(t *testing.T, body []byte) *root {
	r := &root{body: body, code: http.StatusOK}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		r.mu.Lock()
		b, code := r.body, r.code
		r.mu.Unlock()
		w.WriteHeader(code)
		w.Write(b)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *root) set(body []byte) {
	r.mu.Lock()
	r.body = body
	r.mu.Unlock()
}

func (f *fixture) roots(rs ...*root) []resolve.Root {
	f.t.Helper()
	var out []resolve.Root
	for _, r := range rs {
		rt, err := resolve.ParseRoot(r.srv.URL)
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, rt)
	}
	return out
}

func (f *fixture) open(roots []resolve.Root, mod func(*Config)) (*Client, error) {
	cfg := Config{
		Name: "service://chat", Roots: roots, Trust: f.trust, CacheDir: f.cache,
		Clock: f.clk, Logf: f.logs.logf, Grace: -1,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := Open(context.Background(), cfg)
	if err == nil {
		f.t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func memberURLs(c *Client) []string {
	var out []string
	for _, e := range c.Balancer().Endpoints() {
		out = append(out, e.Member.URL)
	}
	return out
}

// get sends one request through the client's director to a member.
func get(t *testing.T, c *Client) string {
	t.Helper()
	hc := &http.Client{Transport: smarthttp.NewTransport(c.Director, nil)}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://chat/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 64)
	n, _ := resp.Body.Read(b)
	return string(b[:n])
}

func TestFirstStartThenZeroNetwork(t *testing.T) {
	f := newFixture(t, 2)
	r := newRoot(t, f.sign(1, f.members, 24*time.Hour))

	c, err := f.open(f.roots(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, src := c.Certificate(); got.Version != 1 || src != r.srv.URL {
		t.Fatalf("certificate v%d from %q, want v1 from the root", got.Version, src)
	}
	if !strings.HasPrefix(get(t, c), "member ") {
		t.Fatal("no member answered")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if r.hits.Load() != 1 {
		t.Fatalf("first start asked the root %d times, want 1", r.hits.Load())
	}

	// Second start: the cache has everything; the root is never asked,
	// not even while the first request is sent.
	c2, err := f.open(f.roots(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, src := c2.Certificate(); src != "cache" {
		t.Fatalf("second start used %q, want the cache", src)
	}
	if !strings.HasPrefix(get(t, c2), "member ") {
		t.Fatal("no member answered")
	}
	if n := r.hits.Load(); n != 1 {
		t.Fatalf("second start made %d network calls to the root, want 0", n-1)
	}
	// Close saved the director's state; a state with a known latency
	// estimate comes back on the next start.
	state := fmt.Sprintf(`{"version":1,"epoch":1,"members":[{"url":%q,"cost_ns":123456},{"url":%q,"cost_ns":654321}]}`,
		f.members[0], f.members[1])
	c2.Close()
	if _, err := (cache.Store{Dir: f.cache}).Get("chat", cache.KindState); err != nil {
		t.Fatalf("Close saved no state: %v", err)
	}
	if err := (cache.Store{Dir: f.cache}).Put("chat", cache.KindState, []byte(state)); err != nil {
		t.Fatal(err)
	}
	c3, err := f.open(f.roots(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c3.Stats().Members {
		if want := map[string]float64{f.members[0]: 123456, f.members[1]: 654321}[m.Member.URL]; m.CostNanos != want {
			t.Errorf("%s: cost %v after restart, want %v from the cached state", m.Member.URL, m.CostNanos, want)
		}
	}
}

func TestThreeBadRootsOneGood(t *testing.T) {
	f := newFixture(t, 3)
	good := f.sign(5, f.members, 24*time.Hour)
	down := newRoot(t, nil)
	down.srv.Close()
	old := newRoot(t, f.sign(4, f.members[:1], 24*time.Hour))
	tampered := []byte(strings.Replace(string(good), `"payload":"`, `"payload":"AAAA`, 1))
	hostile := newRoot(t, tampered)
	right := newRoot(t, good)

	// With the fake clock the grace period never runs out, so Resolve
	// hears every root before it answers.
	c, err := f.open(f.roots(down, old, hostile, right), func(c *Config) { c.Grace = 0 })
	if err != nil {
		t.Fatal(err)
	}
	if got, src := c.Certificate(); got.Version != 5 || src != right.srv.URL {
		t.Fatalf("got v%d from %s, want v5 from the good root", got.Version, src)
	}
	if n := len(memberURLs(c)); n != 3 {
		t.Fatalf("%d members, want the 3 of version 5", n)
	}
}

func TestAllRootsDownServedFromCache(t *testing.T) {
	f := newFixture(t, 1)
	r := newRoot(t, f.sign(1, f.members, 24*time.Hour))
	c, err := f.open(f.roots(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	r.srv.Close()
	c2, err := f.open(f.roots(r), nil)
	if err != nil {
		t.Fatalf("every root down, valid cache: %v", err)
	}
	if get(t, c2) != "member 0" {
		t.Fatal("wrong member")
	}
}

func TestExpiredCache(t *testing.T) {
	for _, policy := range []StalePolicy{ServeStale, RefuseStale} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			f := newFixture(t, 1)
			r := newRoot(t, f.sign(1, f.members, time.Hour))
			c, err := f.open(f.roots(r), nil)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			r.srv.Close()
			f.clk.Advance(2 * time.Hour) // past expiry
			c2, err := f.open(f.roots(r), func(cfg *Config) { cfg.Stale = policy })
			switch policy {
			case ServeStale:
				if err != nil {
					t.Fatalf("serve stale: %v", err)
				}
				if !f.logs.contains("serving it stale") {
					t.Error("no warning for a stale certificate")
				}
				if got, _ := c2.Certificate(); got.Version != 1 {
					t.Errorf("version %d", got.Version)
				}
			case RefuseStale:
				if !errors.Is(err, ErrStale) {
					t.Fatalf("refuse stale: %v, want ErrStale", err)
				}
			}
		})
	}
}

func TestCorruptCacheIgnored(t *testing.T) {
	f := newFixture(t, 1)
	r := newRoot(t, f.sign(1, f.members, 24*time.Hour))
	c, err := f.open(f.roots(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Flip a byte in the cached certificate file.
	path := filepath.Join(f.cache, "chat", "cert")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] ^= 0x20
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := f.open(f.roots(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, src := c2.Certificate(); src == "cache" {
		t.Fatal("a corrupt cache was used")
	}
	if !f.logs.contains("ignoring the cached certificate") {
		t.Error("the corrupt cache was not reported")
	}
	// And it was replaced by a good copy.
	if _, err := (cache.Store{Dir: f.cache}).Get("chat", cache.KindCert); err != nil {
		t.Errorf("cache not repaired: %v", err)
	}
}

func TestCacheSignedByAnotherKeyIgnored(t *testing.T) {
	f := newFixture(t, 1)
	other, _ := cert.GenerateKey()
	if err := (cache.Store{Dir: f.cache}).Put("chat", cache.KindCert, f.signWith(other, 9, []string{"http://127.0.0.1:1"}, 24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	r := newRoot(t, f.sign(1, f.members, 24*time.Hour))
	c, err := f.open(f.roots(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Certificate(); got.Version != 1 {
		t.Fatalf("took the cached v%d signed by an untrusted key", got.Version)
	}
}

func TestRevalidation(t *testing.T) {
	f := newFixture(t, 3)
	r := newRoot(t, f.sign(1, f.members[:2], 24*time.Hour))
	c, err := f.open(f.roots(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(memberURLs(c)); n != 2 {
		t.Fatalf("%d members", n)
	}
	// A newer version adds the third member; it is picked up once the
	// refresh interval (10m) passes.
	r.set(f.sign(2, f.members, 24*time.Hour))
	f.clk.Advance(9 * time.Minute)
	if n := len(memberURLs(c)); n != 2 || r.hits.Load() != 1 {
		t.Fatalf("revalidated early: %d members, %d hits", n, r.hits.Load())
	}
	f.clk.Advance(2 * time.Minute)
	if got, _ := c.Certificate(); got.Version != 2 || len(memberURLs(c)) != 3 || c.Balancer().Epoch() != 2 {
		t.Fatalf("after refresh: v%d, %d members, epoch %d", got.Version, len(memberURLs(c)), c.Balancer().Epoch())
	}
	// A root rolling back to version 1 is refused; version 2 stays.
	r.set(f.sign(1, f.members[:1], 24*time.Hour))
	f.clk.Advance(11 * time.Minute)
	if got, _ := c.Certificate(); got.Version != 2 || len(memberURLs(c)) != 3 {
		t.Fatalf("rolled back to v%d", got.Version)
	}
	if !f.logs.contains("revalidation failed") {
		t.Error("the rollback was not reported")
	}
}

func TestNoRootsNoCache(t *testing.T) {
	f := newFixture(t, 1)
	if _, err := f.open(nil, nil); err == nil || !strings.Contains(err.Error(), "no roots") {
		t.Fatalf("err = %v", err)
	}
	if _, err := f.open(nil, func(c *Config) { c.Name = "chat" }); err == nil {
		t.Fatal("a name without service:// was accepted")
	}
}

// TestCertificateRoots: a client started from the cache with no roots of its
// own revalidates at the roots the certificate names.
func TestCertificateRoots(t *testing.T) {
	f := newFixture(t, 2)
	r := newRoot(t, nil)
	r.set(f.signWith(f.priv, 1, f.members[:1], 24*time.Hour, r.srv.URL))
	c, err := f.open(f.roots(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	r.set(f.signWith(f.priv, 2, f.members, 24*time.Hour, r.srv.URL))
	c2, err := f.open(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(11 * time.Minute)
	if got, src := c2.Certificate(); got.Version != 2 || src != r.srv.URL || len(memberURLs(c2)) != 2 {
		t.Fatalf("after refresh: v%d from %q with %d members; want v2 from the certificate's root", got.Version, src, len(memberURLs(c2)))
	}
}
