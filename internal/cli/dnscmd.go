package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"time"

	"github.com/smartclient/smartclient/agent"
	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/dnsrr"
	"github.com/smartclient/smartclient/smarthttp"
)

// DefaultDNSListen is where `smartclient dns` serves by default: loopback,
// on an unprivileged port, so that trying it needs no root.
const DefaultDNSListen = "127.0.0.1:5353"

const dnsUsage = `usage: smartclient dns --zone NAME --member http://IP:PORT [--member ...] [flags]
       smartclient dns --zone NAME --member http://IP:PORT [--agent MEMBER=AGENT_URL ...] [flags]

Classic DNS round robin, health-checked: an authoritative DNS server (UDP
and TCP, default on ` + DefaultDNSListen + `) that answers A and AAAA queries for
NAME with the addresses of the members that are currently healthy, rotated
by one on every query. Other names under NAME get NXDOMAIN; names outside
it are refused. Answers too big for UDP are truncated (TC) and complete
over TCP. When all members share a scheme, _SCHEME._tcp.NAME (e.g.
_http._tcp.NAME) answers SRV with the members' port.

Members are URLs with IP-address hosts (an answer is an address) that share
one port (an answer carries no port): clients use http://NAME:PORT/.
Every --interval each member is checked - GET --health-path on the member,
or its agent's load record with --agent - and the director's failure
detector decides: a member failing 3 checks in a row is left out, and is
readmitted, with exponential backoff, only after a check passes; a member
whose agent reports it draining or unhealthy is left out at once. If no
member is healthy, every member is answered (panic mode, logged): an empty
answer would fail every client for sure, while a member that merely looks
dead may still serve.

--ttl is the time resolvers and clients may cache an answer: a longer TTL
means fewer queries but a failed member stays in caches for up to that
long (after the 3 checks it takes to notice), and rotation is per cache,
not per client. Prints "listening: ADDR" when ready.
`

// dnsConfig is what `smartclient dns` runs.
type dnsConfig struct {
	listen     string
	zone       string
	ttl        time.Duration
	answers    int
	members    []balance.Member
	port       uint16 // the members' shared port
	srv        string // SRV service, the members' shared scheme; "" if mixed
	monitor    dnsrr.MonitorConfig
	healthPath string
	agents     *agent.Poller // nil: check members with GET healthPath
}

func parseDNSFlags(args []string) (dnsConfig, error) {
	var (
		cfg             dnsConfig
		members, agents memberList
	)
	fs := newFlagSet("dns")
	fs.StringVar(&cfg.zone, "zone", "", "the name to answer, e.g. web.example. (required)")
	fs.StringVar(&cfg.listen, "listen", DefaultDNSListen, "UDP and TCP address to serve DNS on")
	fs.Var(&members, "member", "member base URL with an IP-address host, e.g. http://10.0.0.1:8080; repeat for each member (all on one port)")
	fs.StringVar(&cfg.healthPath, "health-path", "/", "path checked on each member: healthy unless it fails, answers 5xx or says draining")
	fs.Var(&agents, "agent", "MEMBER=AGENT_URL: check that member through the smartclient agent beside it instead (GET "+agent.LoadPath+"); give one for every member")
	fs.DurationVar(&cfg.ttl, "ttl", 5*time.Second, "TTL of answers, whole seconds: how long resolvers may cache them")
	fs.IntVar(&cfg.answers, "answers", 0, "at most this many addresses per answer (0: every healthy member)")
	fs.DurationVar(&cfg.monitor.Interval, "interval", time.Second, "time between health checks of each member")
	fs.DurationVar(&cfg.monitor.CheckTimeout, "check-timeout", time.Second, "bound on one health check")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, helpError{fs: fs, usage: dnsUsage}
		}
		return cfg, usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return cfg, usagef("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if cfg.zone == "" {
		return cfg, usagef("--zone is required, e.g. --zone web.example.")
	}
	if _, err := dnsrr.NewZone(cfg.zone, cfg.ttl, cfg.answers); err != nil {
		return cfg, usagef("--zone %q: not a valid domain name", cfg.zone)
	}
	if _, _, err := net.SplitHostPort(cfg.listen); err != nil {
		return cfg, usagef("--listen %q: want HOST:PORT, e.g. %s", cfg.listen, DefaultDNSListen)
	}
	if len(members) == 0 {
		return cfg, usagef("no members: give at least one --member http://IP:PORT")
	}
	ms, err := members.members()
	if err != nil {
		return cfg, err
	}
	var port uint16
	for i, m := range ms {
		ap, err := dnsrr.MemberAddr(m.URL)
		if err != nil {
			if errors.Is(err, dnsrr.ErrNotAddress) {
				return cfg, usagef("--member %q: the host must be an IP address: a DNS answer is an address", members[i])
			}
			return cfg, usagef("--member %q: %v", members[i], err)
		}
		if i > 0 && ap.Port() != port {
			return cfg, usagef("--member %q: port %d differs from %q's port %d; an address record carries no port, so all members must share one",
				members[i], ap.Port(), members[0], port)
		}
		port = ap.Port()
	}
	cfg.members, cfg.port = ms, port
	cfg.srv, _, _ = strings.Cut(ms[0].URL, "://")
	for _, m := range ms {
		if !strings.HasPrefix(m.URL, cfg.srv+"://") {
			cfg.srv = ""
		}
	}
	if cfg.ttl < 0 || cfg.ttl%time.Second != 0 {
		return cfg, usagef("--ttl %v: must be whole seconds >= 0", cfg.ttl)
	}
	if cfg.answers < 0 {
		return cfg, usagef("--answers %d: must be >= 0", cfg.answers)
	}
	if cfg.monitor.Interval <= 0 {
		return cfg, usagef("--interval %v: must be > 0", cfg.monitor.Interval)
	}
	if cfg.monitor.CheckTimeout <= 0 {
		return cfg, usagef("--check-timeout %v: must be > 0", cfg.monitor.CheckTimeout)
	}
	if len(agents) > 0 {
		if set["health-path"] {
			return cfg, usagef("--health-path and --agent: give one; with --agent the agent reports health")
		}
		p, err := agentPoller(agents, cfg.members, agent.LoadPath)
		if err != nil {
			return cfg, err
		}
		for _, m := range cfg.members {
			if _, ok := p.Agents[m.URL]; !ok {
				return cfg, usagef("--agent: member %s has no agent; with --agent give one for every --member", m.URL)
			}
		}
		cfg.agents = p
	} else if cfg.healthPath == "" || cfg.healthPath[0] != '/' {
		return cfg, usagef("--health-path %q: must start with /", cfg.healthPath)
	}
	return cfg, nil
}

func runDNS(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- string) error {
	cfg, err := parseDNSFlags(args)
	if err != nil {
		return err
	}
	zone, err := dnsrr.NewZone(cfg.zone, cfg.ttl, cfg.answers)
	if err != nil {
		return usagef("--zone %q: %v", cfg.zone, err)
	}
	if cfg.srv != "" {
		if zone, err = zone.WithSRV(cfg.srv, cfg.port); err != nil {
			return err
		}
	}
	var check director.LoadPoller = dnsrr.ProbeChecker{Prober: &smarthttp.Prober{Path: cfg.healthPath}}
	if cfg.agents != nil {
		check = cfg.agents
	}
	logger := log.New(stderr, "smartclient dns: ", log.LstdFlags)
	cfg.monitor.Logf = logger.Printf
	mon, err := dnsrr.NewMonitor(cfg.monitor, cfg.members, check)
	if err != nil {
		return usagef("%v", err)
	}
	defer mon.Close()
	srv, err := dnsrr.Listen(cfg.listen, &dnsrr.Handler{Zone: zone, Viewer: mon})
	if err != nil {
		return usagef("--listen %q: %v", cfg.listen, err)
	}
	// Check every member once before announcing readiness, so that the
	// answers reflect real health from then on.
	mon.Round()
	mon.Start()
	fmt.Fprintf(stdout, "zone: %s (ttl %ds)\n", zone.Name(), int(cfg.ttl/time.Second))
	if cfg.srv != "" {
		fmt.Fprintf(stdout, "srv: _%s._tcp.%s port %d\n", cfg.srv, zone.Name(), cfg.port)
	}
	for _, m := range cfg.members {
		fmt.Fprintf(stdout, "member: %s\n", m.URL)
	}
	fmt.Fprintf(stdout, "listening: %s (udp, tcp)\n", srv.Addr())
	if ready != nil {
		ready <- srv.Addr()
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	fmt.Fprintln(stdout, "stopped")
	return nil
}
