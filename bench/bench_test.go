package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/bench"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/internal/cli"
	"github.com/smartclient/smartclient/smarthttp"
)

// selfEnv makes this test binary act as the smartclient command: the
// suite starts it for `smartclient proxy` and `smartclient bench member`.
const selfEnv = "SMARTCLIENT_BENCH_TEST_AS_SMARTCLIENT"

func TestMain(m *testing.M) {
	if os.Getenv(selfEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		args := os.Args[1:]
		if len(args) >= 2 && args[0] == "bench" && args[1] == "member" {
			err := bench.MemberMain(ctx, args[2:], os.Stdin, os.Stdout, os.Stderr)
			stop()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		}
		code := cli.Run(ctx, args, os.Stdout, os.Stderr, nil)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func selfConfig(t *testing.T) bench.Config {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return bench.Config{Self: []string{exe}, SelfEnv: []string{selfEnv + "=1"}, Progress: testWriter{t}}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// children lists this process's live child processes.
func children(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Getpid())
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == me && f[0] != "Z" {
			out = append(out, e.Name()+" "+s[:i+1])
		}
	}
	return out
}

// TestQuick runs the whole suite in quick mode and checks that every
// contender produced numbers in every scenario, that the table has a row
// for each, that the files were written, and that no process is left.
func TestQuick(t *testing.T) {
	bench.NeedPackages(t)
	cfg := selfConfig(t)
	cfg.Quick = true
	cfg.Out = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("quick suite took %v", time.Since(start).Round(time.Second))
	if left := children(t); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}

	names := bench.ContenderNames()
	got := map[string]int{}
	for _, r := range rep.Results {
		got[r.Contender]++
		if r.Status != "ok" || r.Offered == 0 || r.Completed == 0 {
			t.Errorf("%s in %s: status %q, %d of %d completed", r.Contender, r.Scenario, r.Status, r.Completed, r.Offered)
		}
	}
	for _, n := range names {
		if got[n] != len(rep.Scenarios) {
			t.Errorf("%s ran in %d scenarios, want %d", n, got[n], len(rep.Scenarios))
		}
	}
	if len(rep.Scenarios) != len(bench.Scenarios(true)) {
		t.Errorf("%d scenarios ran, want %d", len(rep.Scenarios), len(bench.Scenarios(true)))
	}
	if rep.Figure6 == nil || rep.Figure6.Status != "ok" || len(rep.Figure6.Points) == 0 {
		t.Errorf("figure 6: %+v", rep.Figure6)
	} else {
		for _, p := range rep.Figure6.Points {
			if p.MBps <= 0 {
				t.Errorf("figure 6 point %+v: no bandwidth", p)
			}
		}
	}

	var out bytes.Buffer
	rep.WriteSummary(&out)
	checkTable(t, out.String(), names)
	for _, f := range []string{"results.json", "report.md", "latency-slow-member.png", "capacity.png", "cpu.png", "figure6.png"} {
		if st, err := os.Stat(filepath.Join(cfg.Out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}

// checkTable checks the contract: a markdown table, one row per
// contender whose first cell is its name, with throughput as a fraction
// of capacity and p99 among the columns.
func checkTable(t *testing.T, table string, names []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2+len(names) {
		t.Fatalf("table has %d lines, want header, rule and %d rows:\n%s", len(lines), len(names), table)
	}
	head := lines[0]
	if !strings.Contains(head, "capacity") || !strings.Contains(head, "p99") {
		t.Errorf("header lacks capacity or p99 columns: %s", head)
	}
	for i, n := range names {
		cells := strings.Split(lines[2+i], "|")
		if len(cells) < 3 || strings.TrimSpace(cells[1]) != n {
			t.Errorf("row %d is %q, want first cell %q", i, lines[2+i], n)
		}
	}
}

// TestContenderThatCannotStart: a missing program is a row saying so,
// not a dropped contender, and the rest of the run goes on.
func TestContenderThatCannotStart(t *testing.T) {
	cfg := selfConfig(t)
	cfg.Quick = true
	cfg.HAProxy = filepath.Join(t.TempDir(), "no-such-haproxy")
	cfg.Contenders = []string{"direct", "haproxy-leastconn"}
	cfg.Scenarios = []string{bench.ScenarioCrash}
	rep, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 {
		t.Fatalf("%d results, want 2", len(rep.Results))
	}
	if r := rep.Results[0]; r.Status != "ok" || r.Completed == 0 {
		t.Errorf("direct: %+v", r)
	}
	r := rep.Results[1]
	if !strings.Contains(r.Status, "did not start") || !strings.Contains(r.Status, "haproxy") {
		t.Errorf("haproxy status %q, want it to say it did not start", r.Status)
	}
	var out bytes.Buffer
	rep.WriteSummary(&out)
	if !strings.Contains(out.String(), "| haproxy-leastconn |") || !strings.Contains(out.String(), "did not start") {
		t.Errorf("summary does not report the failed contender:\n%s", out.String())
	}
	if left := children(t); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
}

// TestCancelCleansUp: ending the context mid-run stops the suite and
// leaves no process behind.
func TestCancelCleansUp(t *testing.T) {
	bench.NeedPackages(t)
	cfg := selfConfig(t)
	cfg.Contenders = []string{"nginx-least_conn"}
	cfg.Scenarios = []string{bench.ScenarioSlow}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancel mid-load, with nginx's master and workers running.
	var workers int
	cfg.WindowStarted = func(string, string) {
		workers = len(grandchildren(t))
		cancel()
	}
	rep, err := bench.Run(ctx, cfg)
	if workers == 0 {
		t.Errorf("no nginx workers seen while the load ran")
	}
	if err == nil {
		t.Errorf("Run returned no error after cancel")
	}
	if rep == nil || len(rep.Results) != 1 || rep.Results[0].Status != "interrupted" {
		t.Errorf("report %+v, want one interrupted result", rep)
	}
	if left := children(t); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
	if left := grandchildren(t); len(left) > 0 {
		t.Errorf("grandchildren left behind: %v", left)
	}
}

// grandchildren lists live processes whose parent is a child of ours
// (nginx workers).
func grandchildren(t *testing.T) []string {
	var out []string
	kids := map[string]bool{}
	for _, c := range children(t) {
		kids[strings.Fields(c)[0]] = true
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && kids[f[1]] && f[0] != "Z" {
			out = append(out, e.Name()+" "+s[:i+1])
		}
	}
	return out
}

// BenchmarkPath is the client-side path cost: one GET to a member that
// replies at once, with a plain http.Client (direct) and through a
// director with the smarthttp transport, for each policy.
func BenchmarkPath(b *testing.B) {
	srvs := make([]*httptest.Server, 4)
	ms := make([]balance.Member, 4)
	for i := range srvs {
		srvs[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("ok\n"))
		}))
		defer srvs[i].Close()
		ms[i] = balance.Member{URL: srvs[i].URL}
	}
	run := func(b *testing.B, c *http.Client, url string) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := c.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				var buf [64]byte
				for {
					if _, err := resp.Body.Read(buf[:]); err != nil {
						break
					}
				}
				resp.Body.Close()
			}
		})
	}
	b.Run("direct", func(b *testing.B) {
		run(b, &http.Client{Transport: smarthttp.NewBaseTransport()}, srvs[0].URL+"/")
	})
	for _, pol := range []string{"random", "round-robin", "least-loaded", "p2c"} {
		b.Run("smartclient-"+pol, func(b *testing.B) {
			d, err := director.New(director.Config{Policy: pol}, ms)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			run(b, &http.Client{Transport: smarthttp.NewTransport(d, nil)}, "http://service/")
		})
	}
}
