package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/cert"
	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/gossip"
	"github.com/smartclient/smartclient/wire"
)

// Paths the agent serves.
const (
	LoadPath    = "/load"    // GET: the Report, and the wire load in the Smartclient-Load header
	MembersPath = "/members" // GET: the wire members record (with gossip)
	HealthPath  = "/healthz" // GET: the agent's own liveness
	DrainPath   = "/drain"   // POST, from loopback only: drain, then exit
)

// Defaults of Config.
const (
	DefaultInterval   = time.Second
	DefaultDrainGrace = 3 * time.Second
	maxCheckTimeout   = time.Second
)

// Config configures an Agent. The zero value of each field means the
// documented default; Target is required. Flags of `smartclient agent` fill
// it.
type Config struct {
	// Target is the server's host:port, e.g. 127.0.0.1:22. Required.
	Target string
	// URL is the member URL clients use to reach the target, handed out in
	// reports and gossip. Default "http://" + Target.
	URL string
	// Service labels the service, as service://NAME. Optional, but
	// required with Gossip: NAME is the gossip service name.
	Service string
	// Capacity is how many connections the target serves at once; 0 means
	// unknown. Range 0..wire.MaxInFlight.
	Capacity int
	// UtilFrom selects the utilisation source; see the package
	// documentation. UtilConns needs Capacity, UtilCmd needs LoadCmd.
	UtilFrom UtilSource
	// Interval is the pause between rounds of sampling, checking and
	// running the load command (each has its own round). Default 1s.
	Interval time.Duration
	// CheckTimeout bounds each health check. Default: Interval, at most 1s.
	CheckTimeout time.Duration
	// CheckHTTP, if set, is the path of an HTTP GET health check on the
	// target (2xx or 3xx passes); otherwise the check is a TCP connect.
	CheckHTTP string
	// LoadCmd, if set, is a command line run with /bin/sh -c every
	// Interval; the first line of its output is the report's cmd_value.
	LoadCmd string
	// CmdTimeout bounds each run of LoadCmd. Default: Interval.
	CmdTimeout time.Duration
	// DrainGrace is how long the agent reports draining before Serve
	// returns, so that directors polling it (or gossiping with it) stop
	// sending work first. Default 3s.
	DrainGrace time.Duration
	// Gossip, if set, makes the agent a gossip member: the agent fills in
	// Service, URL, Load and Now; the rest (BindAddr, BindPort, Loopback,
	// Zone, ...) is the caller's. The member list is then in /load and
	// /members, and the agent is marked draining in gossip while it drains
	// or the target is unhealthy.
	Gossip *gossip.Config
	// Join lists gossip peers (host:port) to join; one answer is enough.
	// Until one answers the agent retries every 5 Intervals.
	Join []string

	// Clock is the time source. Default clock.Real.
	Clock clock.Clock
	// Sampler, Checker and Command replace the adapters that Target,
	// CheckHTTP and LoadCmd would choose (tests inject fakes).
	Sampler Sampler
	Checker Checker
	Command Command
	// Logf receives state changes (healthy/unhealthy, drain, join).
	// Default: discarded.
	Logf func(format string, args ...any)
}

// Validate reports a configuration error, naming the field.
func (c *Config) Validate() error {
	host, port, err := net.SplitHostPort(c.Target)
	if err != nil || host == "" {
		return fmt.Errorf("agent: Target %q: want host:port", c.Target)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("agent: Target %q: port must be 1..65535", c.Target)
	}
	if c.URL != "" {
		if err := checkMemberURL(c.URL); err != nil {
			return fmt.Errorf("agent: URL %q: %v", c.URL, err)
		}
	}
	if c.Service != "" {
		if _, err := cert.ParseName(c.Service); err != nil {
			return fmt.Errorf("agent: Service: %v", err)
		}
	}
	if c.Capacity < 0 || c.Capacity > wire.MaxInFlight {
		return fmt.Errorf("agent: Capacity %d: must be 0..%d", c.Capacity, wire.MaxInFlight)
	}
	if _, err := ParseUtilSource(string(c.UtilFrom)); err != nil {
		return fmt.Errorf("agent: UtilFrom: %v", err)
	}
	if c.UtilFrom == UtilConns && c.Capacity == 0 {
		return errors.New("agent: UtilFrom conns needs a Capacity")
	}
	if c.UtilFrom == UtilCmd && c.LoadCmd == "" && c.Command == nil {
		return errors.New("agent: UtilFrom cmd needs a LoadCmd")
	}
	if c.Interval < 0 || c.CheckTimeout < 0 || c.CmdTimeout < 0 || c.DrainGrace < 0 {
		return errors.New("agent: Interval, CheckTimeout, CmdTimeout and DrainGrace must be >= 0")
	}
	if c.Interval != 0 && c.Interval < 10*time.Millisecond || c.Interval > time.Hour {
		return fmt.Errorf("agent: Interval %v: must be 10ms..1h", c.Interval)
	}
	if c.CheckHTTP != "" && (!strings.HasPrefix(c.CheckHTTP, "/") || strings.ContainsAny(c.CheckHTTP, " \t\r\n#")) {
		return fmt.Errorf("agent: CheckHTTP %q: want a path starting with /", c.CheckHTTP)
	}
	if len(c.Join) > 0 && c.Gossip == nil {
		return errors.New("agent: Join needs Gossip")
	}
	if c.Gossip != nil && c.Service == "" {
		return errors.New("agent: Gossip needs a Service (service://NAME)")
	}
	return nil
}

// checkMemberURL accepts what a wire members record can carry.
func checkMemberURL(s string) error {
	if len(s) > wire.MaxURLLen {
		return fmt.Errorf("longer than %d bytes", wire.MaxURLLen)
	}
	if strings.ContainsAny(s, ";#, \t\r\n") {
		return errors.New("contains one of ';', '#', ',' or white space")
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme == "" || u.Host == "" || u.Scheme != strings.ToLower(u.Scheme) {
		return errors.New("want an absolute URL with a lower-case scheme and a host, e.g. http://10.0.0.1:8080")
	}
	return nil
}

// snapshot is one published report with its encodings, immutable.
type snapshot struct {
	rep     Report
	body    []byte // JSON, newline-terminated
	load    string // wire load record
	members string // wire members record; empty without gossip
}

// Agent samples the machine, checks the target and serves the Report.
// Create it with New, serve it with Serve, stop it with Close (Serve does).
type Agent struct {
	cfg     Config
	rc      ReportConfig
	clk     clock.Clock
	logf    func(string, ...any)
	sampler Sampler
	checker Checker
	command Command

	mu       sync.Mutex // guards the inputs below and publishing
	prev     Sample
	cur      Sample
	check    CheckResult
	checking time.Time // when the running check started; zero if none
	cmd      CmdResult
	draining bool
	healthy  bool // as last published, to log changes
	gossipDr bool // drain state last given to gossip

	snap       atomic.Pointer[snapshot]
	node       *gossip.Node
	gossipAddr string
	ctx        context.Context // ends on Close; stops the rounds
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	drainOnce sync.Once
	drainReq  chan struct{} // closed by Drain
	closeOnce sync.Once
}

// New checks cfg, starts gossip if configured, takes the first sample,
// check and command run (so the first report is a real one; this takes up
// to CheckTimeout), and starts the background rounds. It fails only on a
// bad configuration or a gossip port it cannot bind: a target that is down
// is reported unhealthy.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = min(cfg.Interval, maxCheckTimeout)
	}
	if cfg.CmdTimeout == 0 {
		cfg.CmdTimeout = cfg.Interval
	}
	if cfg.DrainGrace == 0 {
		cfg.DrainGrace = DefaultDrainGrace
	}
	if cfg.URL == "" {
		cfg.URL = "http://" + cfg.Target
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	a := &Agent{
		cfg:      cfg,
		clk:      cfg.Clock,
		logf:     cfg.Logf,
		sampler:  cfg.Sampler,
		checker:  cfg.Checker,
		command:  cfg.Command,
		drainReq: make(chan struct{}),
	}
	if a.logf == nil {
		a.logf = func(string, ...any) {}
	}
	host, portStr, _ := net.SplitHostPort(cfg.Target)
	if a.sampler == nil {
		port, _ := strconv.Atoi(portStr)
		a.sampler = &Host{Port: port, Iface: IfaceFor(lookupIP(host))}
	}
	if a.checker == nil {
		if cfg.CheckHTTP != "" {
			a.checker = HTTPCheck{URL: "http://" + cfg.Target + cfg.CheckHTTP, Path: cfg.CheckHTTP}
		} else {
			a.checker = TCPCheck{Addr: cfg.Target}
		}
	}
	if a.command == nil && cfg.LoadCmd != "" {
		a.command = ShellCommand{Line: cfg.LoadCmd, Timeout: cfg.CmdTimeout}
	}
	a.rc = ReportConfig{
		Target:           cfg.Target,
		URL:              cfg.URL,
		Service:          cfg.Service,
		Check:            a.checker.Kind(),
		Capacity:         cfg.Capacity,
		UtilFrom:         cfg.UtilFrom,
		HasCmd:           a.command != nil,
		MaxCheckRun:      cfg.CheckTimeout + time.Second,
		LatencyFromCheck: cfg.CheckHTTP != "" && cfg.Checker == nil,
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())

	if cfg.Gossip != nil {
		gc := *cfg.Gossip
		name, _ := cert.ParseName(cfg.Service)
		gc.Service = name.Service
		gc.URL = cfg.URL
		gc.Now = a.clk.Now
		gc.Load = func() wire.Load {
			if s := a.snap.Load(); s != nil {
				return s.rep.WireLoad
			}
			return wire.Load{}
		}
		if gc.BindAddr == "" {
			gc.BindAddr = "0.0.0.0"
			if gc.Loopback {
				gc.BindAddr = "127.0.0.1"
			}
		}
		// gossip.Node.Addr reads memberlist's local node without a lock
		// and races with the node's own metadata updates, so the agent
		// picks the port itself and never calls it.
		if gc.BindPort == 0 {
			p, err := freeGossipPort(gc.BindAddr)
			if err != nil {
				a.cancel()
				return nil, fmt.Errorf("agent: gossip: %w", err)
			}
			gc.BindPort = p
		}
		host, port := gc.BindAddr, gc.BindPort
		if gc.AdvertiseAddr != "" {
			host = gc.AdvertiseAddr
		}
		if gc.AdvertisePort != 0 {
			port = gc.AdvertisePort
		}
		a.gossipAddr = net.JoinHostPort(host, strconv.Itoa(port))
		n, err := gossip.Start(gc)
		if err != nil {
			a.cancel()
			return nil, fmt.Errorf("agent: gossip: %w", err)
		}
		a.node = n
	}

	// The first round of each, at once and together.
	var first sync.WaitGroup
	first.Add(2)
	go func() { defer first.Done(); a.checkOnce() }()
	go func() { defer first.Done(); a.sampleOnce() }()
	if a.command != nil {
		first.Add(1)
		go func() { defer first.Done(); a.cmdOnce() }()
	}
	first.Wait()
	a.publish()

	a.start(a.sampleOnce)
	a.start(a.checkOnce)
	if a.command != nil {
		a.start(a.cmdOnce)
	}
	if a.node != nil && len(cfg.Join) > 0 {
		a.wg.Add(1)
		go a.joinLoop()
	}
	return a, nil
}

// freeGossipPort finds a port free for both TCP and UDP on ip, as
// memberlist needs.
func freeGossipPort(ip string) (int, error) {
	var err error
	for range 10 {
		var tl net.Listener
		if tl, err = net.Listen("tcp", net.JoinHostPort(ip, "0")); err != nil {
			continue
		}
		p := tl.Addr().(*net.TCPAddr).Port
		ul, uerr := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(p)))
		tl.Close()
		if err = uerr; err == nil {
			ul.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("no port free for both TCP and UDP on %s: %v", ip, err)
}

// lookupIP resolves the target's host once, to find its interface; a name
// that does not resolve counts all interfaces.
func lookupIP(host string) netip.Addr {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.Addr{}
	}
	return ips[0]
}

// start runs f, then publishes, Interval after each run ends, until Close.
func (a *Agent) start(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for a.wait(a.cfg.Interval) {
			f()
			a.publish()
		}
	}()
}

// wait waits d on the agent's clock; false if the agent closed first.
func (a *Agent) wait(d time.Duration) bool {
	fired := make(chan struct{})
	t := a.clk.AfterFunc(d, func() { close(fired) })
	select {
	case <-fired:
		return true
	case <-a.ctx.Done():
		t.Stop()
		return false
	}
}

func (a *Agent) sampleOnce() {
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.Interval)
	s := a.sampler.Sample(ctx)
	cancel()
	s.Time = a.clk.Now()
	a.mu.Lock()
	a.prev, a.cur = a.cur, s
	a.mu.Unlock()
}

func (a *Agent) checkOnce() {
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.CheckTimeout)
	start := a.clk.Now()
	a.mu.Lock()
	a.checking = start
	a.mu.Unlock()
	err := a.checker.Check(ctx)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // a checker that ignored its deadline
	}
	cancel()
	end := a.clk.Now()
	r := CheckResult{Time: end, Took: end.Sub(start)}
	if err != nil {
		r.Err = err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			r.Err = fmt.Sprintf("no answer within %v: %v", a.cfg.CheckTimeout, err)
		}
	}
	a.mu.Lock()
	a.check, a.checking = r, time.Time{}
	a.mu.Unlock()
}

func (a *Agent) cmdOnce() {
	v, err := a.command.Run(a.ctx)
	r := CmdResult{Time: a.clk.Now(), Value: v}
	if err != nil {
		r.Err = err.Error()
	}
	a.mu.Lock()
	a.cmd = r
	a.mu.Unlock()
}

func (a *Agent) joinLoop() {
	defer a.wg.Done()
	for {
		n, err := a.node.Join(a.cfg.Join)
		if n > 0 {
			a.logf("gossip: joined through %d of %d peers", n, len(a.cfg.Join))
			return
		}
		a.logf("gossip: no peer answered (%v); retrying", err)
		if !a.wait(5 * a.cfg.Interval) {
			return
		}
	}
}

// publish builds a report from the current inputs and makes it the one
// served.
func (a *Agent) publish() {
	var members *wire.Members
	if a.node != nil {
		m := a.node.Members()
		members = &m
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	rep := Build(a.rc, Inputs{
		Now:          a.clk.Now(),
		Prev:         a.prev,
		Cur:          a.cur,
		Check:        a.check,
		CheckStarted: a.checking,
		Cmd:          a.cmd,
		Draining:     a.draining,
		Members:      members,
	})
	body, err := json.Marshal(rep)
	if err != nil {
		// Build never leaves a NaN or an infinity; if it did, say so
		// rather than serve nothing.
		body, _ = json.Marshal(map[string]any{"v": ReportVersion, "address": rep.Address, "url": rep.URL,
			"t": rep.T, "healthy": false, "state": wire.StateDraining.String(), "errors": map[string]string{"json": err.Error()}})
	}
	old := a.snap.Swap(&snapshot{rep: rep, body: append(body, '\n'), load: rep.Load, members: rep.Members})
	if old != nil && old.rep.Healthy != rep.Healthy {
		if rep.Healthy {
			a.logf("target %s is healthy", a.cfg.Target)
		} else {
			a.logf("target %s is unhealthy: %s", a.cfg.Target, rep.Check.Error)
		}
	} else if old == nil && !rep.Healthy {
		a.logf("target %s is unhealthy: %s", a.cfg.Target, rep.Check.Error)
	}
	if a.node != nil {
		if dr := rep.State == wire.StateDraining.String(); dr != a.gossipDr {
			a.gossipDr = dr
			a.node.SetDraining(dr)
		}
	}
}

// Report returns the latest report.
func (a *Agent) Report() Report { return a.snap.Load().rep }

// GossipAddr returns the gossip address (host:port) peers join, or "":
// the advertised address if set, else the bound one.
func (a *Agent) GossipAddr() string { return a.gossipAddr }

// Drain asks the agent to drain: Serve marks it draining, waits
// DrainGrace and returns. It may be called more than once.
func (a *Agent) Drain() {
	a.drainOnce.Do(func() { close(a.drainReq) })
}

// Handler serves LoadPath, MembersPath, HealthPath and DrainPath.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+LoadPath, func(w http.ResponseWriter, r *http.Request) {
		s := a.snap.Load()
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set(wire.LoadHeader, s.load)
		if s.members != "" {
			h.Set(wire.MembersHeader, s.members)
		}
		w.Write(s.body)
	})
	mux.HandleFunc("GET "+MembersPath, func(w http.ResponseWriter, r *http.Request) {
		s := a.snap.Load()
		if s.members == "" {
			http.Error(w, "no gossip: start the agent with --gossip-bind", http.StatusNotFound)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set(wire.MembersHeader, s.members)
		h.Set(wire.LoadHeader, s.load)
		w.Write([]byte(s.members + "\n"))
	})
	mux.HandleFunc("GET "+HealthPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if a.snap.Load().rep.Draining {
			w.Write([]byte("draining\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("POST "+DrainPath, func(w http.ResponseWriter, r *http.Request) {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err != nil || !ap.Addr().Unmap().IsLoopback() {
			http.Error(w, "drain is accepted from loopback only", http.StatusForbidden)
			return
		}
		a.Drain()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "draining; exiting in %v\n", a.cfg.DrainGrace)
	})
	return mux
}

// Serve serves Handler on ln until ctx ends or Drain is called, then
// drains: it reports draining (in /load and gossip) for DrainGrace, leaves
// the gossip cluster, shuts the HTTP server down and closes the agent. It
// returns nil after a drain, or the server's error if serving failed.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		a.Close()
		return err
	case <-ctx.Done():
	case <-a.drainReq:
	}
	a.mu.Lock()
	a.draining = true
	a.mu.Unlock()
	a.publish()
	a.logf("draining: reporting draining for %v, then exiting", a.cfg.DrainGrace)
	graceOver := make(chan struct{})
	a.clk.AfterFunc(a.cfg.DrainGrace, func() { close(graceOver) })
	<-graceOver
	if a.node != nil {
		a.node.Leave(time.Second)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	a.Close()
	return nil
}

// Close stops the background rounds and gossip (without a goodbye; Serve
// says goodbye first). It waits for running rounds, each bounded by its
// timeout, and may be called more than once.
func (a *Agent) Close() {
	a.closeOnce.Do(func() {
		a.cancel()
		a.wg.Wait()
		if a.node != nil {
			a.node.Shutdown()
		}
	})
}
