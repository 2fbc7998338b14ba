package failsuite

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/smartclient/smartclient/testbed"
)

// Scenario is one fault, injected on one member (the victim) under load
// and healed.
type Scenario struct {
	Name string
	// Mechanism says how the fault is made, for the README.
	Mechanism string
	// GapTarget is the failover gap promised for this fault; 0 for none.
	GapTarget time.Duration

	// setup, if set, runs before the load starts and may route the client
	// to the victim through another address (a link proxy).
	setup func(ctx context.Context, c *cluster, v int) (url string, cleanup func() error, err error)
	// inject makes the fault and returns how to heal it; heal returns once
	// the member is back. A nil heal means inject ran the whole fault.
	inject func(ctx context.Context, c *cluster, v int) (heal func(context.Context) error, err error)
	// allMembers: the fault hits every member, not just the victim.
	allMembers bool
}

// Targets from the issue: a crash or a refusal is noticed at once (a reset
// or a refused connection), a silent failure only by a timeout or a hedge.
const (
	FastGapTarget   = 50 * time.Millisecond
	SilentGapTarget = 250 * time.Millisecond
)

// Fault parameters.
const (
	slowLatency = 200 * time.Millisecond
	slowJitter  = 50 * time.Millisecond
	lossPct     = 30
	bandwidth   = 200_000 // bits/s: a 1 KiB reply takes about 45 ms on the wire
	drainWait   = 15 * time.Second
)

// Scenarios returns every scenario, in the order the suite runs them.
func Scenarios() []Scenario {
	return []Scenario{
		{
			Name:      "crash",
			Mechanism: "the member's process is killed with SIGKILL; healed by starting it again",
			GapTarget: FastGapTarget,
			inject: func(ctx context.Context, c *cluster, v int) (func(context.Context) error, error) {
				p := c.procs[v]
				if err := p.Kill(); err != nil {
					return nil, err
				}
				select {
				case <-p.Exited():
				case <-time.After(5 * time.Second):
					return nil, fmt.Errorf("member %s did not exit after SIGKILL", c.name(v))
				}
				return func(ctx context.Context) error { return c.start(ctx, v) }, nil
			},
		},
		{
			Name:      "hang",
			Mechanism: "SIGSTOP: the kernel still accepts connections, nothing answers; healed by SIGCONT",
			GapTarget: SilentGapTarget,
			inject: func(ctx context.Context, c *cluster, v int) (func(context.Context) error, error) {
				if err := c.procs[v].Stop(); err != nil {
					return nil, err
				}
				c.stopped[v] = true
				return func(context.Context) error {
					c.stopped[v] = false
					return c.procs[v].Cont()
				}, nil
			},
		},
		{
			Name:      "blackhole",
			Mechanism: "iptables DROP at the top of INPUT and OUTPUT in the host's namespace: no reset, no answer, established connections stall too",
			GapTarget: SilentGapTarget,
			inject:    fault(func(b *testbed.Bed, h *testbed.Host, port int) (testbed.Fault, error) { return b.BlackHole(h) }),
		},
		{
			Name:      "refuse",
			Mechanism: "iptables REJECT --reject-with tcp-reset on the member's port in the host's namespace: new connections are refused, established ones reset",
			GapTarget: FastGapTarget,
			inject:    fault(func(b *testbed.Bed, h *testbed.Host, port int) (testbed.Fault, error) { return b.Refuse(h, port) }),
		},
		{
			Name: "slow",
			Mechanism: fmt.Sprintf("the client reaches the member through a toxiproxy link proxy (library, in the client's process) for the whole run; the fault adds a %v ± %v latency toxic",
				slowLatency, slowJitter),
			setup:  slowSetup,
			inject: slowInject,
		},
		{
			Name:      "loss",
			Mechanism: fmt.Sprintf("iptables -m statistic --mode random DROP of %d%% of the packets into and out of the host's namespace; TCP retransmits", lossPct),
			inject: fault(func(b *testbed.Bed, h *testbed.Host, port int) (testbed.Fault, error) {
				return b.Loss(h, lossPct)
			}),
		},
		{
			Name:      "partition",
			Mechanism: "iptables DROP of the client's (gateway's) address in INPUT and OUTPUT of the host's namespace: client and host cannot reach each other, the hosts still reach each other",
			GapTarget: SilentGapTarget,
			inject:    fault(partitionClient),
		},
		{
			Name:      "bandwidth",
			Mechanism: fmt.Sprintf("tc tbf root qdisc at %d kbit/s on both ends of the host's veth", bandwidth/1000),
			inject: fault(func(b *testbed.Bed, h *testbed.Host, port int) (testbed.Fault, error) {
				return b.Bandwidth(h, bandwidth)
			}),
		},
		{
			Name:       "rolling",
			Mechanism:  "every member in turn: SIGTERM, graceful drain (announce, refuse, shutdown), start again, wait until listening",
			inject:     rollingRestart,
			allMembers: true,
		},
	}
}

// ScenarioNames lists the scenarios' names.
func ScenarioNames() []string {
	var names []string
	for _, s := range Scenarios() {
		names = append(names, s.Name)
	}
	return names
}

func pick(names []string) ([]Scenario, error) {
	all := Scenarios()
	if len(names) == 0 {
		return all, nil
	}
	var out []Scenario
	for _, n := range names {
		i := slices.IndexFunc(all, func(s Scenario) bool { return s.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("failsuite: no scenario %q (have %s)", n, strings.Join(ScenarioNames(), ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// fault adapts a testbed fault to inject.
func fault(f func(b *testbed.Bed, h *testbed.Host, port int) (testbed.Fault, error)) func(context.Context, *cluster, int) (func(context.Context) error, error) {
	return func(ctx context.Context, c *cluster, v int) (func(context.Context) error, error) {
		ft, err := f(c.cfg.Bed, c.hosts[v], c.cfg.Member.Port)
		if err != nil {
			return nil, err
		}
		return func(context.Context) error { return ft.Heal() }, nil
	}
}

// partitionClient cuts the client host (the root namespace) off from h,
// both ways; h and the other hosts still reach each other.
func partitionClient(b *testbed.Bed, h *testbed.Host, port int) (testbed.Fault, error) {
	return b.PartitionClient(h)
}

// slowSetup puts a pass-through link proxy between the client and the
// victim for the whole run, so that the fault can slow the link down and
// heal it while the client keeps the address.
func slowSetup(ctx context.Context, c *cluster, v int) (string, func() error, error) {
	l, err := c.cfg.Bed.SlowLink(c.hosts[v], c.cfg.Member.Port)
	if err != nil {
		return "", nil, err
	}
	c.slow = l
	return "http://" + l.Addr(), func() error { c.slow = nil; return l.Close() }, nil
}

func slowInject(ctx context.Context, c *cluster, v int) (func(context.Context) error, error) {
	l := c.slow
	if err := l.Set(slowLatency, slowJitter); err != nil {
		return nil, err
	}
	return func(context.Context) error { return l.Heal() }, nil
}

// rollingRestart drains and restarts every member in turn, each once the
// previous one listens again, as an operator deploying a new version would.
func rollingRestart(ctx context.Context, c *cluster, _ int) (func(context.Context) error, error) {
	for i := range c.procs {
		p := c.procs[i]
		if err := p.Signal(syscall.SIGTERM); err != nil {
			return nil, fmt.Errorf("SIGTERM to %s: %w", c.name(i), err)
		}
		select {
		case <-p.Exited():
		case <-time.After(drainWait):
			return nil, fmt.Errorf("member %s still draining %v after SIGTERM", c.name(i), drainWait)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err := c.start(ctx, i); err != nil {
			return nil, err
		}
	}
	return nil, nil
}
