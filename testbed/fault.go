package testbed

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is an injected fault. Heal undoes it; it is idempotent and safe to
// call from any goroutine, and Bed.Close heals every fault still active.
type Fault interface {
	// Name says what the fault is and where, e.g. "blackhole h2".
	Name() string
	// Heal removes the fault. A second call returns the first's result.
	Heal() error
}

// faultTimeout bounds the tools one fault or heal runs.
const faultTimeout = 30 * time.Second

// rule is one iptables rule in a host's namespace.
type rule struct {
	ns    string
	chain string
	spec  []string // match and target, without the comment
}

// args is the ip command line that runs iptables in the rule's namespace;
// iptables is the tool's path (ip netns exec searches PATH, which may lack
// /usr/sbin).
func (r rule) args(iptables, op, tag string) []string {
	a := []string{"netns", "exec", r.ns, iptables, "-w", "5", op, r.chain}
	a = append(a, r.spec...)
	return append(a, "-m", "comment", "--comment", tag)
}

// qdisc is a tc root qdisc on an interface, in a namespace or ("") the
// root namespace.
type qdisc struct {
	ns, dev string
	spec    []string
}

func (q qdisc) args(op string) []string {
	var a []string
	if q.ns != "" {
		a = append(a, "-n", q.ns)
	}
	a = append(a, "qdisc", op, "dev", q.dev, "root")
	if op != "del" {
		a = append(a, q.spec...)
	}
	return a
}

// netFault is a fault made of iptables rules and tc qdiscs, removed in
// reverse order by Heal.
type netFault struct {
	bed    *Bed
	name   string
	tag    string
	rules  []rule
	qdiscs []qdisc

	once sync.Once
	err  error
}

func (f *netFault) Name() string { return f.name }

func (f *netFault) Heal() error {
	f.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
		defer cancel()
		var errs []error
		ipt, err := tool("iptables")
		if err != nil && len(f.rules) > 0 {
			errs = append(errs, err)
		}
		for i := len(f.rules) - 1; i >= 0 && err == nil; i-- {
			if _, err := run(ctx, "ip", f.rules[i].args(ipt, "-D", f.tag)...); err != nil && !notFound(err) {
				errs = append(errs, err)
			}
		}
		for i := len(f.qdiscs) - 1; i >= 0; i-- {
			if _, err := run(ctx, "tc", f.qdiscs[i].args("del")...); err != nil && !notFound(err) {
				errs = append(errs, err)
			}
		}
		f.bed.untrack(f)
		if len(errs) > 0 {
			f.err = fmt.Errorf("testbed: healing %s: %w", f.name, errors.Join(errs...))
		}
	})
	return f.err
}

// inject applies the fault's rules and qdiscs; on failure it removes what
// it applied.
func (b *Bed) inject(f *netFault) (Fault, error) {
	f.bed, f.tag = b, b.faultTag()
	if err := b.track(f); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	applied := &netFault{bed: b, name: f.name, tag: f.tag}
	fail := func(err error) (Fault, error) {
		b.untrack(f)
		return nil, errors.Join(fmt.Errorf("testbed: injecting %s: %w", f.name, err), applied.Heal())
	}
	ipt, err := tool("iptables")
	if err != nil && len(f.rules) > 0 {
		return fail(err)
	}
	for _, r := range f.rules {
		if _, err := run(ctx, "ip", r.args(ipt, "-I", f.tag)...); err != nil {
			return fail(err)
		}
		applied.rules = append(applied.rules, r)
	}
	for _, q := range f.qdiscs {
		if _, err := run(ctx, "tc", q.args("add")...); err != nil {
			return fail(err)
		}
		applied.qdiscs = append(applied.qdiscs, q)
	}
	return f, nil
}

func (b *Bed) own(hs ...*Host) error {
	for _, h := range hs {
		if h == nil || h.bed != b {
			return errors.New("testbed: host is not on this bed")
		}
	}
	return nil
}

// BlackHole drops every packet into and out of h (loopback excepted),
// silently: no reset, no ICMP, so peers see connections time out, not
// fail. Established connections stall too. Mechanism: iptables DROP at
// the top of INPUT and OUTPUT in h's namespace.
func (b *Bed) BlackHole(h *Host) (Fault, error) {
	if err := b.own(h); err != nil {
		return nil, err
	}
	return b.inject(&netFault{
		name: "blackhole " + h.Name,
		rules: []rule{
			{h.ns, "INPUT", []string{"!", "-i", "lo", "-j", "DROP"}},
			{h.ns, "OUTPUT", []string{"!", "-o", "lo", "-j", "DROP"}},
		},
	})
}

// Refuse makes h answer every TCP segment to port with a reset: new
// connections are refused at once (ECONNREFUSED) and established ones are
// reset on their next segment. Mechanism: iptables REJECT --reject-with
// tcp-reset at the top of INPUT in h's namespace.
func (b *Bed) Refuse(h *Host, port int) (Fault, error) {
	if err := b.own(h); err != nil {
		return nil, err
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("testbed: Refuse: port %d out of 1..65535", port)
	}
	return b.inject(&netFault{
		name: "refuse " + h.Name + ":" + strconv.Itoa(port),
		rules: []rule{
			{h.ns, "INPUT", []string{"-p", "tcp", "--dport", strconv.Itoa(port), "-j", "REJECT", "--reject-with", "tcp-reset"}},
		},
	})
}

// Loss drops each packet into or out of h (loopback excepted) with
// probability pct/100, independently in each direction, so a TCP exchange
// sees retransmissions and an occasional stall. pct is in (0, 100].
// Mechanism: iptables -m statistic --mode random DROP in INPUT and OUTPUT
// of h's namespace.
func (b *Bed) Loss(h *Host, pct float64) (Fault, error) {
	if err := b.own(h); err != nil {
		return nil, err
	}
	if !(pct > 0 && pct <= 100) {
		return nil, fmt.Errorf("testbed: Loss: %v%% out of (0, 100]", pct)
	}
	p := strconv.FormatFloat(pct/100, 'f', 6, 64)
	return b.inject(&netFault{
		name: "loss " + strconv.FormatFloat(pct, 'g', -1, 64) + "% " + h.Name,
		rules: []rule{
			{h.ns, "INPUT", []string{"!", "-i", "lo", "-m", "statistic", "--mode", "random", "--probability", p, "-j", "DROP"}},
			{h.ns, "OUTPUT", []string{"!", "-o", "lo", "-m", "statistic", "--mode", "random", "--probability", p, "-j", "DROP"}},
		},
	})
}

// Partition cuts a and c off from each other, silently (DROP), in both
// directions; both still reach every other host and the client.
// Mechanism: iptables DROP by peer address in INPUT and OUTPUT of both
// namespaces.
func (b *Bed) Partition(a, c *Host) (Fault, error) {
	if err := b.own(a, c); err != nil {
		return nil, err
	}
	if a == c {
		return nil, errors.New("testbed: Partition: a host cannot be partitioned from itself")
	}
	return b.inject(&netFault{
		name:  "partition " + a.Name + "|" + c.Name,
		rules: cutRules(a.ns, c.Addr.String(), c.ns, a.Addr.String()),
	})
}

// PartitionClient cuts h off from the client (the root namespace, Gateway)
// silently, in both directions; h still reaches the other hosts and they
// reach it. Mechanism: iptables DROP of the gateway's address in INPUT and
// OUTPUT of h's namespace.
func (b *Bed) PartitionClient(h *Host) (Fault, error) {
	if err := b.own(h); err != nil {
		return nil, err
	}
	return b.inject(&netFault{
		name:  "partition client|" + h.Name,
		rules: cutRules(h.ns, b.gw.String(), "", ""),
	})
}

func cutRules(ns1, peer1, ns2, peer2 string) []rule {
	rs := []rule{
		{ns1, "INPUT", []string{"-s", peer1, "-j", "DROP"}},
		{ns1, "OUTPUT", []string{"-d", peer1, "-j", "DROP"}},
	}
	if ns2 != "" {
		rs = append(rs,
			rule{ns2, "INPUT", []string{"-s", peer2, "-j", "DROP"}},
			rule{ns2, "OUTPUT", []string{"-d", peer2, "-j", "DROP"}})
	}
	return rs
}

// Bandwidth limits h's link to bitsPerSec in each direction (traffic to h
// and traffic from h, separately). Mechanism: a tc tbf root qdisc on both
// ends of h's veth. tbf is in this kernel (netem is not); where it is
// missing, Bandwidth returns tc's error.
func (b *Bed) Bandwidth(h *Host, bitsPerSec int64) (Fault, error) {
	if err := b.own(h); err != nil {
		return nil, err
	}
	const minRate, maxRate = 8_000, 100_000_000_000
	if bitsPerSec < minRate || bitsPerSec > maxRate {
		return nil, fmt.Errorf("testbed: Bandwidth: %d bit/s out of %d..%d", bitsPerSec, minRate, maxRate)
	}
	spec := tbfSpec(bitsPerSec)
	f, err := b.inject(&netFault{
		name: "bandwidth " + strconv.FormatInt(bitsPerSec, 10) + "bit/s " + h.Name,
		qdiscs: []qdisc{
			{"", h.veth, spec},
			{h.ns, "eth0", spec},
		},
	})
	var ce *cmdError
	if errors.As(err, &ce) && (strings.Contains(ce.msg, "nknown qdisc") || strings.Contains(ce.msg, "No such file or directory")) {
		return nil, fmt.Errorf("%w (this kernel lacks sch_tbf: bandwidth caps are unavailable here)", err)
	}
	return f, err
}

// tbfSpec sizes the bucket at 10 ms of traffic (at least two full-size
// frames, so a frame always fits) and the queue at 100 ms, so the cap
// holds from the first kilobytes and a full queue drops rather than
// buffering seconds.
func tbfSpec(bitsPerSec int64) []string {
	bytesPerSec := bitsPerSec / 8
	burst := max(bytesPerSec/100, 2*1514)
	limit := max(bytesPerSec/10, 4*burst)
	return []string{"tbf",
		"rate", strconv.FormatInt(bitsPerSec, 10) + "bit",
		"burst", strconv.FormatInt(burst, 10),
		"limit", strconv.FormatInt(limit, 10)}
}

// HealAll removes every fault on the bed, whichever process injected it:
// each iptables rule in the hosts' namespaces whose comment starts with
// the bed's name, each tbf qdisc on the hosts' veths, and this process's
// slow links' toxics. It is `smartclient testbed fault heal`.
func (b *Bed) HealAll() error {
	b.mu.Lock()
	var faults []Fault
	for f := range b.faults {
		faults = append(faults, f)
	}
	b.mu.Unlock()
	var errs []error
	for _, f := range faults {
		if err := f.Heal(); err != nil {
			errs = append(errs, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	ipt, err := tool("iptables")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, h := range b.hosts {
		out, err := run(ctx, "ip", "netns", "exec", h.ns, ipt, "-w", "5", "-S")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			if !strings.HasPrefix(line, "-A ") || !strings.HasPrefix(ruleComment(line), b.name+"-f") {
				continue
			}
			args := append([]string{"netns", "exec", h.ns, ipt, "-w", "5", "-D"}, strings.Fields(line[3:])...)
			if _, err := run(ctx, "ip", args...); err != nil && !notFound(err) {
				errs = append(errs, err)
			}
		}
		for _, q := range []qdisc{{"", h.veth, nil}, {h.ns, "eth0", nil}} {
			show := []string{"qdisc", "show", "dev", q.dev, "root"}
			if q.ns != "" {
				show = append([]string{"-n", q.ns}, show...)
			}
			out, err := run(ctx, "tc", show...)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if strings.Contains(out, "tbf") {
				if _, err := run(ctx, "tc", q.args("del")...); err != nil && !notFound(err) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}
