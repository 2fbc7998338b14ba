package agent

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/wire"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// goodInputs is a healthy target with two clean samples one second apart.
func goodInputs() Inputs {
	prev := Sample{Time: t0.Add(-time.Second), Load1: 0.5, NumCPU: 2,
		CPU: CPUTimes{Total: 1000, Busy: 100}, Conns: 3, Iface: IfaceBytes{Name: "lo", Rx: 1000, Tx: 2000}}
	cur := prev
	cur.Time = t0
	cur.CPU = CPUTimes{Total: 1002, Busy: 100.5} // 25% busy
	cur.Iface.Rx, cur.Iface.Tx = 1000+4096, 2000+1024
	cur.Conns = 4
	return Inputs{Now: t0, Prev: prev, Cur: cur, Check: CheckResult{Time: t0, Took: 2 * time.Millisecond}}
}

func goodConfig() ReportConfig {
	return ReportConfig{Target: "127.0.0.1:80", URL: "http://127.0.0.1:80", Check: "tcp", MaxCheckRun: 10 * time.Second}
}

func fptr(v float64) *float64 { return &v }

func TestBuild(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name    string
		cfg     func(*ReportConfig)
		in      func(*Inputs)
		healthy bool
		state   wire.State
		util    float64
		check   func(t *testing.T, r Report) // further assertions
		errKeys []string                     // keys expected in Errors, exactly
	}{
		{name: "healthy, util from cpu", healthy: true, util: 0.25, check: func(t *testing.T, r Report) {
			eqf(t, "cpu", r.CPU, fptr(25))
			eqf(t, "load1", r.Load1, fptr(0.5))
			eqf(t, "rx", r.IfaceRxBps, fptr(4096))
			eqf(t, "tx", r.IfaceTxBps, fptr(1024))
			if r.Connections != 4 || r.InFlight != 4 || r.Iface != "lo" || r.NumCPU != 2 || r.UtilFrom != UtilCPU {
				t.Errorf("report %+v", r)
			}
			if r.Load != "v=1;t=1772366400000;q=4;u=0.25" {
				t.Errorf("wire %q", r.Load)
			}
		}},
		{name: "capacity: util from connections", cfg: func(c *ReportConfig) { c.Capacity = 16 }, healthy: true, util: 0.25,
			check: func(t *testing.T, r Report) {
				if r.WireLoad.Capacity != 16 || r.WireLoad.InFlight != 4 || r.UtilFrom != UtilConns {
					t.Errorf("wire %+v", r.WireLoad)
				}
			}},
		{name: "first sample: cpu unknown, load fallback", in: func(in *Inputs) { in.Prev = Sample{} }, healthy: true, util: 0.25,
			check: func(t *testing.T, r Report) {
				if r.CPU != nil || r.IfaceRxBps != nil || r.UtilFrom != UtilLoad {
					t.Errorf("rates from one sample: cpu %v rx %v", r.CPU, r.IfaceRxBps)
				}
			}},
		{name: "util from load", cfg: func(c *ReportConfig) { c.UtilFrom = UtilLoad }, healthy: true, util: 0.25},
		{name: "util from cmd", cfg: func(c *ReportConfig) { c.UtilFrom, c.HasCmd = UtilCmd, true },
			in: func(in *Inputs) { in.Cmd = CmdResult{Time: t0, Value: 0.7} }, healthy: true, util: 0.7,
			check: func(t *testing.T, r Report) { eqf(t, "cmd", r.CmdValue, fptr(0.7)) }},
		{name: "enormous cmd utilisation clamped", cfg: func(c *ReportConfig) { c.UtilFrom, c.HasCmd = UtilCmd, true },
			in: func(in *Inputs) { in.Cmd = CmdResult{Time: t0, Value: 5e6} }, healthy: true, util: wire.MaxUtil, errKeys: []string{ErrKeyUtil}},
		{name: "cmd not run yet", cfg: func(c *ReportConfig) { c.HasCmd = true }, healthy: true, util: 0.25, errKeys: []string{ErrKeyCmd}},
		{name: "cmd failed", cfg: func(c *ReportConfig) { c.HasCmd = true },
			in: func(in *Inputs) { in.Cmd = CmdResult{Time: t0, Err: "exit status 1"} }, healthy: true, util: 0.25, errKeys: []string{ErrKeyCmd},
			check: func(t *testing.T, r Report) {
				if r.CmdValue != nil || r.Errors[ErrKeyCmd] != "exit status 1" {
					t.Errorf("cmd %v, errors %v", r.CmdValue, r.Errors)
				}
			}},
		{name: "cmd NaN ignored", cfg: func(c *ReportConfig) { c.HasCmd = true },
			in: func(in *Inputs) { in.Cmd = CmdResult{Time: t0, Value: nan} }, healthy: true, util: 0.25, errKeys: []string{ErrKeyCmd}},
		{name: "cmd negative ignored", cfg: func(c *ReportConfig) { c.HasCmd = true },
			in: func(in *Inputs) { in.Cmd = CmdResult{Time: t0, Value: -3} }, healthy: true, util: 0.25, errKeys: []string{ErrKeyCmd}},
		{name: "no check yet", in: func(in *Inputs) { in.Check = CheckResult{} }, state: wire.StateDraining, util: 0.25,
			check: func(t *testing.T, r Report) {
				if r.Check.Error == "" || r.Check.T != 0 {
					t.Errorf("check %+v", r.Check)
				}
			}},
		{name: "check failed", in: func(in *Inputs) { in.Check.Err = "connection refused" }, state: wire.StateDraining, util: 0.25,
			check: func(t *testing.T, r Report) {
				if r.Check.Error != "connection refused" || r.State != "draining" || r.Draining {
					t.Errorf("report %+v", r)
				}
			}},
		{name: "a check stuck past its bound", in: func(in *Inputs) { in.CheckStarted = t0.Add(-11 * time.Second) }, state: wire.StateDraining, util: 0.25,
			check: func(t *testing.T, r Report) {
				if !strings.Contains(r.Check.Error, "running for 11s") {
					t.Errorf("check error %q", r.Check.Error)
				}
			}},
		{name: "a check running within its bound", in: func(in *Inputs) { in.CheckStarted = t0.Add(-9 * time.Second) }, healthy: true, util: 0.25},
		{name: "an old result with no check running", in: func(in *Inputs) { in.Check.Time = t0.Add(-time.Hour) }, healthy: true, util: 0.25},
		{name: "draining while healthy", in: func(in *Inputs) { in.Draining = true }, healthy: true, state: wire.StateDraining, util: 0.25,
			check: func(t *testing.T, r Report) {
				if !r.Draining || r.State != "draining" {
					t.Errorf("report %+v", r)
				}
			}},
		{name: "load1 NaN", in: func(in *Inputs) { in.Cur.Load1 = nan }, healthy: true, util: 0.25, errKeys: []string{ErrKeyLoad1},
			check: func(t *testing.T, r Report) { eqf(t, "load1", r.Load1, nil) }},
		{name: "load1 negative", in: func(in *Inputs) { in.Cur.Load1 = -1 }, healthy: true, util: 0.25, errKeys: []string{ErrKeyLoad1}},
		{name: "load1 enormous", in: func(in *Inputs) { in.Cur.Load1 = 1e300 }, healthy: true, util: 0.25, errKeys: []string{ErrKeyLoad1}},
		{name: "load1 failed, no cpu either: util unknown", in: func(in *Inputs) {
			in.Prev = Sample{}
			in.Cur.Errs = map[string]string{ErrKeyLoad1: "no /proc"}
		}, healthy: true, util: 0, errKeys: []string{ErrKeyLoad1, ErrKeyUtil}},
		{name: "cpu infinite", in: func(in *Inputs) { in.Cur.CPU.Busy = inf }, healthy: true, util: 0.25, errKeys: []string{ErrKeyCPU},
			check: func(t *testing.T, r Report) { eqf(t, "cpu", r.CPU, nil) }},
		{name: "cpu counters backwards", in: func(in *Inputs) { in.Cur.CPU = CPUTimes{Total: 900, Busy: 50} }, healthy: true, util: 0.25,
			errKeys: []string{ErrKeyCPU}},
		{name: "cpu busy went backwards", in: func(in *Inputs) { in.Cur.CPU.Busy = 90 }, healthy: true, util: 0.25, errKeys: []string{ErrKeyCPU}},
		{name: "cpu busy above total clamped to 100%", in: func(in *Inputs) { in.Cur.CPU.Busy = 103 }, healthy: true, util: 1,
			check: func(t *testing.T, r Report) { eqf(t, "cpu", r.CPU, fptr(100)) }},
		{name: "connections negative", cfg: func(c *ReportConfig) { c.Capacity = 10 }, in: func(in *Inputs) { in.Cur.Conns = -5 },
			healthy: true, util: 0, errKeys: []string{ErrKeyConns}, check: func(t *testing.T, r Report) {
				if r.Connections != 0 {
					t.Errorf("connections %d", r.Connections)
				}
			}},
		{name: "connections enormous clamped", cfg: func(c *ReportConfig) { c.Capacity = wire.MaxInFlight },
			in: func(in *Inputs) { in.Cur.Conns = math.MaxInt }, healthy: true, util: 1, errKeys: []string{ErrKeyConns}},
		{name: "connections failed, capacity", cfg: func(c *ReportConfig) { c.Capacity = 10 },
			in:      func(in *Inputs) { in.Cur.Errs = map[string]string{ErrKeyConns: "permission denied"} },
			healthy: true, util: 0, errKeys: []string{ErrKeyConns, ErrKeyUtil}},
		{name: "iface counter reset", in: func(in *Inputs) { in.Cur.Iface.Rx = 10 }, healthy: true, util: 0.25, errKeys: []string{ErrKeyIface},
			check: func(t *testing.T, r Report) { eqf(t, "rx", r.IfaceRxBps, nil); eqf(t, "tx", r.IfaceTxBps, nil) }},
		{name: "iface absurd rate", in: func(in *Inputs) { in.Cur.Iface.Tx = math.MaxUint64 }, healthy: true, util: 0.25, errKeys: []string{ErrKeyIface}},
		{name: "iface renamed", in: func(in *Inputs) { in.Cur.Iface.Name = "eth0" }, healthy: true, util: 0.25, errKeys: []string{ErrKeyIface}},
		{name: "samples at the same time", in: func(in *Inputs) { in.Prev.Time = in.Cur.Time }, healthy: true, util: 0.25, errKeys: []string{ErrKeyIface}},
		{name: "HTTP check latency", cfg: func(c *ReportConfig) { c.LatencyFromCheck = true }, healthy: true, util: 0.25,
			check: func(t *testing.T, r Report) {
				if r.WireLoad.LatencyMicros != 2000 || r.Check.TookMs != 2 {
					t.Errorf("latency %d, took %v", r.WireLoad.LatencyMicros, r.Check.TookMs)
				}
			}},
		{name: "no latency from a failed check", cfg: func(c *ReportConfig) { c.LatencyFromCheck = true },
			in: func(in *Inputs) { in.Check.Err = "status 500" }, state: wire.StateDraining, util: 0.25,
			check: func(t *testing.T, r Report) {
				if r.WireLoad.LatencyMicros != 0 {
					t.Errorf("latency %d", r.WireLoad.LatencyMicros)
				}
			}},
		{name: "members from gossip", in: func(in *Inputs) {
			in.Members = &wire.Members{Epoch: 42, Members: []wire.Member{{URL: "http://10.0.0.1:80"}, {URL: "http://10.0.0.2:80", Zone: "b"}}}
		}, healthy: true, util: 0.25, check: func(t *testing.T, r Report) {
			if r.WireLoad.Epoch != 42 || r.Members != "v=1;e=42;m=http://10.0.0.1:80;m=http://10.0.0.2:80#z=b" {
				t.Errorf("epoch %d members %q", r.WireLoad.Epoch, r.Members)
			}
		}},
		{name: "clock before 1970", in: func(in *Inputs) { in.Now = time.Unix(-5, 0) }, healthy: true, util: 0.25,
			check: func(t *testing.T, r Report) {
				if r.WireLoad.TimeMillis != 1 {
					t.Errorf("t=%d", r.WireLoad.TimeMillis)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, in := goodConfig(), goodInputs()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			if tc.in != nil {
				tc.in(&in)
			}
			r := Build(cfg, in)
			if r.Healthy != tc.healthy || r.WireLoad.State != tc.state {
				t.Errorf("healthy %v state %v, want %v %v (check error %q)", r.Healthy, r.WireLoad.State, tc.healthy, tc.state, r.Check.Error)
			}
			if math.Abs(r.Util-tc.util) > 1e-9 || r.WireLoad.Util != r.Util {
				t.Errorf("util %v (wire %v), want %v; errors %v", r.Util, r.WireLoad.Util, tc.util, r.Errors)
			}
			var keys []string
			for k := range r.Errors {
				keys = append(keys, k)
			}
			if !sameSet(keys, tc.errKeys) {
				t.Errorf("error keys %v, want %v (%v)", keys, tc.errKeys, r.Errors)
			}
			checkInvariants(t, r)
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// checkInvariants holds for every report: it encodes as JSON, its wire
// record parses back to WireLoad, and it carries the contract's fields.
func checkInvariants(t *testing.T, r Report) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"v", "healthy", "address", "url", "t", "state", "load", "util", "inflight"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	l, err := wire.ParseLoad(r.Load)
	if err != nil {
		t.Fatalf("wire record %q: %v", r.Load, err)
	}
	if l != r.WireLoad {
		t.Errorf("wire record %q parses to %+v, want %+v", r.Load, l, r.WireLoad)
	}
	if r.UtilFrom == UtilAuto {
		t.Errorf("util_from not resolved")
	}
	if r.Util < 0 || r.Util > wire.MaxUtil || r.InFlight < 0 || r.InFlight > wire.MaxInFlight {
		t.Errorf("out of range: util %v inflight %d", r.Util, r.InFlight)
	}
}

func eqf(t *testing.T, what string, got, want *float64) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil:
		t.Errorf("%s = %v, want %v", what, got, want)
	case math.Abs(*got-*want) > 1e-9:
		t.Errorf("%s = %v, want %v", what, *got, *want)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, x := range a {
		seen[x] = true
	}
	for _, x := range b {
		if !seen[x] {
			return false
		}
	}
	return true
}

func TestParseUtilSource(t *testing.T) {
	for in, want := range map[string]UtilSource{"": UtilAuto, "auto": UtilAuto, "conns": UtilConns, "cpu": UtilCPU, "load": UtilLoad, "cmd": UtilCmd} {
		if got, err := ParseUtilSource(in); err != nil || got != want {
			t.Errorf("ParseUtilSource(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseUtilSource("memory"); err == nil {
		t.Error("ParseUtilSource(memory) accepted")
	}
}

// FuzzBuild feeds arbitrary readings to Build: whatever the machine or the
// load command says, the report encodes and its wire record is valid.
func FuzzBuild(f *testing.F) {
	f.Add(0.5, 1000.0, 100.0, 1002.0, 100.5, 4, uint64(1000), uint64(5000), 0.7, int64(1000), 16, uint8(0))
	f.Add(math.NaN(), math.Inf(1), -1.0, math.Inf(-1), 1e308, -7, uint64(9), uint64(0), 1e300, int64(0), 0, uint8(3))
	f.Fuzz(func(t *testing.T, load1, tot0, busy0, tot1, busy1 float64, conns int, rx0, rx1 uint64, cmd float64, dtMs int64, capacity int, src uint8) {
		cfg := goodConfig()
		cfg.Capacity = min(max(capacity, 0), wire.MaxInFlight)
		cfg.HasCmd = true
		cfg.UtilFrom = []UtilSource{UtilAuto, UtilConns, UtilCPU, UtilLoad, UtilCmd}[int(src)%5]
		in := goodInputs()
		in.Prev.Time = in.Cur.Time.Add(-time.Duration(dtMs) * time.Millisecond)
		in.Prev.CPU, in.Cur.CPU = CPUTimes{tot0, busy0}, CPUTimes{tot1, busy1}
		in.Cur.Load1, in.Cur.Conns = load1, conns
		in.Prev.Iface.Rx, in.Cur.Iface.Rx = rx0, rx1
		in.Cmd = CmdResult{Time: t0, Value: cmd}
		checkInvariants(t, Build(cfg, in))
	})
}
