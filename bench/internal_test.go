package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/wire"
)

// needPackages installs Debian's haproxy and nginx if they are missing:
// the suite compares against them, so a machine without them must get
// them or fail loudly.
func needPackages(t *testing.T) {
	t.Helper()
	var missing []string
	for _, p := range []string{"haproxy", "nginx"} {
		if _, err := lookBinary(p, "", p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return
	}
	t.Logf("installing %v with apt-get", missing)
	install := func() ([]byte, error) {
		return exec.Command("apt-get", append([]string{"install", "-y", "-qq"}, missing...)...).CombinedOutput()
	}
	if _, err := install(); err != nil {
		if out, err := exec.Command("apt-get", "update", "-qq").CombinedOutput(); err != nil {
			t.Fatalf("apt-get update: %v: %s", err, out)
		}
		if out, err := install(); err != nil {
			t.Fatalf("the suite needs Debian's %v packages; apt-get install failed: %v: %s", missing, err, out)
		}
	}
}

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses must not shift fields.
	line := "4242 (a) b (c) S 1 777 777 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 1 0 12345 1000 10\n"
	grp, cpu, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if grp != 777 || cpu != 280*clockTick {
		t.Errorf("pgrp %d cpu %v, want 777 and %v", grp, cpu, 280*clockTick)
	}
	for _, bad := range []string{"", "1 (x S 1", "1 (x) S 1 2", "1 (x) S 1 x 3 4 5 6 7 8 9 10 11 12 13"} {
		if _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
	// This process's own line parses and its group is found.
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	grp, _, err = parseStat(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := groupCPU(grp); err != nil {
		t.Errorf("groupCPU(own group %d): %v", grp, err)
	}
}

func TestSummarizeCountsFailuresAsNever(t *testing.T) {
	var s []sample
	for i := 1; i <= 1000; i++ {
		s = append(s, sample{lat: time.Duration(i) * time.Millisecond})
	}
	sum := summarize(s)
	if sum.p50 != 500*time.Millisecond || sum.p99 != 990*time.Millisecond || sum.p999 != 999*time.Millisecond {
		t.Errorf("all ok: p50 %v p99 %v p999 %v", sum.p50, sum.p99, sum.p999)
	}
	// 2% fail, fast: p99 must not get better by failing quickly.
	for i := 0; i < 20; i++ {
		s[i].err = errors.New("status 503")
	}
	sum = summarize(s)
	if sum.failed != 20 || sum.ok != 980 || sum.errs["status 503"] != 20 {
		t.Errorf("counts: %+v", sum)
	}
	if sum.p99 != never || sum.p999 != never {
		t.Errorf("p99 %v p999 %v with 2%% failed, want never", sum.p99, sum.p999)
	}
	if sum.p50 != 520*time.Millisecond {
		t.Errorf("p50 %v, want 520ms (the 500th fastest success: 21..1000 ms succeeded)", sum.p50)
	}
	if sum.okP99 == never {
		t.Error("okP99 should ignore failures")
	}
}

func TestErrKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errTimeout, "timeout"},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), "timeout"},
		{errors.New("dial tcp 127.0.0.3:4: connect: connection refused"), "connection refused"},
		{errors.New("status 502"), "status 502"},
	} {
		if got := errKind(tc.err); got != tc.want {
			t.Errorf("errKind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestMemberQueues: a member with concurrency 1 and a fixed service time
// queues the requests beyond its cap and serves them one after another;
// none is dropped, and its load record counts the queue.
func TestMemberQueues(t *testing.T) {
	const svc = 50 * time.Millisecond
	srv := httptest.NewServer(newMemberHandler(MemberSpec{Concurrency: 1, Service: Dist{SlowProb: 1, Slow: svc}}, 1))
	defer srv.Close()
	const n = 4
	var wg sync.WaitGroup
	var maxQ atomic.Int64
	start := time.Now()
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + workPath)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
			}
			if l, err := wire.ParseLoad(resp.Header.Get(wire.LoadHeader)); err == nil {
				for q := int64(l.InFlight); q > maxQ.Load(); {
					if maxQ.CompareAndSwap(maxQ.Load(), q) {
						break
					}
				}
			} else {
				errs <- fmt.Errorf("load record: %v", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if el := time.Since(start); el < n*svc {
		t.Errorf("%d requests served in %v by one slot of %v each: the cap did not hold", n, el, svc)
	}
	if maxQ.Load() < 2 {
		t.Errorf("largest queue reported %d, want at least 2", maxQ.Load())
	}
}

func TestCapacity(t *testing.T) {
	s := Scenarios(false)[0]
	if c := s.Capacity(); c < 1239 || c > 1241 {
		t.Errorf("slow-member capacity %v, want 1240 (3×400 + 40)", c)
	}
	if c := (MemberSpec{Concurrency: 4, Service: tailMember.Service}).Capacity(); c < 268 || c > 269 {
		t.Errorf("tail member capacity %v, want 4/14.9ms ≈ 268", c)
	}
	for _, sc := range Scenarios(false) {
		if sc.Name == ScenarioSaturated && sc.Rate != sc.Capacity() {
			t.Errorf("saturated offers %v, capacity %v", sc.Rate, sc.Capacity())
		}
	}
}

// TestDNSRotation: an ordinary Go resolver pointed at the server gets the
// members in rotation, the first address moving on each query.
func TestDNSRotation(t *testing.T) {
	ips := []net.IP{net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3), net.IPv4(127, 0, 0, 4), net.IPv4(127, 0, 0, 5)}
	srv, err := startRRServer(ips)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	r := resolverFor(srv.addr)
	var firsts []string
	for i := 0; i < 8; i++ {
		addrs, err := r.LookupIP(context.Background(), "ip4", serviceName)
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 4 {
			t.Fatalf("%d addresses, want 4", len(addrs))
		}
		firsts = append(firsts, addrs[0].String())
	}
	want := "127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5 127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5"
	if got := strings.Join(firsts, " "); got != want {
		t.Errorf("first addresses %s, want %s", got, want)
	}
	if _, err := r.LookupIP(context.Background(), "ip4", "other.bench.test."); err == nil {
		t.Error("an unknown name resolved")
	}
}

// TestProxyConfigsAccepted: HAProxy and nginx accept the generated
// configurations (their own checkers, not ours).
func TestProxyConfigsAccepted(t *testing.T) {
	needPackages(t)
	dir := t.TempDir()
	members := []string{"127.0.0.2:8080", "127.0.0.3:8080"}
	for _, algo := range []string{"roundrobin", "leastconn"} {
		cf := filepath.Join(dir, algo+".cfg")
		if err := os.WriteFile(cf, []byte(haproxyConfig(algo, 18080, members)), 0o644); err != nil {
			t.Fatal(err)
		}
		hp, _ := lookBinary("haproxy", "", "haproxy")
		if out, err := exec.Command(hp, "-c", "-f", cf).CombinedOutput(); err != nil {
			t.Errorf("haproxy %s config rejected: %v: %s", algo, err, out)
		}
	}
	for _, m := range []string{"", "least_conn"} {
		nd := filepath.Join(dir, "nginx"+m)
		if err := os.Mkdir(nd, 0o755); err != nil {
			t.Fatal(err)
		}
		cf := filepath.Join(nd, "nginx.conf")
		if err := os.WriteFile(cf, []byte(nginxConfig(m, nd, 18081, members)), 0o644); err != nil {
			t.Fatal(err)
		}
		np, _ := lookBinary("nginx", "", "nginx")
		if out, err := exec.Command(np, "-t", "-p", nd, "-c", cf, "-e", filepath.Join(nd, "error.log")).CombinedOutput(); err != nil {
			t.Errorf("nginx %q config rejected: %v: %s", m, err, out)
		}
	}
}

// TestOpenLoopSchedule: the generator sends exactly rate × window counted
// requests, spread over clients, and measures from the scheduled time.
func TestOpenLoopSchedule(t *testing.T) {
	var perClient [3]atomic.Int64
	started := false
	s := openLoop(context.Background(), openLoopPlan{rate: 1000, warm: 50 * time.Millisecond, window: 200 * time.Millisecond,
		timeout: time.Second, clients: 3, onWindowStart: func() { started = true }},
		func(ctx context.Context, c int) error {
			perClient[c].Add(1)
			if c == 2 {
				return errors.New("status 500")
			}
			return nil
		})
	if !started {
		t.Error("onWindowStart not called")
	}
	if len(s) != 200 {
		t.Fatalf("%d counted samples, want 200", len(s))
	}
	if a, c := perClient[0].Load(), perClient[2].Load(); a < 80 || c < 80 {
		t.Errorf("requests per client %d, %d, %d: not spread", a, perClient[1].Load(), c)
	}
	sum := summarize(s)
	if sum.failed < 60 || sum.failed > 70 {
		t.Errorf("%d failed, want a third of 200", sum.failed)
	}
}

// FuzzParseSpecs: the member process's --spec never crashes it, and what
// it accepts is valid.
func FuzzParseSpecs(f *testing.F) {
	f.Add(`[{"concurrency":4,"service":{"mean":10000000}}]`)
	f.Add(`[{"service":{"mean":1,"slow_prob":0.5,"slow":2}, "bandwidth": 1e6}]`)
	f.Add(`[]`)
	f.Add(`{"x":1}`)
	f.Fuzz(func(t *testing.T, s string) {
		specs, err := parseSpecs([]byte(s))
		if err != nil {
			return
		}
		if len(specs) == 0 || len(specs) > maxMembers {
			t.Fatalf("accepted %d members", len(specs))
		}
		for _, m := range specs {
			if err := m.validate(); err != nil {
				t.Fatalf("accepted invalid spec %+v: %v", m, err)
			}
			_ = m.Capacity()
		}
	})
}
