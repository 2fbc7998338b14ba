package failsuite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/smarthttp"
	"github.com/smartclient/smartclient/testbed"
)

// Mode is the client the load goes through.
type Mode string

const (
	// Library: a director and smarthttp.Transport inside the load
	// generator's own process.
	Library Mode = "library"
	// Proxy: a `smartclient proxy` process on the client host, the load
	// generator talking plain HTTP to it.
	Proxy Mode = "proxy"
)

// Timing is the schedule of one run: warm-up, then before, the fault, and
// after. A scenario whose fault ends by itself (the rolling restart) takes
// as long as it takes instead of Fault.
type Timing struct {
	Warmup time.Duration // default 500ms: the director learns latencies
	Before time.Duration // default 1s
	Fault  time.Duration // default 2s: from injection to heal
	After  time.Duration // default 2s
	Margin time.Duration // default 250ms: widens the gap window (see Analyze)
}

func (t Timing) withDefaults() Timing {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&t.Warmup, 500*time.Millisecond)
	def(&t.Before, time.Second)
	def(&t.Fault, 2*time.Second)
	def(&t.After, 2*time.Second)
	def(&t.Margin, 250*time.Millisecond)
	return t
}

// Member is how each host's `smartclient member` runs.
type Member struct {
	Port        int           // default 8080
	Capacity    int           // default 32
	ServiceTime time.Duration // mean; default 2ms
	ServiceDist string        // "fixed" or "exp"; default "exp"
	BodyBytes   int           // default 1024
}

func (m Member) withDefaults() Member {
	if m.Port == 0 {
		m.Port = 8080
	}
	if m.Capacity == 0 {
		m.Capacity = 32
	}
	if m.ServiceTime == 0 {
		m.ServiceTime = 2 * time.Millisecond
	}
	if m.ServiceDist == "" {
		m.ServiceDist = "exp"
	}
	if m.BodyBytes == 0 {
		m.BodyBytes = 1024
	}
	return m
}

// Config is one run of the suite.
type Config struct {
	// Binary is a built `smartclient` (members and the proxy). Required.
	Binary string
	// Bed is the testbed; its hosts each run one member. Required, at
	// least 2 hosts (the suite is designed for 4).
	Bed *testbed.Bed
	// Member configures the members.
	Member Member
	// Load is the offered load.
	Load LoadSpec
	// Timing is each run's schedule.
	Timing Timing
	// Modes to run; default both, library first.
	Modes []Mode
	// Scenarios to run, by name; default all (see Scenarios).
	Scenarios []string
	// Director is the library's director configuration; zero means Tuned().
	Director *director.Config
	// ProxyFlags are the proxy's flags besides --listen and --member;
	// nil means TunedProxyFlags().
	ProxyFlags []string
	// Out receives one contract line per run (see Report.Line).
	Out io.Writer
	// Log receives progress; default io.Discard.
	Log io.Writer
}

// Validate reports the first field out of range.
func (c Config) Validate() error {
	switch {
	case c.Binary == "":
		return errors.New("failsuite: Config.Binary is empty")
	case c.Bed == nil:
		return errors.New("failsuite: Config.Bed is nil")
	}
	if err := c.Load.Validate(); err != nil {
		return err
	}
	t := c.Timing
	for _, d := range []time.Duration{t.Warmup, t.Before, t.Fault, t.After, t.Margin} {
		if d < 0 {
			return fmt.Errorf("failsuite: timing %+v: durations must be >= 0", t)
		}
	}
	m := c.Member
	switch {
	case m.Port < 0 || m.Port > 65535:
		return fmt.Errorf("failsuite: member port %d: must be in 0..65535", m.Port)
	case m.Capacity < 0 || m.BodyBytes < 0 || m.ServiceTime < 0:
		return fmt.Errorf("failsuite: member %+v: capacity, body bytes and service time must be >= 0", m)
	case m.ServiceDist != "" && m.ServiceDist != "fixed" && m.ServiceDist != "exp":
		return fmt.Errorf("failsuite: member service distribution %q: want fixed or exp", m.ServiceDist)
	}
	for _, md := range c.Modes {
		if md != Library && md != Proxy {
			return fmt.Errorf("failsuite: mode %q: want %s or %s", md, Library, Proxy)
		}
	}
	_, err := pick(c.Scenarios)
	return err
}

// Probe path of `smartclient member`: cheap, and answered under the load
// reporting middleware so that polls carry the load record.
const healthPath = "/healthz"

// Tuned is the library director the suite measures:
//   - p2c, up to 3 attempts;
//   - idempotent requests hedged at the 95th percentile of recent latency:
//     the fast path past a silent member;
//   - an attempt that has not answered in 1 s moves on (a silent member
//     whose hedge was refused). Longer than it could be on purpose: it rides
//     out stalls of a loaded machine instead of turning them into retries
//     that empty the budget;
//   - members ejected after 3 failures in a row for 0.5 s, doubling up to
//     1 s, and readmitted only after a successful probe, so a healed member
//     is back within about a second and a dead one costs a probe a second;
//   - each member's load polled every 500 ms, which is also how a drained
//     member that restarted is noticed.
func Tuned() director.Config {
	return director.Config{
		Policy:         "p2c",
		MaxAttempts:    3,
		AttemptTimeout: time.Second,
		Hedge:          director.HedgeConfig{Enabled: true, Quantile: 0.95, MinDelay: 2 * time.Millisecond, MinSamples: 50, MaxHedges: 1},
		Health:         balance.HealthConfig{ConsecutiveFailures: 3, BaseEjection: 500 * time.Millisecond, MaxEjection: time.Second},
		Prober:         &smarthttp.Prober{Path: healthPath},
		ProbeTimeout:   200 * time.Millisecond,
		Poller:         &smarthttp.LoadPoller{Path: healthPath},
		PollInterval:   500 * time.Millisecond,
	}
}

// TunedProxyFlags are Tuned as proxy flags. The hedge's MinDelay and
// MinSamples have no flags and keep the director's defaults (1ms, 50).
func TunedProxyFlags() []string {
	return []string{"--policy", "p2c", "--max-attempts", "3", "--attempt-timeout", "1s",
		"--hedge", "--hedge-quantile", "0.95", "--eject-base", "500ms", "--eject-max", "1s",
		"--probe-path", healthPath, "--probe-timeout", "200ms",
		"--poll-path", healthPath, "--poll-interval", "500ms"}
}

// Result is one run: its report and what the plot needs.
type Result struct {
	Mode     Mode
	Scenario Scenario
	Report   Report
	Records  []Record
	Members  []string // names Records' Member indexes
	Phases   Phases
}

// Run runs every (mode, scenario) pair in turn on cfg.Bed and returns
// their results. A run that could not be carried out (a fault that could
// not be injected, a proxy that would not start) is an error in the
// returned list; the other runs go on. Run leaves the members running; the
// caller's Bed.Close removes them and heals any fault left.
func Run(ctx context.Context, cfg Config) ([]Result, []error) {
	if err := cfg.Validate(); err != nil {
		return nil, []error{err}
	}
	cfg.Load = cfg.Load.withDefaults()
	cfg.Timing = cfg.Timing.withDefaults()
	cfg.Member = cfg.Member.withDefaults()
	if cfg.Modes == nil {
		cfg.Modes = []Mode{Library, Proxy}
	}
	if cfg.Director == nil {
		d := Tuned()
		cfg.Director = &d
	}
	if cfg.ProxyFlags == nil {
		cfg.ProxyFlags = TunedProxyFlags()
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	scs, err := pick(cfg.Scenarios)
	if err != nil {
		return nil, []error{err}
	}
	c := &cluster{cfg: cfg, hosts: cfg.Bed.Hosts()}
	if len(c.hosts) < 2 {
		return nil, []error{fmt.Errorf("failsuite: %d hosts; need at least 2", len(c.hosts))}
	}
	if err := c.startAll(ctx); err != nil {
		return nil, []error{err}
	}
	var (
		results []Result
		errs    []error
	)
	for _, mode := range cfg.Modes {
		for _, sc := range scs {
			if ctx.Err() != nil {
				return results, append(errs, ctx.Err())
			}
			r, err := c.run(ctx, mode, sc)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s/%s: %w", mode, sc.Name, err))
				fmt.Fprintf(cfg.Log, "%s/%s: %v\n", mode, sc.Name, err)
				continue
			}
			fmt.Fprintln(cfg.Out, r.Report.Line())
			results = append(results, r)
		}
	}
	return results, errs
}

// cluster is the members on the bed and what the runs did to them.
type cluster struct {
	cfg     Config
	hosts   []*testbed.Host
	procs   []*testbed.Proc
	stopped []bool // SIGSTOPped and not yet continued
	logs    []*tailBuffer
	slow    *testbed.Link // the slow scenario's link proxy, while it runs
}

func (c *cluster) url(i int) string {
	return "http://" + netip.AddrPortFrom(c.hosts[i].Addr, uint16(c.cfg.Member.Port)).String()
}

func (c *cluster) name(i int) string { return "h" + strconv.Itoa(i+1) }

func (c *cluster) startAll(ctx context.Context) error {
	n := len(c.hosts)
	c.procs, c.stopped, c.logs = make([]*testbed.Proc, n), make([]bool, n), make([]*tailBuffer, n)
	for i := range c.hosts {
		if err := c.start(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// start runs member i and waits until it accepts connections.
func (c *cluster) start(ctx context.Context, i int) error {
	m := c.cfg.Member
	if c.logs[i] == nil {
		c.logs[i] = &tailBuffer{max: 16 << 10}
	}
	h := c.hosts[i]
	p, err := h.Start(ctx, testbed.Cmd{
		Path: c.cfg.Binary,
		Args: []string{"member",
			"--listen", netip.AddrPortFrom(h.Addr, uint16(m.Port)).String(),
			"--name", c.name(i),
			"--capacity", strconv.Itoa(m.Capacity),
			"--service-time", m.ServiceTime.String(),
			"--service-dist", m.ServiceDist,
			"--body-bytes", strconv.Itoa(m.BodyBytes),
		},
		// One core's worth of threads per member: four members and the
		// client share the machine.
		Env:    append(os.Environ(), "GOMAXPROCS=1"),
		Stdout: c.logs[i],
		Stderr: c.logs[i],
	})
	if err != nil {
		return fmt.Errorf("starting member %s: %w", c.name(i), err)
	}
	c.procs[i], c.stopped[i] = p, false
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := h.WaitTCP(wctx, m.Port); err != nil {
		return fmt.Errorf("member %s not listening: %w; its output: %s", c.name(i), err, c.logs[i])
	}
	return nil
}

// ensure brings every member back to health after a run: a stopped member
// continued, an exited one restarted, and each answering its health check.
func (c *cluster) ensure(ctx context.Context) error {
	for i, p := range c.procs {
		if c.stopped[i] {
			if err := p.Cont(); err != nil {
				return err
			}
			c.stopped[i] = false
		}
		select {
		case <-p.Exited():
			if err := c.start(ctx, i); err != nil {
				return err
			}
		default:
		}
	}
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	for i := range c.procs {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := client.Get(c.url(i) + healthPath)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("member %s unhealthy after a run: %v", c.name(i), err)
			}
			if err := sleepCtx(ctx, 20*time.Millisecond); err != nil { // polling, with a deadline
				return err
			}
		}
	}
	return nil
}

// client is the load generator's view of the service in one mode.
type client struct {
	target Target
	counts func(context.Context) (Counts, error) // nil: count from records
	polls  func() int64                          // nil: unknown
	close  func() error
}

func (c *cluster) client(ctx context.Context, mode Mode, urls []string) (*client, error) {
	switch mode {
	case Library:
		ms := make([]balance.Member, len(urls))
		for i, u := range urls {
			ms[i] = balance.Member{URL: u}
		}
		d, err := director.New(*c.cfg.Director, ms)
		if err != nil {
			return nil, err
		}
		hc, base := NewLibraryClient(d)
		return &client{
			target: &HTTPTarget{Client: hc, URL: "http://service/"},
			polls:  func() int64 { return int64(d.Stats().Polls) },
			close: func() error {
				d.Close()
				base.CloseIdleConnections()
				return nil
			},
		}, nil
	case Proxy:
		p, err := startProxy(ctx, c.cfg.Binary, c.cfg.ProxyFlags, urls)
		if err != nil {
			return nil, err
		}
		return &client{
			target: &HTTPTarget{Client: p.client, URL: p.url + "/"},
			counts: p.counts,
			close:  p.stop,
		}, nil
	}
	return nil, fmt.Errorf("failsuite: unknown mode %q", mode)
}

// run is one scenario in one mode.
func (c *cluster) run(ctx context.Context, mode Mode, sc Scenario) (Result, error) {
	tm, load := c.cfg.Timing, c.cfg.Load
	if err := c.ensure(ctx); err != nil {
		return Result{}, err
	}
	// The victim is the member that served most requests just before the
	// fault — the client's primary server, as in the paper's Figure 8 — so
	// that the fault hits traffic; a scenario that reroutes the victim
	// before the load starts uses the first member.
	victim := 0
	urls := make([]string, len(c.hosts))
	for i := range urls {
		urls[i] = c.url(i)
	}
	var undo func() error
	if sc.setup != nil {
		u, cleanup, err := sc.setup(ctx, c, victim)
		if err != nil {
			return Result{}, fmt.Errorf("setup: %w", err)
		}
		urls[victim], undo = u, cleanup
	}
	defer func() {
		if undo != nil {
			undo()
		}
	}()
	cl, err := c.client(ctx, mode, urls)
	if err != nil {
		return Result{}, err
	}
	closed := false
	defer func() {
		if !closed {
			cl.close()
		}
	}()
	fmt.Fprintf(c.cfg.Log, "%s/%s: load %.0f/s on %v\n", mode, sc.Name, load.Rate, urls)

	origin := time.Now()
	rec := NewRecorder(origin, int(load.Rate*120)+1000)
	stop := make(chan struct{})
	ended := make(chan time.Time, 1)
	tally := &tally{Target: cl.target, n: map[string]int{}}
	go func() { ended <- Offer(ctx, tally, rec, load, origin, stop) }()
	stopLoad := func() time.Duration {
		select {
		case <-stop:
		default:
			close(stop)
		}
		return rec.Since(<-ended)
	}
	failRun := func(err error) (Result, error) {
		stopLoad()
		return Result{}, err
	}
	counts := func() (Counts, error) {
		if cl.counts == nil {
			return Counts{}, nil
		}
		return cl.counts(ctx)
	}

	var ph Phases
	ph.Margin = tm.Margin
	if err := sleepUntil(ctx, origin.Add(tm.Warmup)); err != nil {
		return failRun(err)
	}
	c0, err := counts()
	if err != nil {
		return failRun(err)
	}
	polls := func() int64 {
		if cl.polls == nil {
			return -1
		}
		return cl.polls()
	}
	p0 := polls()
	ph.Begin = rec.Since(time.Now())
	tally.reset()
	if err := sleepUntil(ctx, origin.Add(tm.Warmup+tm.Before)); err != nil {
		return failRun(err)
	}
	c1, err := counts()
	if err != nil {
		return failRun(err)
	}
	if sc.setup == nil {
		victim = c.busiest(tally.reset())
	}
	fmt.Fprintf(c.cfg.Log, "%s/%s: fault on %s\n", mode, sc.Name, c.name(victim))
	ph.FaultStart = rec.Since(time.Now())
	heal, err := sc.inject(ctx, c, victim)
	if err != nil {
		return failRun(fmt.Errorf("inject: %w", err))
	}
	if heal != nil {
		if err := sleepUntil(ctx, origin.Add(ph.FaultStart+tm.Fault)); err != nil {
			heal(ctx)
			return failRun(err)
		}
		if err := heal(ctx); err != nil {
			return failRun(fmt.Errorf("heal: %w", err))
		}
	}
	ph.FaultEnd = rec.Since(time.Now())
	c2, err := counts()
	if err != nil {
		return failRun(err)
	}
	if err := sleepUntil(ctx, origin.Add(ph.FaultEnd+tm.After)); err != nil {
		return failRun(err)
	}
	ph.End = stopLoad()
	p3 := polls()
	c3, err := counts()
	if err != nil {
		return Result{}, err
	}
	closed = true
	if err := cl.close(); err != nil {
		return Result{}, err
	}
	if n := rec.Overflow(); n > 0 {
		return Result{}, fmt.Errorf("recorder overflowed by %d requests", n)
	}
	in := Input{
		Scenario:  string(mode) + "/" + sc.Name,
		Records:   rec.Records(),
		Members:   rec.Members(),
		Phases:    ph,
		GapTarget: sc.GapTarget,
		Errors:    rec.Errors(),
		Polls:     -1,
	}
	if sc.inject != nil && !sc.allMembers {
		in.Victim = c.name(victim)
	}
	if p0 >= 0 {
		in.Polls = p3 - p0
	}
	if cl.counts != nil {
		in.Whole = Counts{Requests: c3.Requests - c0.Requests, Attempts: c3.Attempts - c0.Attempts}
		in.During = Counts{Requests: c2.Requests - c1.Requests, Attempts: c2.Attempts - c1.Attempts}
	}
	rep, err := Analyze(in)
	if err != nil {
		return Result{}, err
	}
	return Result{Mode: mode, Scenario: sc, Report: rep, Records: in.Records, Members: in.Members, Phases: ph}, nil
}

// tally counts the replies of each member, to find the busiest.
type tally struct {
	Target
	mu sync.Mutex
	n  map[string]int
}

func (t *tally) Do(ctx context.Context) (string, int, error) {
	m, a, err := t.Target.Do(ctx)
	if err == nil {
		t.mu.Lock()
		t.n[m]++
		t.mu.Unlock()
	}
	return m, a, err
}

// reset returns the counts so far and starts again.
func (t *tally) reset() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.n
	t.n = map[string]int{}
	return n
}

// busiest returns the member with the most replies in n.
func (c *cluster) busiest(n map[string]int) int {
	best := 0
	for i := range c.hosts {
		if n[c.name(i)] > n[c.name(best)] {
			best = i
		}
	}
	return best
}

// sleepUntil waits for a point in the run's schedule (not for an event).
func sleepUntil(ctx context.Context, t time.Time) error { return sleepCtx(ctx, time.Until(t)) }

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// raceEnabled is set by race.go under the race detector.
var raceEnabled bool

// NewResults wraps reports for results.json.
func NewResults(started time.Time, load LoadSpec, rs []Result) Results {
	out := Results{
		Started:   started.UTC(),
		Seconds:   time.Since(started).Seconds(),
		GoVersion: runtime.Version(),
		CPUs:      runtime.NumCPU(),
		Race:      raceEnabled,
		Load:      load.withDefaults(),
	}
	seen := map[string]bool{}
	for _, r := range rs {
		out.Reports = append(out.Reports, r.Report)
		if sc := r.Scenario; !seen[sc.Name] {
			seen[sc.Name] = true
			out.Faults = append(out.Faults, FaultInfo{Scenario: sc.Name, Mechanism: sc.Mechanism, GapTargetMS: ms(sc.GapTarget)})
		}
	}
	return out
}
