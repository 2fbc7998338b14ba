package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/smartclient/smartclient/testbed"
)

const testbedUsage = `usage: smartclient testbed <up|down|status|fault> [flags]

Hosts for trying failures by hand: Linux network namespaces joined by a
bridge whose gateway address is this machine's (needs root, iproute2,
iptables). Tests use the testbed package instead.

  up     [--hosts N] [--prefix P] [--subnet S]  create a bed that stays until 'down'; print its hosts
  down   [--prefix P | --bed NAME]              remove the beds of prefix P (a running test's bed only with --bed)
  status [--prefix P]                           list the beds: owner, subnet, namespaces
  fault  [--bed NAME] KIND ARGS...              inject a fault that stays until 'fault heal':
           blackhole HOST | refuse HOST PORT | loss HOST PERCENT |
           partition HOST HOST | partition-client HOST |
           bandwidth HOST BITS_PER_SEC | heal

HOST is h1, h2, ... Run a program on a host with
  ip netns exec NAMESPACE PROGRAM ARGS...
(up prints each host's namespace).
`

func runTestbed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("missing subcommand: up, down, status or fault")
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("testbed " + sub)
	prefix := fs.String("prefix", testbed.DefaultPrefix, "name prefix of the bed's namespaces, links and rules")
	switch sub {
	case "-h", "-help", "--help", "help":
		return helpError{fs: fs, usage: testbedUsage}
	}
	parse := func(maxPos int) ([]string, error) {
		pos, err := splitArgs(fs, args)
		if errors.Is(err, flag.ErrHelp) {
			return nil, helpError{fs: fs, usage: testbedUsage}
		}
		if err != nil {
			return nil, err
		}
		if len(pos) > maxPos {
			return nil, usagef("unexpected argument %q", pos[maxPos])
		}
		return pos, nil
	}
	switch sub {
	case "up":
		hosts := fs.Int("hosts", testbed.DefaultHosts, "number of hosts")
		subnet := fs.String("subnet", "", "the bridge's IPv4 /24 (default: the first free 10.77.N.0/24)")
		if _, err := parse(0); err != nil {
			return err
		}
		cfg := testbed.Config{Hosts: *hosts, Prefix: *prefix, Subnet: *subnet}
		if *hosts < 1 {
			return usagef("--hosts %d: must be in 1..%d", *hosts, testbed.MaxHosts)
		}
		if err := cfg.Validate(); err != nil {
			return usagef("%v", err)
		}
		b, err := testbed.Up(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "bed %s: subnet %s, gateway (this machine) %s\n", b.Name(), b.Subnet(), b.Gateway())
		for _, h := range b.Hosts() {
			fmt.Fprintf(stdout, "%-4s %-15s netns %s\n", h.Name, h.Addr, h.Namespace())
		}
		fmt.Fprintf(stdout, "run on a host: ip netns exec %s PROGRAM ...\n", b.Hosts()[0].Namespace())
		fmt.Fprintf(stdout, "remove: smartclient testbed down --prefix %s\n", *prefix)
		return nil

	case "down":
		bed := fs.String("bed", "", "remove only this bed (PREFIX-XXXX)")
		if _, err := parse(0); err != nil {
			return err
		}
		what := *prefix
		if *bed != "" {
			what = *bed
		}
		names, err := testbed.Down(ctx, what)
		for _, n := range names {
			fmt.Fprintf(stdout, "removed %s\n", n)
		}
		if *bed == "" {
			// Down leaves the beds of running tests alone; say so.
			if beds, lerr := testbed.List(ctx, *prefix); lerr == nil {
				for _, b := range beds {
					if b.Alive && !b.Persistent && b.Subnet != "" {
						fmt.Fprintf(stdout, "kept %s: its owner, pid %d, still runs (remove it anyway with --bed %s)\n", b.Name, b.Pid, b.Name)
					}
				}
			}
		}
		if len(names) == 0 && err == nil {
			fmt.Fprintf(stdout, "no bed %s removed\n", what)
		}
		return err

	case "status":
		if _, err := parse(0); err != nil {
			return err
		}
		beds, err := testbed.List(ctx, *prefix)
		if err != nil {
			return err
		}
		if len(beds) == 0 {
			fmt.Fprintln(stdout, "no beds")
		}
		for _, b := range beds {
			owner := "owner pid " + strconv.Itoa(b.Pid)
			switch {
			case b.Subnet == "":
				owner = "no record (orphan)"
			case b.Persistent:
				owner = "persistent"
			case !b.Alive:
				owner += " (dead: the next New sweeps it)"
			}
			fmt.Fprintf(stdout, "%s  subnet %s  hosts %d  %s  netns: %s\n",
				b.Name, orDash(b.Subnet), b.Hosts, owner, orDash(strings.Join(b.Netns, " ")))
		}
		return nil

	case "fault":
		bedName := fs.String("bed", "", "the bed (PREFIX-XXXX; default: the only bed of --prefix)")
		pos, err := parse(4)
		if err != nil {
			return err
		}
		if len(pos) == 0 {
			return usagef("missing fault kind: blackhole, refuse, loss, partition, partition-client, bandwidth or heal")
		}
		if err := checkFaultArgs(pos[0], pos[1:]); err != nil {
			return err
		}
		name := *bedName
		if name == "" {
			if name, err = onlyBed(ctx, *prefix); err != nil {
				return err
			}
		}
		b, err := testbed.Attach(ctx, name)
		if err != nil {
			return err
		}
		f, err := injectByName(b, pos[0], pos[1:])
		if err != nil {
			return err
		}
		if f == nil {
			fmt.Fprintf(stdout, "healed every fault on %s\n", name)
		} else {
			fmt.Fprintf(stdout, "%s on %s (until: smartclient testbed fault --bed %s heal)\n", f.Name(), name, name)
		}
		return nil
	}
	return usagef("unknown subcommand %q: up, down, status or fault", sub)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// onlyBed names the one bed of prefix, or says why there is none to pick.
func onlyBed(ctx context.Context, prefix string) (string, error) {
	beds, err := testbed.List(ctx, prefix)
	if err != nil {
		return "", err
	}
	var names []string
	for _, b := range beds {
		if strings.HasPrefix(b.Name, prefix+"-") && b.Subnet != "" {
			names = append(names, b.Name)
		}
	}
	switch len(names) {
	case 0:
		return "", fmt.Errorf("no bed with prefix %s: create one with 'smartclient testbed up'", prefix)
	case 1:
		return names[0], nil
	}
	return "", usagef("%d beds with prefix %s (%s): choose one with --bed", len(names), prefix, strings.Join(names, ", "))
}

// faultArgs is how many arguments each fault kind takes.
var faultArgs = map[string]int{"blackhole": 1, "refuse": 2, "loss": 2, "partition": 2, "partition-client": 1, "bandwidth": 2, "heal": 0}

func checkFaultArgs(kind string, args []string) error {
	n, ok := faultArgs[kind]
	if !ok {
		return usagef("unknown fault %q: blackhole, refuse, loss, partition, partition-client, bandwidth or heal", kind)
	}
	if len(args) != n {
		return usagef("fault %s takes %d arguments, got %d (see 'smartclient help testbed')", kind, n, len(args))
	}
	return nil
}

// injectByName injects the fault named on the command line; "heal"
// removes them all and returns a nil Fault.
func injectByName(b *testbed.Bed, kind string, args []string) (testbed.Fault, error) {
	if err := checkFaultArgs(kind, args); err != nil {
		return nil, err
	}
	host := func(name string) (*testbed.Host, error) {
		for _, h := range b.Hosts() {
			if h.Name == name {
				return h, nil
			}
		}
		return nil, usagef("no host %q on %s (hosts h1..h%d)", name, b.Name(), len(b.Hosts()))
	}
	var hs []*testbed.Host
	for i := range args {
		if i == 1 && kind != "partition" {
			break
		}
		h, err := host(args[i])
		if err != nil {
			return nil, err
		}
		hs = append(hs, h)
	}
	num := func(s string) (float64, error) {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, usagef("fault %s: %q is not a number", kind, s)
		}
		return v, nil
	}
	switch kind {
	case "blackhole":
		return b.BlackHole(hs[0])
	case "partition":
		return b.Partition(hs[0], hs[1])
	case "partition-client":
		return b.PartitionClient(hs[0])
	case "refuse":
		port, err := strconv.Atoi(args[1])
		if err != nil {
			return nil, usagef("fault refuse: port %q is not a number", args[1])
		}
		return b.Refuse(hs[0], port)
	case "loss":
		pct, err := num(args[1])
		if err != nil {
			return nil, err
		}
		return b.Loss(hs[0], pct)
	case "bandwidth":
		bps, err := num(args[1])
		if err != nil {
			return nil, err
		}
		return b.Bandwidth(hs[0], int64(bps))
	}
	return nil, b.HealAll()
}
