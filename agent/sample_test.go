package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/clock"
)

func TestIfaceFor(t *testing.T) {
	for ip, want := range map[string]string{
		"127.0.0.1": "lo", "127.0.0.53": "lo", "::1": "lo",
		"0.0.0.0": AllIfaces, "::": AllIfaces,
		"192.0.2.1": AllIfaces, // TEST-NET-1: on no interface here
	} {
		if got := IfaceFor(netip.MustParseAddr(ip)); got != want {
			t.Errorf("IfaceFor(%s) = %q, want %q", ip, got, want)
		}
	}
	if got := IfaceFor(netip.Addr{}); got != AllIfaces {
		t.Errorf("IfaceFor(invalid) = %q", got)
	}
}

// The sampler reads this machine: every reading succeeds and the
// connection count sees connections held on a loopback port.
func TestHostSample(t *testing.T) {
	tt := newTCPTarget(t)
	dial(t, tt.addr, 3)
	port := netip.MustParseAddrPort(tt.addr).Port()
	h := &Host{Port: int(port), Iface: "lo"}
	waitFor(t, "3 connections counted", func() bool {
		s := h.Sample(context.Background())
		if len(s.Errs) != 0 {
			t.Fatalf("errors: %v", s.Errs)
		}
		return s.Conns == 3
	})
	s := h.Sample(context.Background())
	if s.ConnsFrom != ConnsFromNetlink && s.ConnsFrom != ConnsFromProc {
		t.Errorf("connections counted from %q", s.ConnsFrom)
	}
	if s.NumCPU < 1 || s.CPU.Total <= 0 || s.CPU.Busy <= 0 || s.CPU.Busy > s.CPU.Total || s.Iface.Name != "lo" || s.Iface.Rx == 0 {
		t.Errorf("sample %+v", s)
	}
	all := (&Host{Port: int(port)}).Sample(context.Background())
	if all.Iface.Name != AllIfaces || all.Iface.Rx < s.Iface.Rx || len(all.Errs) != 0 {
		t.Errorf("all interfaces: %+v", all)
	}
	if bad := (&Host{Port: int(port), Iface: "nosuch0"}).Sample(context.Background()); !strings.Contains(bad.Errs[ErrKeyIface], "not found") {
		t.Errorf("missing interface: %v", bad.Errs)
	}
}

// BenchmarkHostSample is the cost of one sample with n established
// connections on the machine (each loopback connection is two sockets).
func BenchmarkHostSample(b *testing.B) {
	for _, n := range []int{0, 500} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			tt := newTCPTarget(b)
			dial(b, tt.addr, n)
			h := &Host{Port: int(netip.MustParseAddrPort(tt.addr).Port()), Iface: "lo"}
			b.ReportAllocs()
			for b.Loop() {
				if s := h.Sample(context.Background()); s.Conns < n {
					b.Fatalf("counted %d of %d connections", s.Conns, n)
				}
			}
		})
	}
}

// fakeChecker fails while down is set.
type fakeChecker struct{ down atomic.Bool }

func (f *fakeChecker) Check(context.Context) error {
	if f.down.Load() {
		return errors.New("down")
	}
	return nil
}
func (*fakeChecker) Kind() string { return "fake" }

// countingSampler counts its calls and reports that many connections.
type countingSampler struct{ n atomic.Int64 }

func (c *countingSampler) Sample(context.Context) Sample {
	return Sample{Conns: int(c.n.Add(1)), NumCPU: 1, Load1: 0.5}
}

// With a fake clock the agent's rounds run only when time is advanced, and
// every report is stamped with the clock's time.
func TestAgentFakeClock(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	fc := clock.NewFake(start)
	smp, chk := &countingSampler{}, &fakeChecker{}
	a, err := New(Config{Target: "127.0.0.1:9", Interval: time.Second, Clock: fc, Sampler: smp, Checker: chk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	r := a.Report()
	if r.T != start.UnixMilli() || !r.Healthy || r.Connections != 1 || r.Check.Kind != "fake" {
		t.Fatalf("first report %+v", r)
	}
	chk.down.Store(true)
	for i := 2; i <= 4; i++ {
		waitFor(t, "both rounds to arm their timers", func() bool { return fc.Pending() == 2 })
		fc.Advance(time.Second)
		waitFor(t, "the next sample", func() bool { return a.Report().Connections == i })
		if smp.n.Load() != int64(i) {
			t.Fatalf("%d samples after %d advances", smp.n.Load(), i-1)
		}
	}
	waitFor(t, "the failed check", func() bool { return !a.Report().Healthy })
	r = a.Report()
	if r.T != start.Add(3*time.Second).UnixMilli() || r.Check.Error != "down" || r.State != "draining" {
		t.Errorf("report %+v", r)
	}
}
