package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNoNetns is wrapped by New's error when the machine cannot make the
// bed at all: not root, no iproute2, or the kernel refusing network
// namespaces, veths or bridges. Tests that need a bed fail on it, saying
// so; they do not skip.
var ErrNoNetns = errors.New("testbed: cannot create network namespaces")

// ErrClosed is returned by a Bed's methods after Close.
var ErrClosed = errors.New("testbed: bed closed")

// Bed is a set of hosts joined by a bridge. Its methods may be called from
// many goroutines. Close removes everything it made.
type Bed struct {
	name       string
	subnet     netip.Prefix
	gw         netip.Addr
	bridge     string
	hosts      []*Host
	persistent bool // made by Up: its record has no owner
	attached   bool // made by Attach: another process owns it

	mu       sync.Mutex
	closed   bool
	procs    map[*Proc]struct{}
	faults   map[Fault]struct{} // active faults and slow links
	nfault   int
	closing  sync.Once
	closeErr error
}

// Host is one network namespace on the bed.
type Host struct {
	Name string     // "h1", "h2", …
	Addr netip.Addr // its address on the bridge

	bed  *Bed
	ns   string // namespace name, also the root end of its veth
	veth string
}

// Namespace is the host's network namespace name, for `ip netns exec`.
func (h *Host) Namespace() string { return h.ns }

func (h *Host) String() string { return h.Name + "(" + h.Addr.String() + ")" }

// New creates a bed: a bridge carrying the gateway address in the root
// namespace and cfg.Hosts namespaces with a veth into it. It first removes
// the leftovers of beds whose owner died (see the package comment). A
// failure part-way removes what was made. New needs root and iproute2; it
// returns an error wrapping ErrNoNetns when the machine cannot make
// namespaces. Close the bed when done (t.Cleanup).
func New(ctx context.Context, cfg Config) (*Bed, error) {
	return create(ctx, cfg, false)
}

// Up creates a persistent bed: like New, but its record names no owner,
// so that it outlives this process and only Down (or Close) removes it.
// It is `smartclient testbed up`, for people; tests use New.
func Up(ctx context.Context, cfg Config) (*Bed, error) {
	return create(ctx, cfg, true)
}

func create(ctx context.Context, cfg Config, persistent bool) (*Bed, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: the testbed needs root (network namespaces, veths, iptables, tc); running as uid %d", ErrNoNetns, os.Geteuid())
	}
	if _, err := tool("ip"); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoNetns, err)
	}
	unlock, err := lockRunDir()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoNetns, err)
	}
	rec, err := reserve(ctx, cfg, persistent)
	unlock()
	if err != nil {
		return nil, err
	}
	b := &Bed{
		name:       rec.Name,
		bridge:     rec.Name + "-br",
		persistent: persistent,
		procs:      map[*Proc]struct{}{},
		faults:     map[Fault]struct{}{},
	}
	b.subnet, _ = parseSubnet(rec.Subnet)
	b.gw = gatewayAddr(b.subnet)
	b.addHosts(cfg.Hosts)
	if err := b.build(ctx); err != nil {
		// A fresh context: the caller's may be what ended.
		tctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		inv, ierr := takeInventory(tctx)
		if ierr == nil {
			ierr = teardown(tctx, b.name, inv)
		}
		return nil, errors.Join(err, ierr)
	}
	return b, nil
}

func (b *Bed) addHosts(n int) {
	for i := range n {
		ns := b.name + "-h" + strconv.Itoa(i+1)
		b.hosts = append(b.hosts, &Host{
			Name: "h" + strconv.Itoa(i+1),
			Addr: hostAddr(b.subnet, i),
			bed:  b,
			ns:   ns,
			veth: ns,
		})
	}
}

// reserve sweeps dead beds, picks a fresh name and a free subnet, and
// writes the bed's record. The caller holds the RunDir lock.
func reserve(ctx context.Context, cfg Config, persistent bool) (record, error) {
	if _, err := sweepDead(ctx, cfg.Prefix); err != nil {
		return record{}, fmt.Errorf("testbed: removing the leftovers of a dead bed: %w", err)
	}
	recs, err := readRecords()
	if err != nil {
		return record{}, err
	}
	inv, err := takeInventory(ctx)
	if err != nil {
		return record{}, err
	}
	taken := bedNames(recs, inv, cfg.Prefix)
	var name string
	for range 100 {
		var id [2]byte
		rand.Read(id[:])
		if n := cfg.Prefix + "-" + hex.EncodeToString(id[:]); !slices.Contains(taken, n) {
			name = n
			break
		}
	}
	if name == "" {
		return record{}, fmt.Errorf("testbed: no free name with prefix %q", cfg.Prefix)
	}
	subnet, err := pickSubnet(ctx, cfg.Subnet, recs)
	if err != nil {
		return record{}, err
	}
	rec := record{Name: name, Prefix: cfg.Prefix, Hosts: cfg.Hosts, Subnet: subnet.String(), Created: time.Now().UTC()}
	if !persistent {
		rec.Pid = os.Getpid()
		if rec.Start, err = procStart(rec.Pid); err != nil {
			return record{}, fmt.Errorf("testbed: own start time: %w", err)
		}
	}
	return rec, writeRecord(rec)
}

// pickSubnet returns want if it is free, or the first free 10.77.N.0/24.
// Taken: the subnets of recorded beds and every IPv4 address and route of
// the root namespace.
func pickSubnet(ctx context.Context, want string, recs []record) (netip.Prefix, error) {
	var used []netip.Prefix
	for _, r := range recs {
		if p, err := netip.ParsePrefix(r.Subnet); err == nil {
			used = append(used, p)
		}
	}
	out, err := run(ctx, "ip", "-4", "-o", "addr", "show")
	if err != nil {
		return netip.Prefix{}, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				if p, err := netip.ParsePrefix(f[i+1]); err == nil {
					used = append(used, p.Masked())
				}
			}
		}
	}
	out, err = run(ctx, "ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return netip.Prefix{}, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if dst == "local" || dst == "broadcast" || dst == "unicast" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if p, err := netip.ParsePrefix(dst); err == nil && p.Bits() > 0 {
			used = append(used, p)
		}
	}
	free := func(p netip.Prefix) bool {
		for _, u := range used {
			if u.Overlaps(p) {
				return false
			}
		}
		return true
	}
	if want != "" {
		p, err := parseSubnet(want)
		if err != nil {
			return netip.Prefix{}, err
		}
		if !free(p) {
			return netip.Prefix{}, fmt.Errorf("testbed: Subnet %s is in use by another bed or a root-namespace address or route", p)
		}
		return p, nil
	}
	for n := range 256 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(n), 0}), 24)
		if free(p) {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("testbed: no free subnet in 10.77.0.0/16; give Config.Subnet")
}

// build makes the bridge and the hosts.
func (b *Bed) build(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(RunDir, b.name), 0o755); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	var batch strings.Builder
	fmt.Fprintf(&batch, "link add %s type bridge\n", b.bridge)
	fmt.Fprintf(&batch, "addr add %s dev %s\n", netip.PrefixFrom(b.gw, 24), b.bridge)
	fmt.Fprintf(&batch, "link set %s up\n", b.bridge)
	for _, h := range b.hosts {
		fmt.Fprintf(&batch, "netns add %s\n", h.ns)
		fmt.Fprintf(&batch, "link add %s type veth peer name eth0 netns %s\n", h.veth, h.ns)
		fmt.Fprintf(&batch, "link set %s master %s up\n", h.veth, b.bridge)
	}
	if _, err := runInput(ctx, []byte(batch.String()), "ip", "-batch", "-"); err != nil {
		return fmt.Errorf("%w: %v", ErrNoNetns, err)
	}
	for _, h := range b.hosts {
		in := fmt.Sprintf("addr add %s dev eth0\nlink set eth0 up\nlink set lo up\n", netip.PrefixFrom(h.Addr, 24))
		if _, err := runInput(ctx, []byte(in), "ip", "-n", h.ns, "-batch", "-"); err != nil {
			return fmt.Errorf("%w: configuring %s: %v", ErrNoNetns, h.ns, err)
		}
	}
	// With br_netfilter loaded and bridge-nf-call-iptables on, frames
	// bridged between two hosts traverse the root namespace's FORWARD
	// chain, whose policy may be DROP (Docker sets it so). One ACCEPT for
	// this bridge, tagged with the bed's name for sweeping, keeps host-to-
	// host traffic independent of the machine's firewall.
	if v, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil && strings.TrimSpace(string(v)) == "1" {
		if _, err := run(ctx, "iptables", "-w", "5", "-I", "FORWARD", "-i", b.bridge, "-o", b.bridge,
			"-m", "comment", "--comment", b.name, "-j", "ACCEPT"); err != nil {
			return err
		}
	}
	return nil
}

// Attach returns the bed called name (PREFIX-ID, as Up printed it), made
// by another process, to start processes on it and inject faults into it.
// Close on an attached bed ends only what this process started and heals
// only the faults it injected; the bed itself stays.
func Attach(ctx context.Context, name string) (*Bed, error) {
	if !bedNameRE.MatchString(name) {
		return nil, fmt.Errorf("testbed: bed name %q: want PREFIX-XXXX as `smartclient testbed status` lists it", name)
	}
	r, err := loadRecord(recordPath(name))
	if err != nil {
		return nil, fmt.Errorf("testbed: no bed %q: %w", name, err)
	}
	b := &Bed{name: r.Name, bridge: r.Name + "-br", attached: true, procs: map[*Proc]struct{}{}, faults: map[Fault]struct{}{}}
	if b.subnet, err = parseSubnet(r.Subnet); err != nil {
		return nil, err
	}
	if r.Hosts < 1 || r.Hosts > MaxHosts {
		return nil, fmt.Errorf("testbed: bed %q: record says %d hosts", name, r.Hosts)
	}
	b.gw = gatewayAddr(b.subnet)
	b.addHosts(r.Hosts)
	return b, nil
}

// Name is the bed's name, PREFIX-ID: every namespace and link it made
// starts with it.
func (b *Bed) Name() string { return b.name }

// Hosts returns the bed's hosts, h1 first.
func (b *Bed) Hosts() []*Host { return append([]*Host(nil), b.hosts...) }

// Gateway is the root namespace's address on the bridge: the address the
// hosts see the test process (the client) connect from.
func (b *Bed) Gateway() netip.Addr { return b.gw }

// Subnet is the bridge's /24.
func (b *Bed) Subnet() netip.Prefix { return b.subnet }

// Close heals every fault, closes the slow links, kills every process the
// bed started (and any other process in its namespaces), and deletes the
// namespaces, the bridge, the root FORWARD rule, the scratch directory
// and the record. It is idempotent: later calls return the first one's
// result. On a bed from Attach it only heals, closes and kills what this
// process made.
func (b *Bed) Close() error {
	b.closing.Do(func() {
		b.mu.Lock()
		b.closed = true
		faults := make([]Fault, 0, len(b.faults))
		for f := range b.faults {
			faults = append(faults, f)
		}
		procs := make([]*Proc, 0, len(b.procs))
		for p := range b.procs {
			procs = append(procs, p)
		}
		b.mu.Unlock()

		var errs []error
		// Faults before links: a link whose proxy is dialling a black-
		// holed host stops only once the dial ends.
		for _, f := range faults {
			if _, ok := f.(*Link); ok {
				continue
			}
			if err := f.Heal(); err != nil {
				errs = append(errs, err)
			}
		}
		for _, f := range faults {
			if l, ok := f.(*Link); ok {
				if err := l.Close(); err != nil {
					errs = append(errs, err)
				}
			}
		}
		for _, p := range procs {
			p.Kill()
		}
		for _, p := range procs {
			select {
			case <-p.Exited():
			case <-time.After(10 * time.Second):
				errs = append(errs, fmt.Errorf("testbed: process %d did not exit 10s after SIGKILL", p.Pid()))
			}
		}
		if !b.attached {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			inv, err := takeInventory(ctx)
			if err == nil {
				err = teardown(ctx, b.name, inv)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		b.closeErr = errors.Join(errs...)
	})
	return b.closeErr
}

// track registers an active fault; it fails once the bed is closed.
func (b *Bed) track(f Fault) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	b.faults[f] = struct{}{}
	return nil
}

func (b *Bed) untrack(f Fault) {
	b.mu.Lock()
	delete(b.faults, f)
	b.mu.Unlock()
}

// faultTag is the iptables comment of the bed's next fault; HealAll finds
// every rule whose comment starts with the bed's name and "-f".
func (b *Bed) faultTag() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nfault++
	return b.name + "-f" + strconv.Itoa(b.nfault)
}
