package agent

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/smartclient/smartclient/wire"
)

// ReportVersion is the version of the JSON report, its "v" field. Like the
// wire records, readers skip fields they do not know, and a new major
// version means an incompatible change.
const ReportVersion = 1

// Keys of Report.Errors: which reading failed or was refused.
const (
	ErrKeyLoad1 = "load1"
	ErrKeyCPU   = "cpu"
	ErrKeyConns = "connections"
	ErrKeyIface = "iface"
	ErrKeyCmd   = "cmd"
	ErrKeyUtil  = "util"
)

// Bounds beyond which a reading is absurd and dropped (or, for connection
// counts, clamped), never passed on.
const (
	MaxLoad1       = 1e6 // a load average above this is a broken reading
	MaxCPUs        = 1 << 16
	MaxBytesPerSec = 1e13 // 80 Tbit/s: more than any interface carries
	MaxCmdValue    = 1e9  // largest value accepted from the load command
)

// UtilSource selects the reading that utilisation is computed from (see
// the package documentation for the formulas).
type UtilSource string

// Utilisation sources. The zero value is UtilAuto.
const (
	UtilAuto  UtilSource = ""      // UtilConns with a capacity, else UtilCPU falling back to UtilLoad
	UtilConns UtilSource = "conns" // connections / Capacity
	UtilCPU   UtilSource = "cpu"   // busy fraction of all CPUs
	UtilLoad  UtilSource = "load"  // load1 / logical CPUs
	UtilCmd   UtilSource = "cmd"   // the load command's value
)

// ParseUtilSource parses a --util-from value; "" and "auto" mean UtilAuto.
func ParseUtilSource(s string) (UtilSource, error) {
	switch u := UtilSource(s); u {
	case UtilAuto, UtilConns, UtilCPU, UtilLoad, UtilCmd:
		return u, nil
	case "auto":
		return UtilAuto, nil
	}
	return "", fmt.Errorf("unknown utilisation source %q: want auto, conns, cpu, load or cmd", s)
}

// CPUTimes are cumulative CPU seconds since boot, summed over all CPUs.
type CPUTimes struct {
	Total float64 // all time, guest time excluded (it is already in user)
	Busy  float64 // Total minus idle and iowait
}

// IfaceBytes are an interface's cumulative byte counters.
type IfaceBytes struct {
	Name   string // interface name, or "all" for the sum of every interface
	Rx, Tx uint64
}

// Sample is one reading of the machine, as a Sampler took it. A reading
// that failed is named in Errs with the reason, and its field is ignored.
type Sample struct {
	Time   time.Time
	Load1  float64 // 1-minute load average
	NumCPU int     // logical CPUs, to normalise Load1
	CPU    CPUTimes
	Conns  int // established TCP connections whose local port is the target's
	Iface  IfaceBytes
	Errs   map[string]string
	// ConnsFrom is how Conns was counted: ConnsFromNetlink or
	// ConnsFromProc; "" when the Sampler does not say.
	ConnsFrom string
}

func (s Sample) ok(key string) bool {
	_, bad := s.Errs[key]
	return !s.Time.IsZero() && !bad
}

// CheckResult is the outcome of one health check of the target.
type CheckResult struct {
	Time time.Time     // when the check ended; zero: no check has ended yet
	Took time.Duration // how long it took
	Err  string        // empty when the target is healthy
}

// CmdResult is the outcome of one run of the load command.
type CmdResult struct {
	Time  time.Time // when the run ended; zero: not run yet
	Value float64
	Err   string // empty when Value is valid
}

// ReportConfig is what Build needs to know about the agent.
type ReportConfig struct {
	Target   string // the server's host:port
	URL      string // the member URL clients use
	Service  string // service label, e.g. service://NAME; optional
	Check    string // how the target is checked, e.g. "tcp" or "http GET /health"
	Capacity int    // connections the target serves at once; 0 = unknown
	UtilFrom UtilSource
	HasCmd   bool // a load command is configured
	// MaxCheckRun is how long a check may run before the target counts as
	// unhealthy whatever the last result said: a safety net for a Checker
	// that ignores its deadline. 0 means no limit.
	MaxCheckRun time.Duration
	// LatencyFromCheck reports the check's duration as the wire record's
	// service time (l): set for HTTP checks, whose round trip on loopback
	// is the server's own time to answer one request.
	LatencyFromCheck bool
}

// Inputs are the readings Build turns into a report.
type Inputs struct {
	Now       time.Time
	Prev, Cur Sample // successive samples; Prev.Time zero when Cur is the first
	Check     CheckResult
	// CheckStarted is when the check now running started; zero when none
	// is running.
	CheckStarted time.Time
	Cmd          CmdResult
	Draining     bool          // the agent is draining (SIGTERM or POST /drain)
	Members      *wire.Members // gossip's member list; nil without gossip
}

// CheckReport is the health check part of a Report.
type CheckReport struct {
	Kind   string  `json:"kind"`            // "tcp" or "http GET PATH"
	T      int64   `json:"t"`               // when the last check ended, Unix ms; 0 = none yet
	TookMs float64 `json:"took_ms"`         // its duration
	Error  string  `json:"error,omitempty"` // why the target is unhealthy
}

// Report is the agent's answer to GET /load. Optional figures are null
// when their reading failed or was refused; Errors then says why.
type Report struct {
	V       int    `json:"v"`                 // ReportVersion
	Address string `json:"address"`           // the target's host:port
	URL     string `json:"url"`               // the member URL clients use
	Service string `json:"service,omitempty"` // the service label
	T       int64  `json:"t"`                 // report time, Unix milliseconds
	Time    string `json:"time"`              // the same, RFC 3339

	Healthy  bool        `json:"healthy"`  // the last health check passed
	Draining bool        `json:"draining"` // the agent was asked to drain
	State    string      `json:"state"`    // wire state: "draining" when draining or unhealthy, else "ok"
	Check    CheckReport `json:"check"`

	Connections int        `json:"connections"` // established TCP connections to the target's port
	InFlight    int        `json:"inflight"`    // wire q: the same as connections
	Capacity    int        `json:"capacity"`    // wire c; 0 = unknown
	Util        float64    `json:"util"`        // wire u
	UtilFrom    UtilSource `json:"util_from"`   // the source u was computed from: conns, cpu, load or cmd
	Load1       *float64   `json:"load1"`       // 1-minute load average
	NumCPU      int        `json:"ncpu"`        // logical CPUs; 0 = unknown
	CPU         *float64   `json:"cpu"`         // percent of all CPUs busy over the last interval
	// ConnectionsFrom is how connections were counted: "netlink"
	// (sock_diag) or "proc" (/proc/net/tcp{,6}, where netlink is
	// refused); absent when the count failed or the sampler does not say.
	ConnectionsFrom string `json:"connections_from,omitempty"`
	// Byte rates of the network interface that carries the target's
	// address, not of the target's port alone: the kernel does not count
	// bytes per port.
	Iface      string   `json:"iface"`
	IfaceRxBps *float64 `json:"iface_rx_bytes_per_sec"`
	IfaceTxBps *float64 `json:"iface_tx_bytes_per_sec"`
	CmdValue   *float64 `json:"cmd_value,omitempty"` // the load command's last value

	Errors map[string]string `json:"errors,omitempty"`

	Load    string `json:"load"`              // the wire load record, as in the Smartclient-Load header
	Members string `json:"members,omitempty"` // the wire members record, with gossip

	// WireLoad is Load parsed, for the HTTP layer and gossip.
	WireLoad wire.Load `json:"-"`
}

// Build turns readings into a report. It is pure: everything it knows is in
// cfg and in.
func Build(cfg ReportConfig, in Inputs) Report {
	r := Report{
		V:        ReportVersion,
		Address:  cfg.Target,
		URL:      cfg.URL,
		Service:  cfg.Service,
		T:        in.Now.UnixMilli(),
		Time:     in.Now.UTC().Format(time.RFC3339Nano),
		Draining: in.Draining,
		Capacity: cfg.Capacity,
		Check:    CheckReport{Kind: cfg.Check},
	}
	errs := map[string]string{}
	for k, v := range in.Cur.Errs {
		errs[k] = v
	}

	// Health.
	c := in.Check
	switch {
	case c.Time.IsZero():
		r.Check.Error = "no check has finished yet"
	case c.Err != "":
		r.Check.Error = c.Err
	case cfg.MaxCheckRun > 0 && !in.CheckStarted.IsZero() && in.Now.Sub(in.CheckStarted) > cfg.MaxCheckRun:
		r.Check.Error = fmt.Sprintf("a check has been running for %v, more than %v", in.Now.Sub(in.CheckStarted).Round(time.Millisecond), cfg.MaxCheckRun)
	}
	if !c.Time.IsZero() {
		r.Check.T = c.Time.UnixMilli()
		r.Check.TookMs = float64(c.Took.Microseconds()) / 1000
	}
	r.Healthy = r.Check.Error == ""
	state := wire.StateOK
	if in.Draining || !r.Healthy {
		state = wire.StateDraining
	}
	r.State = state.String()

	// Machine figures.
	cur, prev := in.Cur, in.Prev
	if cur.ok(ErrKeyLoad1) {
		if v := cur.Load1; finite(v) && v >= 0 && v <= MaxLoad1 {
			r.Load1 = &v
		} else {
			errs[ErrKeyLoad1] = "absurd load average " + fmtFloat(v) + " ignored"
		}
	}
	if cur.NumCPU > 0 && cur.NumCPU <= MaxCPUs {
		r.NumCPU = cur.NumCPU
	}
	if cur.ok(ErrKeyCPU) && prev.ok(ErrKeyCPU) {
		if v, err := cpuPercent(prev.CPU, cur.CPU); err != nil {
			errs[ErrKeyCPU] = err.Error()
		} else {
			v = math.Round(v*100) / 100 // /proc/stat counts in 10ms ticks: more digits are noise
			r.CPU = &v
		}
	}
	if cur.ok(ErrKeyConns) {
		switch n := cur.Conns; {
		case n < 0:
			errs[ErrKeyConns] = "absurd connection count " + strconv.Itoa(n) + " ignored"
		case n > wire.MaxInFlight:
			errs[ErrKeyConns] = "connection count " + strconv.Itoa(n) + " clamped to " + strconv.Itoa(wire.MaxInFlight)
			r.Connections = wire.MaxInFlight
		default:
			r.Connections = n
		}
		r.ConnectionsFrom = cur.ConnsFrom
	}
	r.InFlight = r.Connections
	r.Iface = cur.Iface.Name
	if cur.ok(ErrKeyIface) && prev.ok(ErrKeyIface) {
		dt := cur.Time.Sub(prev.Time)
		switch {
		case cur.Iface.Name != prev.Iface.Name:
			errs[ErrKeyIface] = "interface changed from " + prev.Iface.Name + " to " + cur.Iface.Name
		default:
			rx, err1 := rate(prev.Iface.Rx, cur.Iface.Rx, dt)
			tx, err2 := rate(prev.Iface.Tx, cur.Iface.Tx, dt)
			if err := firstErr(err1, err2); err != nil {
				errs[ErrKeyIface] = err.Error()
			} else {
				rx, tx = math.Round(rx), math.Round(tx)
				r.IfaceRxBps, r.IfaceTxBps = &rx, &tx
			}
		}
	}
	if cfg.HasCmd {
		switch cm := in.Cmd; {
		case cm.Time.IsZero():
			errs[ErrKeyCmd] = "the load command has not finished yet"
		case cm.Err != "":
			errs[ErrKeyCmd] = cm.Err
		case !finite(cm.Value) || cm.Value < 0 || cm.Value > MaxCmdValue:
			errs[ErrKeyCmd] = "absurd value " + fmtFloat(cm.Value) + " ignored"
		default:
			v := cm.Value
			r.CmdValue = &v
		}
	}

	// Utilisation.
	u, src, err := util(cfg, r, cur.ok(ErrKeyConns))
	if err != nil {
		errs[ErrKeyUtil] = err.Error()
	}
	r.Util, r.UtilFrom = u, src

	// The wire record.
	l := wire.Load{
		TimeMillis: r.T,
		InFlight:   r.Connections,
		Capacity:   cfg.Capacity,
		Util:       r.Util,
		State:      state,
	}
	if l.TimeMillis <= 0 {
		l.TimeMillis = 1 // wire requires t > 0; a clock before 1970 is not worth refusing the record for
	}
	if cfg.LatencyFromCheck && r.Healthy {
		l.LatencyMicros = min(max(c.Took.Microseconds(), 0), wire.MaxLatencyMicros)
	}
	if in.Members != nil {
		l.Epoch = in.Members.Epoch
		r.Members = in.Members.String()
	}
	if err := l.Validate(); err != nil {
		// Unreachable after the clamps above; if it happens, send a record
		// that says nothing rather than one every reader refuses.
		errs["wire"] = err.Error()
		l = wire.Load{TimeMillis: l.TimeMillis, State: state}
	}
	r.WireLoad = l
	r.Load = l.String()
	if len(errs) > 0 {
		r.Errors = errs
	}
	return r
}

// util computes the utilisation from the source cfg selects, and says
// which source that was (UtilAuto resolved).
func util(cfg ReportConfig, r Report, connsOK bool) (float64, UtilSource, error) {
	u, src, err := utilFrom(cfg, r, connsOK)
	if err != nil {
		return 0, src, err
	}
	if !finite(u) || u < 0 {
		return 0, src, fmt.Errorf("absurd utilisation %s ignored", fmtFloat(u))
	}
	if u > wire.MaxUtil {
		return wire.MaxUtil, src, fmt.Errorf("utilisation %s clamped to %v", fmtFloat(u), wire.MaxUtil)
	}
	return u, src, nil
}

func utilFrom(cfg ReportConfig, r Report, connsOK bool) (float64, UtilSource, error) {
	src := cfg.UtilFrom
	if src == UtilAuto {
		switch {
		case cfg.Capacity > 0:
			src = UtilConns
		case r.CPU != nil:
			src = UtilCPU
		default:
			src = UtilLoad
		}
	}
	switch src {
	case UtilConns:
		if cfg.Capacity <= 0 {
			return 0, src, fmt.Errorf("utilisation from connections needs a capacity")
		}
		if !connsOK {
			return 0, src, fmt.Errorf("no connection count")
		}
		return float64(r.Connections) / float64(cfg.Capacity), src, nil
	case UtilCPU:
		if r.CPU == nil {
			return 0, src, fmt.Errorf("no CPU figure yet")
		}
		return *r.CPU / 100, src, nil
	case UtilLoad:
		if r.Load1 == nil || r.NumCPU == 0 {
			return 0, src, fmt.Errorf("no load average or CPU count")
		}
		return *r.Load1 / float64(r.NumCPU), src, nil
	case UtilCmd:
		if r.CmdValue == nil {
			return 0, src, fmt.Errorf("no value from the load command")
		}
		return *r.CmdValue, src, nil
	}
	return 0, src, fmt.Errorf("unknown utilisation source %q", src)
}

// cpuPercent is the busy share of CPU time between two readings, in percent.
func cpuPercent(prev, cur CPUTimes) (float64, error) {
	for _, v := range []float64{prev.Total, prev.Busy, cur.Total, cur.Busy} {
		if !finite(v) || v < 0 {
			return 0, fmt.Errorf("absurd CPU time %s ignored", fmtFloat(v))
		}
	}
	dt, db := cur.Total-prev.Total, cur.Busy-prev.Busy
	switch {
	case dt <= 0:
		return 0, fmt.Errorf("CPU time did not advance (%s s)", fmtFloat(dt))
	case db < 0:
		return 0, fmt.Errorf("busy CPU time went backwards (%s s)", fmtFloat(db))
	}
	// Busy can pass Total by rounding in /proc/stat; the share is clamped
	// to 0..100 rather than refused.
	return min(db/dt*100, 100), nil
}

// rate is the per-second rate of a counter between two readings dt apart.
func rate(prev, cur uint64, dt time.Duration) (float64, error) {
	switch {
	case dt <= 0:
		return 0, fmt.Errorf("samples %v apart", dt)
	case cur < prev:
		return 0, fmt.Errorf("byte counter went backwards (%d to %d): reset or wrapped", prev, cur)
	}
	v := float64(cur-prev) / dt.Seconds()
	if v > MaxBytesPerSec {
		return 0, fmt.Errorf("absurd byte rate %s/s ignored", fmtFloat(v))
	}
	return v, nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
