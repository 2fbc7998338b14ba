package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/smartclient/smartclient/agent"
	"github.com/smartclient/smartclient/gossip"
)

// DefaultAgentListen is where `smartclient agent` serves by default: every
// address, since directors poll it from other hosts.
const DefaultAgentListen = ":9100"

const agentUsage = `usage: smartclient agent --target HOST:PORT [flags]

Runs beside an unmodified server (nginx, sshd, vsftpd, anything on a TCP
port): measures the machine's load average and CPU, the established
connections to the target's port, the byte rates of the target's network
interface and, optionally, a command's output; health-checks the target (TCP
connect, or HTTP GET with --check-http) in the background; and serves:

  GET  /load     JSON report ("healthy", "address", "t", ...) with the wire
                 load record in the Smartclient-Load header; always 200, an
                 unhealthy target is "healthy": false and state draining
  GET  /members  the gossip member list (with --gossip-bind)
  GET  /healthz  the agent's own liveness
  POST /drain    (loopback only) report draining, exit after --drain-grace

SIGINT/SIGTERM drain the same way. In Go, a director polls agents with
agent.Poller, which maps each member URL to its agent's URL. Prints
"listening on ADDR" when ready. A target that is down is reported unhealthy;
the agent keeps running.
`

// parseAgentFlags fills an agent.Config and the listen address from the
// command line.
func parseAgentFlags(args []string) (agent.Config, string, error) {
	var (
		cfg              agent.Config
		listen, utilFrom string
		gossipBind, zone string
		join             memberList // a repeatable string flag
		capacity         int
	)
	fs := newFlagSet("agent")
	fs.StringVar(&cfg.Target, "target", "", "the server's HOST:PORT, e.g. 127.0.0.1:22 (required)")
	fs.StringVar(&listen, "listen", DefaultAgentListen, "address the agent serves on (port 0: any free port)")
	fs.StringVar(&cfg.Service, "service", "", "service label service://NAME (required with --gossip-bind)")
	fs.StringVar(&cfg.CheckHTTP, "check-http", "", "health-check with HTTP GET PATH on the target (2xx/3xx passes) instead of a TCP connect")
	fs.IntVar(&capacity, "capacity", 0, "connections the target serves at once; util = connections/capacity (0: unknown, util from CPU)")
	fs.StringVar(&utilFrom, "util-from", "auto", "utilisation source: auto, conns, cpu, load or cmd")
	fs.DurationVar(&cfg.Interval, "interval", agent.DefaultInterval, "pause between samples, health checks and load-command runs")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", 0, "bound on each health check (0: --interval, at most 1s)")
	fs.StringVar(&cfg.LoadCmd, "load-cmd", "", "command line run with /bin/sh -c each --interval; its first output line, a number, is cmd_value")
	fs.DurationVar(&cfg.CmdTimeout, "cmd-timeout", 0, "bound on each --load-cmd run (0: --interval)")
	fs.StringVar(&cfg.URL, "advertise", "", "member URL clients use for the target (default http://TARGET)")
	fs.DurationVar(&cfg.DrainGrace, "drain-grace", agent.DefaultDrainGrace, "how long to report draining before exiting, after SIGTERM or POST /drain")
	fs.StringVar(&gossipBind, "gossip-bind", "", "IP:PORT to gossip membership on (hashicorp/memberlist; port 0: any)")
	fs.Var(&join, "join", "gossip peer HOST:PORT to join (repeat for more; one answer is enough)")
	fs.StringVar(&zone, "zone", "", "this member's zone, gossiped with its URL")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, "", helpError{fs: fs, usage: agentUsage}
		}
		return cfg, "", err
	}
	if cfg.Target == "" {
		return cfg, "", usagef("--target is required, e.g. --target 127.0.0.1:22")
	}
	host, port, err := net.SplitHostPort(cfg.Target)
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
		return cfg, "", usagef("--target %q: want HOST:PORT with a port in 1..65535", cfg.Target)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() && cfg.URL == "" {
		return cfg, "", usagef("--target %q: clients cannot reach an unspecified address; give --advertise URL", cfg.Target)
	}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return cfg, "", usagef("--listen %q: want [HOST]:PORT", listen)
	}
	if capacity < 0 || capacity > 1<<20 {
		return cfg, "", usagef("--capacity %d: must be 0..%d", capacity, 1<<20)
	}
	cfg.Capacity = capacity
	if cfg.UtilFrom, err = agent.ParseUtilSource(utilFrom); err != nil {
		return cfg, "", usagef("--util-from: %v", err)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
		min  time.Duration
	}{{"--interval", cfg.Interval, 10 * time.Millisecond}, {"--check-timeout", cfg.CheckTimeout, 0},
		{"--cmd-timeout", cfg.CmdTimeout, 0}, {"--drain-grace", cfg.DrainGrace, time.Millisecond}} {
		if d.v < d.min || d.v > time.Hour {
			return cfg, "", usagef("%s %v: must be %v..1h", d.flag, d.v, d.min)
		}
	}
	if gossipBind != "" {
		h, p, err := net.SplitHostPort(gossipBind)
		pn, perr := strconv.Atoi(p)
		ip, iperr := netip.ParseAddr(h)
		if err != nil || perr != nil || pn < 0 || pn > 65535 || iperr != nil {
			return cfg, "", usagef("--gossip-bind %q: want IP:PORT, e.g. 0.0.0.0:%d", gossipBind, gossip.DefaultPort)
		}
		cfg.Gossip = &gossip.Config{BindAddr: h, BindPort: pn, Zone: zone, Loopback: ip.IsLoopback()}
	} else if len(join) > 0 || zone != "" {
		return cfg, "", usagef("--join and --zone need --gossip-bind")
	}
	for _, j := range join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return cfg, "", usagef("--join %q: want HOST:PORT", j)
		}
	}
	cfg.Join = join
	// Whatever the flags above did not catch (service name, advertise URL,
	// check path, util source without its input) Validate names.
	if err := cfg.Validate(); err != nil {
		return cfg, "", usagef("%v", flagNames(err))
	}
	return cfg, listen, nil
}

// flagNames turns a Config error's field name into the flag's.
func flagNames(err error) string {
	s := err.Error()
	for _, r := range [][2]string{{"agent: URL", "--advertise"}, {"agent: Service", "--service"}, {"agent: CheckHTTP", "--check-http"},
		{"agent: UtilFrom cmd needs a LoadCmd", "--util-from cmd needs --load-cmd"},
		{"agent: UtilFrom conns needs a Capacity", "--util-from conns needs --capacity"},
		{"agent: Gossip needs a Service (service://NAME)", "--gossip-bind needs --service service://NAME"}} {
		if len(s) >= len(r[0]) && s[:len(r[0])] == r[0] {
			return r[1] + s[len(r[0]):]
		}
	}
	return s
}

// runAgent is `smartclient agent`: parse flags, take the first readings,
// listen, print the address, then serve until ctx ends or POST /drain, and
// drain.
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, listen, err := parseAgentFlags(args)
	if err != nil {
		return err
	}
	cfg.Logf = log.New(stderr, "smartclient agent: ", log.LstdFlags).Printf
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return usagef("--listen: %v", err)
	}
	a, err := agent.New(cfg)
	if err != nil {
		ln.Close()
		if cfg.Gossip != nil {
			return usagef("--gossip-bind: %v", err)
		}
		return err
	}
	r := a.Report()
	health := "healthy"
	if !r.Healthy {
		health = "unhealthy: " + r.Check.Error
	}
	fmt.Fprintf(stdout, "target: %s (%s check) %s\n", cfg.Target, r.Check.Kind, health)
	fmt.Fprintf(stdout, "member: %s\n", r.URL)
	if g := a.GossipAddr(); g != "" {
		fmt.Fprintf(stdout, "gossip on %s\n", g)
	}
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	if err := a.Serve(ctx, ln); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintln(stdout, "stopped")
	return nil
}
