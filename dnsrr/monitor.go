package dnsrr

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

// Sentinel errors for member lists.
var (
	// ErrNotAddress: a member URL's host is a name, not an IP literal. A DNS
	// answer must be an address, and resolving members' names ourselves
	// would only hide a second DNS behind this one.
	ErrNotAddress = errors.New("dnsrr: member host must be an IP address")
	// ErrMixedPorts: members listen on different ports. An address record
	// carries no port, so members that share a name must share a port.
	ErrMixedPorts = errors.New("dnsrr: members must share one port")
)

// MonitorConfig tunes a Monitor. The zero value of each field means the
// default given beside it.
type MonitorConfig struct {
	// Interval is the time between health rounds. Default 1s.
	Interval time.Duration
	// CheckTimeout bounds one check of one member. Default 1s.
	CheckTimeout time.Duration
	// Health tunes the failure detector, exactly as for the director (see
	// balance.HealthConfig), with one difference: PanicThreshold defaults
	// to -1 here, so members are answered regardless of health only when
	// none is healthy. A DNS client does not retry elsewhere the way the
	// director does, so handing out a dead address is worse here.
	Health balance.HealthConfig
	// Logf, if set, receives one line per change of the answered set
	// (a member left out or readmitted, panic mode entered or left).
	Logf func(format string, args ...any)
	// Clock is the time source. Default clock.Real.
	Clock clock.Clock
	// Rand spreads ejection lengths; must be safe for concurrent use.
	// Default: math/rand/v2's global generator.
	Rand balance.Rand
}

func (c MonitorConfig) withDefaults() MonitorConfig {
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = time.Second
	}
	if c.Health.PanicThreshold == 0 {
		c.Health.PanicThreshold = -1
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Rand == nil {
		c.Rand = director.GlobalRand{}
	}
	return c
}

// Validate reports the first field outside its range.
func (c MonitorConfig) Validate() error {
	if c.Interval < 0 || c.CheckTimeout < 0 {
		return fmt.Errorf("dnsrr: Interval %v and CheckTimeout %v must be >= 0", c.Interval, c.CheckTimeout)
	}
	return c.Health.Validate()
}

// ProbeChecker turns a director.Prober (such as smarthttp.Prober) into the
// director.LoadPoller a Monitor checks members with: a probe that passes
// is a member fit for work with no load to report.
type ProbeChecker struct{ Prober director.Prober }

// PollLoad implements director.LoadPoller.
func (p ProbeChecker) PollLoad(ctx context.Context, m balance.Member) (wire.Load, error) {
	return wire.Load{}, p.Prober.Probe(ctx, m)
}

// Monitor keeps the View of healthy members. Every Interval it checks each
// member once (a Round); a failed check counts as a failed attempt in the
// director's failure detector, a passing one as a success, and a load
// reporting "draining" leaves the member out at once. Ejected members are
// readmitted only after a check passes, with the detector's backoff.
// View never blocks. Monitor is safe for concurrent use.
type Monitor struct {
	cfg    MonitorConfig
	check  director.LoadPoller
	bal    *balance.Balancer
	addrs  map[string]netip.Addr // member URL → address
	origin time.Time

	view atomic.Pointer[View]

	roundMu   sync.Mutex // one round at a time; guards lastPanic, lastSet
	lastPanic bool
	lastSet   map[string]bool

	closeOnce sync.Once
	closed    chan struct{}
}

// MemberAddr returns the address and port of a member URL, which must have
// an IP-literal host (ErrNotAddress otherwise); the port defaults to the
// scheme's.
func MemberAddr(raw string) (netip.AddrPort, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dnsrr: member %q: %w", raw, err)
	}
	a, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %q has host %q", ErrNotAddress, raw, u.Hostname())
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("dnsrr: member %q: bad or missing port", raw)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}

// NewMonitor returns a monitor of members, each checked with check. Every
// member URL must have an IP-literal host and all must share one port
// (ErrNotAddress, ErrMixedPorts). Until the first Round every member is
// answered. Call Start to check periodically and Close when done.
func NewMonitor(cfg MonitorConfig, members []balance.Member, check director.LoadPoller) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if check == nil {
		return nil, errors.New("dnsrr: nil checker")
	}
	if err := balance.ValidateMembers(members); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	addrs := make(map[string]netip.Addr, len(members))
	var port uint16
	for i, m := range members {
		ap, err := MemberAddr(m.URL)
		if err != nil {
			return nil, err
		}
		if i > 0 && ap.Port() != port {
			return nil, fmt.Errorf("%w: %s uses port %d, %s uses %d", ErrMixedPorts, members[0].URL, port, m.URL, ap.Port())
		}
		port = ap.Port()
		addrs[m.URL] = ap.Addr()
	}
	pol, err := policy.New("round-robin")
	if err != nil {
		return nil, err
	}
	bal, err := balance.New(balance.Config{Policy: pol, Health: cfg.Health}, members, cfg.Rand)
	if err != nil {
		return nil, err
	}
	m := &Monitor{
		cfg:    cfg,
		check:  check,
		bal:    bal,
		addrs:  addrs,
		origin: cfg.Clock.Now(),
		closed: make(chan struct{}),
	}
	m.publish()
	return m, nil
}

// View returns the current view. It never blocks.
func (m *Monitor) View() *View { return m.view.Load() }

// Balancer exposes the failure detector's state, for statistics.
func (m *Monitor) Balancer() *balance.Balancer { return m.bal }

func (m *Monitor) now() int64 { return int64(m.cfg.Clock.Now().Sub(m.origin)) }

// Start runs a Round every Interval until Close.
func (m *Monitor) Start() { m.arm() }

func (m *Monitor) arm() {
	m.cfg.Clock.AfterFunc(m.cfg.Interval, func() {
		select {
		case <-m.closed:
			return
		default:
		}
		m.Round()
		m.arm()
	})
}

// Close stops periodic rounds; a round in progress finishes.
func (m *Monitor) Close() { m.closeOnce.Do(func() { close(m.closed) }) }

// Round checks every member once, in parallel, applies the outcomes to
// the failure detector and publishes the new view. It returns when every
// check has finished or timed out.
func (m *Monitor) Round() {
	m.roundMu.Lock()
	defer m.roundMu.Unlock()
	probes, _ := m.bal.Tick(m.now(), true)
	probing := make(map[*balance.Endpoint]bool, len(probes))
	for _, e := range probes {
		probing[e] = true
	}
	var wg sync.WaitGroup
	for _, e := range m.bal.Endpoints() {
		probing := probing[e]
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.checkOne(e, probing)
		}()
	}
	wg.Wait()
	m.publish()
}

func (m *Monitor) checkOne(e *balance.Endpoint, probing bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t := m.cfg.Clock.AfterFunc(m.cfg.CheckTimeout, cancel)
	defer t.Stop()
	go func() {
		select {
		case <-m.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	start := m.now()
	l, err := m.check.PollLoad(ctx, e.Member)
	now := m.now()
	if err == nil {
		m.bal.Report(e, now, l)
	}
	if probing {
		m.bal.ProbeResult(e, now, err == nil)
		return
	}
	o := balance.Success
	if err != nil {
		o = balance.Failure
	}
	m.bal.Acquire(e)
	m.bal.Done(e, now, time.Duration(now-start), o)
}

// publish builds a view from the detector's current pick set and logs
// what changed.
func (m *Monitor) publish() {
	snap := m.bal.Snapshot()
	v := &View{Panic: snap.Panic}
	set := make(map[string]bool, len(snap.Endpoints))
	for _, e := range snap.Endpoints {
		a := m.addrs[e.Member.URL]
		set[e.Member.URL] = true
		if a.Is4() {
			v.V4 = append(v.V4, a)
		} else {
			v.V6 = append(v.V6, a)
		}
	}
	m.view.Store(v)
	if m.lastSet != nil {
		if v.Panic != m.lastPanic {
			if v.Panic {
				m.cfg.Logf("panic mode: no member is healthy; answering all %d", len(snap.Endpoints))
			} else {
				m.cfg.Logf("panic mode over: answering %d healthy members", len(snap.Endpoints))
			}
		}
		if !v.Panic && !m.lastPanic {
			for _, e := range m.bal.Endpoints() {
				u := e.Member.URL
				switch {
				case m.lastSet[u] && !set[u]:
					m.cfg.Logf("member %s left out: unhealthy or draining", u)
				case !m.lastSet[u] && set[u]:
					m.cfg.Logf("member %s answered again", u)
				}
			}
		}
	}
	m.lastPanic, m.lastSet = v.Panic, set
}
