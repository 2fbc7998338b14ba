package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/wire"
)

const fast = 50 * time.Millisecond

// A TCP target that is up, gets connections, goes down and comes back.
func TestTCPTargetUpDownUp(t *testing.T) {
	tt := newTCPTarget(t)
	_, base := startAgent(t, Config{Target: tt.addr, Capacity: 10, Interval: fast, CheckTimeout: 200 * time.Millisecond,
		Service: "service://web"})

	r, raw, _ := getLoad(t, base)
	if !r.Healthy || r.State != "ok" || r.Address != tt.addr || r.URL != "http://"+tt.addr || r.Service != "service://web" ||
		r.V != ReportVersion || r.T <= 0 || r.Check.Kind != "tcp" {
		t.Fatalf("first report %+v", r)
	}
	for _, k := range []string{"healthy", "address", "t", "load1", "cpu", "iface_rx_bytes_per_sec", "connections"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}

	dial(t, tt.addr, 3)
	// The agent's own TCP checks add a connection now and then; at least
	// the three held ones must be counted, and util follows the formula.
	r = waitReport(t, base, "3 connections counted", func(r Report) bool { return r.Connections >= 3 })
	if r.InFlight != r.Connections || r.Util != float64(r.Connections)/10 || r.WireLoad.Capacity != 10 || r.WireLoad.InFlight != r.Connections {
		t.Errorf("connections %d inflight %d util %v wire %+v", r.Connections, r.InFlight, r.Util, r.WireLoad)
	}
	r = waitReport(t, base, "a CPU figure and byte rates", func(r Report) bool { return r.CPU != nil && r.IfaceRxBps != nil })
	if r.Iface != "lo" || *r.CPU < 0 || *r.CPU > 100 || r.Load1 == nil || r.NumCPU < 1 {
		t.Errorf("machine figures: iface %q cpu %v load1 %v ncpu %d", r.Iface, *r.CPU, r.Load1, r.NumCPU)
	}

	tt.down()
	r = waitReport(t, base, "unhealthy after the target went down", func(r Report) bool { return !r.Healthy })
	if r.State != "draining" || r.WireLoad.State != wire.StateDraining || r.Draining || !strings.Contains(r.Check.Error, "refused") {
		t.Errorf("down: %+v", r)
	}
	tt.up()
	r = waitReport(t, base, "healthy again", func(r Report) bool { return r.Healthy })
	if r.State != "ok" || r.Check.Error != "" {
		t.Errorf("up again: %+v", r)
	}
}

// A target that is down from the start: the agent starts and reports it.
func TestTargetDownAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, base := startAgent(t, Config{Target: addr, Interval: fast})
	r, _, l := getLoad(t, base)
	if r.Healthy || l.State != wire.StateDraining || r.Check.Error == "" || r.Check.T == 0 {
		t.Errorf("report %+v", r)
	}
}

// hangingHTTP serves /health with 200 until hang is set, then never
// answers (until the test ends).
func hangingHTTP(t *testing.T, hang *atomic.Bool) *httptest.Server {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		if hang.Load() {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, "ok\n")
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: handlers return, then Close
	return srv
}

// An HTTP target that hangs: /load still answers within a second (the
// client enforces it) and reports unhealthy once the check times out.
func TestHangingHTTPTarget(t *testing.T) {
	var hang atomic.Bool
	srv := hangingHTTP(t, &hang)
	target := strings.TrimPrefix(srv.URL, "http://")
	_, base := startAgent(t, Config{Target: target, CheckHTTP: "/health", Interval: fast, CheckTimeout: 300 * time.Millisecond})

	r, _, l := getLoad(t, base)
	if !r.Healthy || r.Check.Kind != "http GET /health" || l.LatencyMicros <= 0 {
		t.Fatalf("healthy target: %+v, wire %+v", r, l)
	}
	hang.Store(true)
	r = waitReport(t, base, "unhealthy after the check timed out", func(r Report) bool { return !r.Healthy })
	if !strings.Contains(r.Check.Error, "no answer within 300ms") || r.State != "draining" {
		t.Errorf("hanging: %+v", r.Check)
	}
	// Several more polls while checks keep hanging: each answers in time.
	for range 5 {
		if r, _, _ := getLoad(t, base); r.Healthy {
			t.Errorf("healthy while the target hangs: %+v", r.Check)
		}
	}
	hang.Store(false)
	waitReport(t, base, "healthy after the target recovered", func(r Report) bool { return r.Healthy })
}

// A hanging HTTP target from the start: New returns after one check timeout.
func TestHangingFromStart(t *testing.T) {
	var hang atomic.Bool
	hang.Store(true)
	srv := hangingHTTP(t, &hang)
	_, base := startAgent(t, Config{Target: strings.TrimPrefix(srv.URL, "http://"), CheckHTTP: "/health", Interval: fast, CheckTimeout: 200 * time.Millisecond})
	if r, _, _ := getLoad(t, base); r.Healthy || !strings.Contains(r.Check.Error, "no answer") {
		t.Errorf("report %+v", r.Check)
	}
}

// An HTTP check fails on a 5xx and on a 404 (a wrong check path).
func TestHTTPCheckStatus(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(status.Load())) }))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		status  int32
		healthy bool
	}{{200, true}, {503, false}, {302, true}, {404, false}} {
		status.Store(tc.status)
		err := HTTPCheck{URL: srv.URL + "/x"}.Check(context.Background())
		if (err == nil) != tc.healthy {
			t.Errorf("status %d: check error %v", tc.status, err)
		}
	}
}

func TestDrain(t *testing.T) {
	tt := newTCPTarget(t)
	a, err := New(Config{Target: tt.addr, Interval: fast, DrainGrace: 300 * time.Millisecond, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- a.Serve(context.Background(), ln) }()
	t.Cleanup(func() { a.Drain(); <-done })

	// Only POST, and only from loopback.
	if resp, err := http.Get(base + DrainPath); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /drain: %v %v", resp, err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, DrainPath, nil)
	req.RemoteAddr = "192.0.2.7:4000"
	a.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || a.Report().Draining {
		t.Fatalf("drain from 192.0.2.7: status %d", rec.Code)
	}
	if resp, err := http.Get(base + HealthPath); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}

	resp, err := http.Post(base+DrainPath, "", nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /drain: %v %v", resp, err)
	}
	resp.Body.Close()
	// Until the grace ends, /load says draining while the target is healthy.
	r := waitReport(t, base, "draining", func(r Report) bool { return r.Draining })
	if !r.Healthy || r.State != "draining" || r.WireLoad.State != wire.StateDraining {
		t.Errorf("draining report %+v", r)
	}
	hz, err := http.Get(base + HealthPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(hz.Body)
	hz.Body.Close()
	if string(b) != "draining\n" {
		t.Errorf("healthz while draining: %q", b)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the drain grace")
	}
	if _, err := http.Get(base + LoadPath); err == nil {
		t.Error("agent still serving after the drain")
	}
}

// The load command feeds cmd_value and, with UtilFrom cmd, the utilisation;
// bad output is an error field, not a crash.
func TestLoadCommand(t *testing.T) {
	tt := newTCPTarget(t)
	_, base := startAgent(t, Config{Target: tt.addr, Interval: fast, LoadCmd: "echo 0.625", UtilFrom: UtilCmd})
	r, _, l := getLoad(t, base)
	if r.CmdValue == nil || *r.CmdValue != 0.625 || r.Util != 0.625 || l.Util != 0.625 || r.UtilFrom != UtilCmd {
		t.Errorf("report %+v", r)
	}
	_, base = startAgent(t, Config{Target: tt.addr, Interval: fast, LoadCmd: "echo NaN; exit 0", UtilFrom: UtilCmd})
	r, _, l = getLoad(t, base)
	if r.CmdValue != nil || !strings.Contains(r.Errors[ErrKeyCmd], "not a decimal number") || r.Errors[ErrKeyUtil] == "" || l.Util != 0 {
		t.Errorf("report %+v", r)
	}
}

// fakeSampler returns absurd readings.
type fakeSampler struct{ n atomic.Int64 }

func (f *fakeSampler) Sample(context.Context) Sample {
	i := float64(f.n.Add(1))
	return Sample{Load1: -1, NumCPU: 2, CPU: CPUTimes{Total: 100 * i, Busy: 1e308 * i}, Conns: 1 << 40,
		Iface: IfaceBytes{Name: "x", Rx: uint64(1e19 / i), Tx: 0}}
}

// Absurd readings from the machine end up clamped or dropped, end to end.
func TestAbsurdSamples(t *testing.T) {
	tt := newTCPTarget(t)
	_, base := startAgent(t, Config{Target: tt.addr, Interval: fast, Capacity: 100, Sampler: &fakeSampler{}})
	r := waitReport(t, base, "a second sample", func(r Report) bool { return r.Errors[ErrKeyIface] != "" })
	if r.Load1 != nil || r.CPU != nil || r.IfaceRxBps != nil || r.Connections != wire.MaxInFlight || r.Util != wire.MaxUtil {
		t.Errorf("report %+v", r)
	}
	for _, k := range []string{ErrKeyLoad1, ErrKeyCPU, ErrKeyConns, ErrKeyIface, ErrKeyUtil} {
		if r.Errors[k] == "" {
			t.Errorf("no error for %s: %v", k, r.Errors)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{},
		{Target: "nohostport"},
		{Target: ":80"},
		{Target: "127.0.0.1:0"},
		{Target: "127.0.0.1:99999"},
		{Target: "127.0.0.1:80", URL: "10.0.0.1:80"},
		{Target: "127.0.0.1:80", URL: "http://a;b"},
		{Target: "127.0.0.1:80", Service: "web"},
		{Target: "127.0.0.1:80", Capacity: -1},
		{Target: "127.0.0.1:80", Capacity: wire.MaxInFlight + 1},
		{Target: "127.0.0.1:80", UtilFrom: "mem"},
		{Target: "127.0.0.1:80", UtilFrom: UtilConns},
		{Target: "127.0.0.1:80", UtilFrom: UtilCmd},
		{Target: "127.0.0.1:80", Interval: time.Millisecond},
		{Target: "127.0.0.1:80", CheckTimeout: -1},
		{Target: "127.0.0.1:80", CheckHTTP: "health"},
		{Target: "127.0.0.1:80", Join: []string{"127.0.0.1:7946"}},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	good := Config{Target: "localhost:80", URL: "https://web.example:443/", Service: "service://web", Capacity: 5,
		UtilFrom: UtilConns, CheckHTTP: "/health?full=1"}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
}

// BenchmarkLoadWhileTargetHangs is one GET /load over loopback while every
// health check of the target hangs until its timeout.
func BenchmarkLoadWhileTargetHangs(b *testing.B) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	b.Cleanup(srv.Close)
	b.Cleanup(func() { close(release) })
	a, err := New(Config{Target: strings.TrimPrefix(srv.URL, "http://"), CheckHTTP: "/", Interval: fast, CheckTimeout: 200 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.Close)
	web := httptest.NewServer(a.Handler())
	b.Cleanup(web.Close)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := loadClient.Get(web.URL + LoadPath)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
