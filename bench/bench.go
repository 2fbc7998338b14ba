// Package bench owns the side-by-side benchmark suite: it starts members
// with controlled behaviour (capped concurrency that queues, heavy-tailed
// service times, a 10× slower member, a member that crashes) in a separate
// process, drives the same open-loop load through every contender in turn —
// the director as a library for each policy, `smartclient proxy`, HAProxy,
// nginx, DNS round robin and a direct connection — and reports throughput
// against capacity, latency quantiles, the CPU spent outside the members and
// errors, as markdown tables, JSON and PNG plots. It also redoes the seed
// paper's Figure 6 (aggregate bandwidth from 1, 2 and 4 bandwidth-capped
// servers as clients grow) with a range-request downloader.
//
// Everything runs on loopback: members on 127.0.0.2, .3, … so that DNS can
// name them. Every process the suite starts is in its own process group,
// dies with the suite (Pdeathsig) and is killed by its id when its run ends.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is one run of the suite. The zero value of each field means the
// default beside it; Self is required.
type Config struct {
	// Quick runs every scenario and contender with short windows: a check
	// that everything produces numbers (under 2 minutes), not a
	// measurement.
	Quick bool
	// Out is the directory for results.json, report.md and the PNG plots;
	// created if missing. "" writes no files.
	Out string
	// Self is the command line of a `smartclient` binary (with any leading
	// arguments): the suite runs Self+["proxy", …] for smartclient-proxy
	// and Self+["bench", "member", …] for the member process.
	Self []string
	// SelfEnv is added to Self's environment.
	SelfEnv []string
	// Contenders limits the run to these names (see ContenderNames); nil
	// means all.
	Contenders []string
	// Scenarios limits the run to these names (see Scenarios, and
	// ScenarioFigure6); nil means all.
	Scenarios []string
	// Seed seeds the members' service times; the same seed gives every
	// contender the same sequence. Default 1.
	Seed uint64
	// Progress receives a line per run; nil means none.
	Progress io.Writer
	// WindowStarted, if set, is called as each run's counted window
	// begins (after setup and warm-up), from the load generator's
	// goroutine; it must not block. Tests use it to act mid-run.
	WindowStarted func(scenario, contender string)
	// HAProxy and Nginx are the programs to run. Default "haproxy" and
	// "nginx" on PATH (or in /usr/sbin).
	HAProxy, Nginx string
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if len(c.Self) == 0 {
		return errors.New("bench: Self: the smartclient command is required")
	}
	known := ContenderNames()
	for _, n := range c.Contenders {
		if !slices.Contains(known, n) {
			return fmt.Errorf("bench: unknown contender %q; want one of %s", n, strings.Join(known, ", "))
		}
	}
	var sn []string
	for _, s := range Scenarios(false) {
		sn = append(sn, s.Name)
	}
	sn = append(sn, ScenarioFigure6)
	for _, n := range c.Scenarios {
		if !slices.Contains(sn, n) {
			return fmt.Errorf("bench: unknown scenario %q; want one of %s", n, strings.Join(sn, ", "))
		}
	}
	return nil
}

// Result is one contender in one scenario.
type Result struct {
	Scenario  string `json:"scenario"`
	Contender string `json:"contender"`
	// Status is "ok", or why there are no (or partial) numbers: the
	// contender did not start, or a process of it died during the run.
	Status string `json:"status"`

	Offered   int `json:"offered"`
	Completed int `json:"completed"` // successful within Timeout of scheduled start
	Failed    int `json:"failed"`
	// CompletedFrac is Completed/Offered.
	CompletedFrac float64 `json:"completed_over_offered"`
	// CapacityFrac is completed requests per second of window over the
	// capacity of the members the contender was offered to (direct: one
	// member). 0 when the members are uncapped.
	CapacityFrac float64 `json:"completed_over_capacity"`
	// ReqPerSec is completed requests per second of window.
	ReqPerSec float64 `json:"req_per_sec"`

	// Quantiles of the time from a request's scheduled start to its
	// successful reply, a failed request counting as never (null: more
	// than 1-q of the requests failed).
	P50Ms  *float64 `json:"p50_ms"`
	P99Ms  *float64 `json:"p99_ms"`
	P999Ms *float64 `json:"p999_ms"`
	// OkP99Ms is the p99 of successful requests alone.
	OkP99Ms *float64        `json:"ok_p99_ms"`
	Curve   []quantilePoint `json:"quantiles"`

	// CPU during the window and the drain after it: the suite's own
	// process (load generator and client path), the contender's processes
	// (the extra hop), and the members (not counted as overhead).
	ClientCPUMs float64 `json:"client_cpu_ms"`
	HopCPUMs    float64 `json:"hop_cpu_ms"`
	MemberCPUMs float64 `json:"member_cpu_ms"`
	// CPUPerReqUs is (client + hop) CPU per offered request.
	CPUPerReqUs float64 `json:"cpu_per_req_us"`

	Errors map[string]int `json:"errors,omitempty"`
	// FailedBySecond counts failed requests by the second of the window
	// they were scheduled in: a cold start shows at the front, a herd or
	// a growing queue later.
	FailedBySecond []int   `json:"failed_by_second,omitempty"`
	Seconds        float64 `json:"seconds"` // wall time of the whole run, setup included
	// LoadAvg is the machine's 1-minute load average when the run ended:
	// other work on the machine shows up here, and in the latencies.
	LoadAvg float64 `json:"loadavg"`
}

// Report is a whole run of the suite.
type Report struct {
	Quick     bool              `json:"quick"`
	Started   time.Time         `json:"started"`
	Seconds   float64           `json:"seconds"`
	Scenarios []ScenarioInfo    `json:"scenarios"`
	Results   []Result          `json:"results"`
	Figure6   *Figure6Result    `json:"figure6,omitempty"`
	Desc      map[string]string `json:"contenders"`
	Files     []string          `json:"files,omitempty"`
	byKey     map[[2]string]*Result
}

// ScenarioInfo describes a scenario in the report.
type ScenarioInfo struct {
	Name     string  `json:"name"`
	Title    string  `json:"title"`
	Rate     float64 `json:"rate"`
	Capacity float64 `json:"capacity"`
	WindowS  float64 `json:"window_s"`
	Clients  int     `json:"clients"`
}

func (r *Report) get(scenario, contender string) *Result {
	if r.byKey == nil {
		r.byKey = map[[2]string]*Result{}
		for i := range r.Results {
			x := &r.Results[i]
			r.byKey[[2]string{x.Scenario, x.Contender}] = x
		}
	}
	return r.byKey[[2]string{scenario, contender}]
}

// Run runs the suite and returns its report; with cfg.Out set it also
// writes results.json, report.md and the plots there. It returns early,
// with what it has, when ctx ends; every process it started is gone when
// it returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	rep := &Report{Quick: cfg.Quick, Started: time.Now(), Desc: map[string]string{}}
	cs := contenders()
	for _, c := range cs {
		rep.Desc[c.name] = c.desc
	}
	wantC := func(n string) bool { return len(cfg.Contenders) == 0 || slices.Contains(cfg.Contenders, n) }
	wantS := func(n string) bool { return len(cfg.Scenarios) == 0 || slices.Contains(cfg.Scenarios, n) }
	for _, sc := range Scenarios(cfg.Quick) {
		if !wantS(sc.Name) {
			continue
		}
		rep.Scenarios = append(rep.Scenarios, ScenarioInfo{Name: sc.Name, Title: sc.Title, Rate: sc.Rate,
			Capacity: sc.Capacity(), WindowS: sc.Window.Seconds(), Clients: sc.Clients})
		for _, c := range cs {
			if !wantC(c.name) {
				continue
			}
			if ctx.Err() != nil {
				break
			}
			r := runOne(ctx, &cfg, sc, c)
			rep.Results = append(rep.Results, r)
			progress(&cfg, "%-15s %-25s %s", sc.Name, c.name, r.brief())
		}
	}
	if wantS(ScenarioFigure6) && ctx.Err() == nil {
		f, err := runFigure6(ctx, &cfg)
		if err != nil {
			progress(&cfg, "figure6: %v", err)
			f = &Figure6Result{Status: err.Error()}
		}
		rep.Figure6 = f
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	rep.byKey = nil
	if cfg.Out != "" {
		files, err := rep.write(cfg.Out)
		rep.Files = files
		if err != nil {
			return rep, err
		}
	}
	return rep, ctx.Err()
}

func progress(cfg *Config, format string, args ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "bench: "+format+"\n", args...)
	}
}

// runOne measures contender c in scenario sc, against a fresh member
// process. It always cleans up what it started.
func runOne(ctx context.Context, cfg *Config, sc Scenario, c contender) (res Result) {
	begin := time.Now()
	res = Result{Scenario: sc.Name, Contender: c.name, Status: "ok"}
	defer func() {
		res.Seconds = time.Since(begin).Seconds()
		res.LoadAvg = loadAvg()
	}()

	dir, err := os.MkdirTemp("", "smartclient-bench-")
	if err != nil {
		res.Status = "no temp dir: " + err.Error()
		return res
	}
	defer os.RemoveAll(dir)
	ms, err := startMembers(ctx, cfg, sc.Members, cfg.Seed)
	if err != nil {
		res.Status = "members did not start: " + oneLine(err.Error())
		return res
	}
	defer ms.stop()
	t, err := c.start(ctx, &runEnv{cfg: cfg, members: ms, dir: dir}, sc.Clients)
	if err != nil {
		res.Status = "did not start: " + oneLine(err.Error())
		return res
	}
	defer t.stop()

	capacity := sc.Capacity()
	rate := sc.Rate
	if t.direct {
		rate /= float64(len(sc.Members))
		capacity = sc.Members[0].Capacity()
	}
	var c0, h0, m0 time.Duration
	mark := func() {
		c0, h0, m0 = selfCPU(), t.hopCPU(), ms.cpu()
		if cfg.WindowStarted != nil {
			cfg.WindowStarted(sc.Name, c.name)
		}
	}
	do := getter(t.clients, t.base+workPath)
	var samples []sample
	window := sc.Window
	if sc.Rate > 0 {
		plan := openLoopPlan{rate: rate, warm: sc.Warm, window: sc.Window, timeout: sc.Timeout,
			clients: len(t.clients), onWindowStart: mark}
		if sc.CrashAt > 0 && !t.direct {
			plan.events = []event{{at: sc.CrashAt, fn: func() { ms.kill(sc.Crash) }}}
		}
		samples = openLoop(ctx, plan, do)
	} else {
		samples, window = closedLoop(ctx, closedLoopPlan{workers: sc.Workers, warm: sc.Warm, window: sc.Window,
			timeout: sc.Timeout, clients: len(t.clients), onWindowStart: mark}, do)
	}
	cpuC, cpuH, cpuM := selfCPU()-c0, t.hopCPU()-h0, ms.cpu()-m0
	if err := t.alive(); err != nil {
		res.Status = "died during the run: " + oneLine(err.Error())
	}
	if ctx.Err() != nil {
		res.Status = "interrupted"
	}
	s := summarize(samples)
	if s.failed > 0 && len(samples) > 0 && sc.Rate > 0 { // open loop: samples are in schedule order
		per := float64(len(samples)) / window.Seconds() // requests per second of window
		res.FailedBySecond = make([]int, int(math.Ceil(window.Seconds())))
		for i, x := range samples {
			if x.err != nil {
				res.FailedBySecond[min(int(float64(i)/per), len(res.FailedBySecond)-1)]++
			}
		}
	}
	res.Offered, res.Completed, res.Failed = s.offered, s.ok, s.failed
	if s.offered > 0 {
		res.CompletedFrac = float64(s.ok) / float64(s.offered)
		res.CPUPerReqUs = float64(cpuC+cpuH) / 1e3 / float64(s.offered)
	}
	if window > 0 {
		res.ReqPerSec = float64(s.ok) / window.Seconds()
	}
	if capacity > 0 {
		res.CapacityFrac = res.ReqPerSec / capacity
	}
	res.P50Ms, res.P99Ms, res.P999Ms, res.OkP99Ms = msPtr(s.p50), msPtr(s.p99), msPtr(s.p999), msPtr(s.okP99)
	res.Curve = s.curve
	res.ClientCPUMs, res.HopCPUMs, res.MemberCPUMs = ms64(cpuC), ms64(cpuH), ms64(cpuM)
	if len(s.errs) > 0 {
		res.Errors = s.errs
	}
	return res
}

func msPtr(d time.Duration) *float64 {
	if d == never {
		return nil
	}
	v := float64(d) / 1e6
	return &v
}

func ms64(d time.Duration) float64 { return float64(d) / 1e6 }

// brief is a one-line summary for progress output.
func (r Result) brief() string {
	if r.Status != "ok" && r.Offered == 0 {
		return r.Status
	}
	s := fmt.Sprintf("done %d/%d p50 %s p99 %s p999 %s cpu %.0fµs/req", r.Completed, r.Offered,
		fmtMs(r.P50Ms), fmtMs(r.P99Ms), fmtMs(r.P999Ms), r.CPUPerReqUs)
	if r.Status != "ok" {
		s += " (" + r.Status + ")"
	}
	return s
}

// loadAvg is the 1-minute load average, or 0 if unknown.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
