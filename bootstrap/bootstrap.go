// Package bootstrap turns a service name into a ready director, as the Smart
// Clients paper's browser does with a service certificate: it finds the
// certificate for service://NAME by asking several roots, trusts it only
// through a key the user already trusts, and caches the certificate and the
// director's learned state on disk, so that later starts send their first
// request with no network traffic to any root at all.
//
// Open prefers the cache: a valid cached certificate is used at once and
// revalidated in the background once its refresh interval has passed. A
// corrupt cache is reported and ignored; an expired one is replaced from the
// roots, or, if every root is unreachable, served stale or refused as
// Config.Stale says. A root may never roll the service back to an older
// certificate version than the one cached.
//
// The certificate's member key pins travel with it: Client.Pins follows
// the certificate in use, and Client.NewTransport (or smarthttp.PinTLS with
// Client.Pins) makes https connections to a pinned member succeed only if
// the member presents the pinned key.
package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/cache"
	"github.com/smartclient/smartclient/cert"
	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/resolve"
	"github.com/smartclient/smartclient/smarthttp"
	"github.com/smartclient/smartclient/wire"
)

// StalePolicy says what Open does with an expired cached certificate when no
// root can provide a newer one.
type StalePolicy uint8

const (
	// ServeStale uses the expired certificate and logs a warning: the
	// members it names are probably still there, and refusing would turn a
	// root outage into a service outage. The default.
	ServeStale StalePolicy = iota
	// RefuseStale fails Open with ErrStale.
	RefuseStale
)

// kindMeta is the cache entry beside the certificate that records when and
// where it was fetched.
const kindMeta = "meta"

// ErrStale: the cached certificate expired, no root answered, and
// Config.Stale is RefuseStale.
var ErrStale = errors.New("bootstrap: cached certificate expired and no root could refresh it")

// Config says how to find, trust and cache a service. The zero value of each
// optional field means the default beside it.
type Config struct {
	// Name is service://NAME or service://NAME~FINGERPRINT; required.
	Name string
	// Roots publish the certificate; tried in parallel. May be empty when a
	// valid cache exists.
	Roots []resolve.Root
	// Trust holds the keys trusted to sign certificates; nil trusts only a
	// self-certifying name's key.
	Trust *cert.Trust
	// CacheDir overrides the cache location (default: the user's cache
	// directory, see cache.Dir). NoCache turns caching off.
	CacheDir string
	NoCache  bool
	// Grace is how long resolution waits, after the first valid answer, for
	// a root with a newer version. Default 250ms.
	Grace time.Duration
	// Stale chooses between serving and refusing an expired certificate
	// when every root is unreachable. Default ServeStale.
	Stale StalePolicy
	// Director is applied on top of what the certificate sets (policy,
	// load TTL, epoch, membership vetting); fields left zero keep the
	// certificate's choice. A *smarthttp.Prober or *smarthttp.LoadPoller
	// here without a Client is given one that checks the certificate's
	// member pins, as is the load poller the certificate asks for.
	Director director.Config
	// Clock is the time source. Default clock.Real.
	Clock clock.Clock
	// Logf receives warnings (corrupt cache, stale certificate, failed
	// revalidation). Default: discard.
	Logf func(format string, args ...any)
}

// Client is a director bootstrapped from a service certificate. Its
// embedded Director is ready for requests.
type Client struct {
	*director.Director

	cfg     Config
	name    cert.Name
	store   *cache.Store
	ver     *cert.Verifier
	current atomic.Pointer[loaded]

	// pins are the current certificate's member key pins. members sends
	// probes and load polls; its base checks the pins.
	pins        smarthttp.Pins
	members     *http.Client
	membersBase *http.Transport

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	timerMu  sync.Mutex
	timer    clock.Timer
	revals   atomic.Uint64 // background revalidations attempted
}

// loaded is a certificate in use and where it came from.
type loaded struct {
	cert      *cert.Certificate
	data      []byte
	source    string // "cache" or the root that served it
	fetchedAt time.Time
}

// meta is stored beside the cached certificate.
type meta struct {
	FetchedAt time.Time `json:"fetched_at"`
	Source    string    `json:"source"`
}

// Open bootstraps a client for cfg.Name; see the package comment. Close the
// client to save the director's state and stop revalidation.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	name, err := cert.ParseName(cfg.Name)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, name: name, stop: make(chan struct{})}
	c.ver = &cert.Verifier{Trust: cfg.Trust, Clock: cfg.Clock}
	c.membersBase = smarthttp.NewBaseTransport()
	rt, err := smarthttp.PinTLS(c.membersBase, &c.pins)
	if err != nil {
		return nil, err
	}
	c.members = &http.Client{
		Transport: rt,
		// A probe or poll asks one member about itself, as smarthttp's
		// default client does.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if !cfg.NoCache {
		dir, err := cache.Dir(cfg.CacheDir)
		if err != nil {
			return nil, err
		}
		c.store = &cache.Store{Dir: dir}
	}

	cur := c.fromCache()
	if cur != nil {
		c.current.Store(cur) // its roots join the configured ones
	}
	now := cfg.Clock.Now()
	if cur == nil || cur.cert.Expired(now) {
		var minVersion uint64
		if cur != nil {
			minVersion = cur.cert.Version
		}
		fresh, err := c.resolve(ctx, minVersion)
		switch {
		case err == nil:
			cur = fresh
			c.saveCert(cur)
		case cur != nil && cfg.Stale == ServeStale:
			cfg.Logf("bootstrap: %s: certificate version %d expired at %s and no root could refresh it; serving it stale: %v",
				name.Service, cur.cert.Version, cur.cert.ExpiresAt.Format(time.RFC3339), err)
		case cur != nil:
			return nil, fmt.Errorf("%w: %s version %d expired at %s: %v", ErrStale,
				name.Service, cur.cert.Version, cur.cert.ExpiresAt.Format(time.RFC3339), err)
		default:
			return nil, err
		}
	}
	if err := c.start(cur); err != nil {
		return nil, err
	}
	c.schedule(cur.fetchedAt.Add(cur.cert.RefreshInterval()))
	return c, nil
}

// fromCache returns the cached certificate if it is there, intact and
// trusted (expired or not), or nil; problems are logged, never fatal.
func (c *Client) fromCache() *loaded {
	if c.store == nil {
		return nil
	}
	svc := c.name.Service
	data, err := c.store.Get(svc, cache.KindCert)
	if err != nil {
		if !errors.Is(err, cache.ErrNotFound) {
			c.cfg.Logf("bootstrap: %s: ignoring the cached certificate: %v", svc, err)
		}
		return nil
	}
	stale := cert.Verifier{Trust: c.cfg.Trust, Clock: c.cfg.Clock, AllowExpired: true}
	crt, err := stale.Verify(data, c.name)
	if err != nil {
		c.cfg.Logf("bootstrap: %s: ignoring the cached certificate: %v", svc, err)
		return nil
	}
	l := &loaded{cert: crt, data: data, source: "cache"}
	if b, err := c.store.Get(svc, kindMeta); err == nil {
		var m meta
		if json.Unmarshal(b, &m) == nil {
			l.fetchedAt = m.FetchedAt
		}
	}
	return l
}

// resolve asks the roots for a certificate no older than minVersion: those
// configured plus those the current certificate names as where its newer
// versions are published.
func (c *Client) resolve(ctx context.Context, minVersion uint64) (*loaded, error) {
	roots := c.roots()
	if len(roots) == 0 {
		return nil, fmt.Errorf("bootstrap: %s: no certificate cached and no roots to ask", c.name)
	}
	r := &resolve.Resolver{
		Roots: roots, Verify: c.ver.VersionFunc(c.name), Grace: c.cfg.Grace,
		MinVersion: minVersion, Clock: c.cfg.Clock,
	}
	res, err := r.Resolve(ctx, c.name.Service)
	if err != nil {
		return nil, err
	}
	// Verify once more to get the certificate itself; the bytes are the
	// ones just verified, so this cannot fail but for the clock moving past
	// the expiry in between.
	crt, err := c.ver.Verify(res.Data, c.name)
	if err != nil {
		return nil, err
	}
	if err := cert.CheckVersion(minVersion, crt.Version); err != nil {
		return nil, err
	}
	return &loaded{cert: crt, data: res.Data, source: res.Source, fetchedAt: c.cfg.Clock.Now()}, nil
}

// roots returns the configured roots and, after them, the current
// certificate's, without repeats.
func (c *Client) roots() []resolve.Root {
	roots := append([]resolve.Root(nil), c.cfg.Roots...)
	seen := map[string]bool{}
	for _, r := range roots {
		seen[r.String()] = true
	}
	if l := c.current.Load(); l != nil {
		for _, s := range l.cert.Roots {
			r, err := resolve.ParseRoot(s)
			if err != nil {
				c.cfg.Logf("bootstrap: %s: certificate root %q: %v", c.name.Service, s, err)
				continue
			}
			if !seen[r.String()] {
				seen[r.String()] = true
				roots = append(roots, r)
			}
		}
	}
	return roots
}

func (c *Client) saveCert(l *loaded) {
	if c.store == nil {
		return
	}
	svc := c.name.Service
	if err := c.store.Put(svc, cache.KindCert, l.data); err != nil {
		c.cfg.Logf("bootstrap: %s: caching the certificate: %v", svc, err)
		return
	}
	b, _ := json.Marshal(meta{FetchedAt: l.fetchedAt, Source: l.source})
	if err := c.store.Put(svc, kindMeta, b); err != nil {
		c.cfg.Logf("bootstrap: %s: caching the certificate's metadata: %v", svc, err)
	}
}

// start builds the director from the certificate and restores the cached
// director state, if any, when it belongs to the same certificate version.
func (c *Client) start(l *loaded) error {
	dc := l.cert.DirectorConfig()
	over := c.cfg.Director
	// Explicit settings win over the certificate's.
	if over.Policy != "" || over.PolicyImpl != nil {
		dc.Policy, dc.PolicyImpl = over.Policy, over.PolicyImpl
	}
	mergeNonZero(&dc, over)
	dc.Clock = c.cfg.Clock
	dc.Epoch = l.cert.Version
	// Vet learned membership against whichever certificate is current, so
	// a newer certificate widens or narrows what members may announce.
	dc.AcceptMembers = func(m wire.Members) error { return c.current.Load().cert.AcceptMembers(m) }
	if l.cert.Load.PollPath != "" && dc.Poller == nil {
		dc.Poller = &smarthttp.LoadPoller{Path: l.cert.Load.PollPath}
	}
	if p, ok := dc.Poller.(*smarthttp.LoadPoller); ok && p.Client == nil {
		cp := *p
		cp.Client = c.members
		dc.Poller = &cp
	}
	if p, ok := dc.Prober.(*smarthttp.Prober); ok && p.Client == nil {
		cp := *p
		cp.Client = c.members
		dc.Prober = &cp
	}
	if err := c.setPins(l.cert); err != nil {
		return err
	}
	c.current.Store(l)
	d, err := director.New(dc, l.cert.Members())
	if err != nil {
		return fmt.Errorf("bootstrap: %s: certificate version %d: %w", c.name.Service, l.cert.Version, err)
	}
	c.Director = d
	if c.store != nil {
		if b, err := c.store.Get(c.name.Service, cache.KindState); err == nil {
			c.restore(b, l.cert.Version)
		} else if !errors.Is(err, cache.ErrNotFound) {
			c.cfg.Logf("bootstrap: %s: ignoring the cached director state: %v", c.name.Service, err)
		}
	}
	return nil
}

// restore applies saved state unless it is older than the certificate: a
// newer certificate's member list beats what an older one led to.
func (c *Client) restore(b []byte, version uint64) {
	st, err := balance.ParseState(b)
	if err != nil {
		c.cfg.Logf("bootstrap: %s: ignoring the cached director state: %v", c.name.Service, err)
		return
	}
	if st.Epoch < version {
		return
	}
	if err := c.RestoreState(b); err != nil {
		c.cfg.Logf("bootstrap: %s: ignoring the cached director state: %v", c.name.Service, err)
	}
}

// setPins makes crt's member pins the ones every handshake checks. A
// verified certificate has pins only on https members and no two pins for
// one host and port (cert.Validate); Pins.Set checks the same again.
func (c *Client) setPins(crt *cert.Certificate) error {
	byMember := make(map[string]smarthttp.Pin)
	for _, m := range crt.MemberList {
		if m.Pin == "" {
			continue
		}
		pin, err := cert.ParsePin(m.Pin)
		if err != nil {
			return fmt.Errorf("bootstrap: %s: certificate version %d: member %s: %w", c.name.Service, crt.Version, m.URL, err)
		}
		byMember[m.URL] = pin
	}
	if err := c.pins.Set(byMember); err != nil {
		return fmt.Errorf("bootstrap: %s: certificate version %d: %w", c.name.Service, crt.Version, err)
	}
	return nil
}

// Pins returns the TLS key pins of the current certificate's https
// members, for smarthttp.PinTLS. They follow the certificate: a newer
// certificate's pins replace them just before its member list replaces the
// director's.
func (c *Client) Pins() smarthttp.PinSource { return &c.pins }

// NewTransport returns a smarthttp.Transport that sends requests through
// the client's director over base, set up by smarthttp.PinTLS with the
// client's Pins: a pinned member must present its pinned key, and may do
// so with a self-signed certificate; other members are verified as usual.
// base nil means smarthttp.NewBaseTransport(); a base given must not have
// been used yet. Close the transport's idle connections when done with it.
func (c *Client) NewTransport(base *http.Transport) (*smarthttp.Transport, error) {
	if base == nil {
		base = smarthttp.NewBaseTransport()
	}
	rt, err := smarthttp.PinTLS(base, &c.pins)
	if err != nil {
		return nil, err
	}
	return smarthttp.NewTransport(c.Director, rt), nil
}

// Certificate returns the certificate in use and where it came from ("cache"
// or a root).
func (c *Client) Certificate() (*cert.Certificate, string) {
	l := c.current.Load()
	return l.cert, l.source
}

// schedule arms the next background revalidation at t (at once if t has
// passed).
func (c *Client) schedule(t time.Time) {
	d := max(t.Sub(c.cfg.Clock.Now()), 0)
	c.timerMu.Lock()
	defer c.timerMu.Unlock()
	select {
	case <-c.stop:
		return
	default:
	}
	c.wg.Add(1)
	c.timer = c.cfg.Clock.AfterFunc(d, func() {
		defer c.wg.Done()
		c.Revalidate(context.Background())
		c.schedule(c.current.Load().fetchedAt.Add(c.current.Load().cert.RefreshInterval()))
	})
}

// Revalidate asks the roots for a newer certificate now. A newer version
// replaces the member list (at its version as the membership epoch) and the
// cache; an equal one only renews the fetch time; nothing older is taken.
// Failures are logged and returned; the current certificate stays in use.
func (c *Client) Revalidate(ctx context.Context) error {
	c.revals.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	cur := c.current.Load()
	fresh, err := c.resolve(ctx, cur.cert.Version)
	if err != nil {
		c.cfg.Logf("bootstrap: %s: revalidation failed, keeping version %d: %v", c.name.Service, cur.cert.Version, err)
		c.keep(cur)
		return err
	}
	if fresh.cert.Version > cur.cert.Version {
		// The new pins go first, so that no connection to a member of the
		// new list is made under the old pins.
		if err := c.setPins(fresh.cert); err != nil {
			c.cfg.Logf("%v; keeping version %d", err, cur.cert.Version)
			c.keep(cur)
			return err
		}
		// A signed newer certificate outranks any membership record, even
		// one whose epoch a member inflated.
		if err := c.Balancer().ReplaceMembers(fresh.cert.Version, fresh.cert.Members()); err != nil {
			c.cfg.Logf("bootstrap: %s: certificate version %d: %v", c.name.Service, fresh.cert.Version, err)
			c.setPins(cur.cert) // accepted before, so it cannot fail now
			c.keep(cur)
			return err
		}
	}
	c.current.Store(fresh)
	c.saveCert(fresh)
	return nil
}

// keep keeps cur in use after a failed revalidation, which is tried again
// after another refresh interval, not in a tight loop.
func (c *Client) keep(cur *loaded) {
	next := *cur
	next.fetchedAt = c.cfg.Clock.Now()
	c.current.Store(&next)
}

// SaveState writes the director's learned state to the cache now.
func (c *Client) SaveState() error {
	if c.store == nil {
		return nil
	}
	b, err := c.Director.SaveState()
	if err != nil {
		return err
	}
	return c.store.Put(c.name.Service, cache.KindState, b)
}

// Close stops revalidation, saves the director's state to the cache, closes
// the director and the idle connections of its probes and load polls.
func (c *Client) Close() error {
	c.stopOnce.Do(func() {
		close(c.stop)
		c.timerMu.Lock()
		if c.timer != nil && c.timer.Stop() {
			c.wg.Done()
		}
		c.timerMu.Unlock()
	})
	c.wg.Wait()
	err := c.SaveState()
	c.Director.Close()
	c.membersBase.CloseIdleConnections()
	return err
}

// mergeNonZero copies the fields of over that are set onto dc, for the
// settings a command line may override.
func mergeNonZero(dc *director.Config, over director.Config) {
	if over.MaxAttempts != 0 {
		dc.MaxAttempts = over.MaxAttempts
	}
	if over.AttemptTimeout != 0 {
		dc.AttemptTimeout = over.AttemptTimeout
	}
	if over.Hedge.Enabled {
		dc.Hedge = over.Hedge
	}
	if over.Zone != "" {
		dc.Zone = over.Zone
	}
	if over.Prober != nil {
		dc.Prober = over.Prober
	}
	if over.Poller != nil {
		dc.Poller, dc.PollInterval = over.Poller, over.PollInterval
	}
	if over.Rand != nil {
		dc.Rand = over.Rand
	}
	if over.LearnMembers {
		dc.LearnMembers = true
	}
}
