package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/smartclient/smartclient/agent"
	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/frontend"
	"github.com/smartclient/smartclient/smarthttp"
)

const shellUsage = `usage: smartclient shell --member ssh://HOST[:PORT] [--member ...] [--agent MEMBER=AGENT_URL ...] [flags] [--] [COMMAND [ARG...]]

Opens a shell (or runs COMMAND) on the least-loaded member of a cluster of
unmodified sshd servers, with the system ssh client and the user's own
~/.ssh/config, keys and known_hosts: the paper's telnet front-end. Each
member's load is polled once from the smartclient agent beside it (GET
AGENT_URL/load) before the choice. The chosen member must answer with an
SSH banner within --banner-timeout, else the next one is tried; so is a
member where ssh fails (exit status 255) before the session starts. Prints
the choice and each failed attempt on stderr. Exit status: the remote
command's (or ssh's), 1 if no member could be reached, 2 for a bad command
line.
`

// oneSession is longer than any choice of a member takes.
const oneSession = 24 * time.Hour

// shellConfig is what `smartclient shell` runs.
type shellConfig struct {
	members []balance.Member
	agents  map[string]string // member URL → agent URL
	dir     director.Config
	front   frontend.Config
	ssh     frontend.SSH
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

func parseShellFlags(args []string) (shellConfig, error) {
	var (
		cfg                          shellConfig
		members, agents, opts, extra stringList
		identity                     string
		tty                          bool
	)
	fs := newFlagSet("shell")
	fs.Var(&members, "member", "an sshd, ssh://HOST[:PORT] (port 22 by default); repeat for each member")
	fs.Var(&agents, "agent", "MEMBER=AGENT_URL: the smartclient agent reporting that member's load, e.g. ssh://10.0.0.1=http://10.0.0.1:9100; repeat")
	fs.StringVar(&cfg.dir.Policy, "policy", "least-loaded", "selection policy (see 'smartclient help proxy')")
	fs.IntVar(&cfg.dir.MaxAttempts, "max-attempts", 0, "members tried before giving up (0: every member once)")
	fs.DurationVar(&cfg.front.BannerTimeout, "banner-timeout", frontend.DefaultBannerTimeout, "bound on connecting to a member and reading its SSH banner")
	fs.DurationVar(&cfg.dir.ProbeTimeout, "poll-timeout", time.Second, "bound on polling one agent for its load")
	fs.StringVar(&cfg.ssh.User, "l", "", "remote login name, passed to ssh -l (default: ssh's choice)")
	fs.StringVar(&identity, "i", "", "identity file, passed to ssh -i")
	fs.Var(&opts, "o", "ssh option, passed to ssh as -o OPTION; repeat")
	fs.BoolVar(&tty, "t", false, "force a terminal for COMMAND, passed to ssh as -t")
	fs.Var(&extra, "ssh-arg", "an argument passed to ssh before the destination, e.g. --ssh-arg=-v; repeat")
	fs.StringVar(&cfg.ssh.Path, "ssh", "ssh", "the ssh client program")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, helpError{fs: fs, usage: shellUsage}
		}
		return cfg, usagef("%v", err)
	}
	cfg.ssh.Command = fs.Args()
	if len(members) == 0 {
		return cfg, usagef("no members: give at least one --member ssh://HOST[:PORT]")
	}
	seen := map[string]string{}
	for _, raw := range members {
		u, err := frontend.ParseMember(raw)
		if err != nil {
			return cfg, usagef("--member %q: %v", raw, err)
		}
		if prev, dup := seen[u]; dup {
			return cfg, usagef("--member %q: duplicate member, same as %q", raw, prev)
		}
		seen[u] = raw
		cfg.members = append(cfg.members, balance.Member{URL: u})
	}
	cfg.agents = map[string]string{}
	for _, pair := range agents {
		m, a, ok := strings.Cut(pair, "=")
		if !ok {
			return cfg, usagef("--agent %q: want ssh://HOST[:PORT]=http://AGENT:PORT", pair)
		}
		mu, err := frontend.ParseMember(m)
		if err != nil {
			return cfg, usagef("--agent %q: member: %v", pair, err)
		}
		au, err := ParseMemberURL(a)
		if err != nil {
			return cfg, usagef("--agent %q: agent: %v", pair, err)
		}
		if _, ok := seen[mu]; !ok {
			return cfg, usagef("--agent %q: %s is not one of the --member URLs", pair, mu)
		}
		if _, dup := cfg.agents[mu]; dup {
			return cfg, usagef("--agent %q: member %s already has an agent", pair, mu)
		}
		cfg.agents[mu] = au
	}
	if err := checkPolicy(cfg.dir.Policy); err != nil {
		return cfg, err
	}
	if a := cfg.dir.MaxAttempts; a < 0 || a > 100 {
		return cfg, usagef("--max-attempts %d: must be in 0..100", a)
	}
	if cfg.dir.MaxAttempts == 0 {
		cfg.dir.MaxAttempts = min(len(cfg.members), 100)
	}
	if cfg.front.BannerTimeout <= 0 {
		return cfg, usagef("--banner-timeout %v: must be > 0", cfg.front.BannerTimeout)
	}
	if cfg.dir.ProbeTimeout <= 0 {
		return cfg, usagef("--poll-timeout %v: must be > 0", cfg.dir.ProbeTimeout)
	}
	if cfg.ssh.Path == "" {
		return cfg, usagef("--ssh: empty program name")
	}
	if strings.HasPrefix(cfg.ssh.User, "-") {
		return cfg, usagef("-l %q: a login name cannot start with '-'", cfg.ssh.User)
	}
	if identity != "" {
		cfg.ssh.Args = append(cfg.ssh.Args, "-i", identity)
	}
	for _, o := range opts {
		cfg.ssh.Args = append(cfg.ssh.Args, "-o", o)
	}
	if tty {
		cfg.ssh.Args = append(cfg.ssh.Args, "-t")
	}
	cfg.ssh.Args = append(cfg.ssh.Args, extra...)
	return cfg, nil
}

// runShell is `smartclient shell`. The session's own exit status becomes
// the command's (exitError); stdin is the process's, so a terminal reaches
// ssh as it is.
func runShell(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runShellIO(ctx, args, os.Stdin, stdout, stderr)
}

func runShellIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := parseShellFlags(args)
	if err != nil {
		return err
	}
	if cfg.dir.Policy == "least-loaded" {
		// Members whose agent is silent rank last rather than look idle.
		cfg.dir.PolicyImpl = frontend.PolledLeastLoaded{}
	}
	if len(cfg.agents) > 0 {
		// One poll, the explicit one below, is all a session needs: its
		// loads rank the members for every attempt (which may take several
		// banner timeouts, longer than the default LoadTTL), and there are
		// no background rounds for the hours a session may last.
		cfg.dir.Poller = &agent.Poller{Agents: cfg.agents, Poll: smarthttp.LoadPoller{Path: agent.LoadPath}}
		cfg.dir.PollInterval = oneSession
		cfg.dir.LoadTTL = oneSession
	}
	d, err := director.New(cfg.dir, cfg.members)
	if err != nil {
		return usagef("%v", err)
	}
	defer d.Close()
	// A fresh client has no piggy-backed load: ask every agent once.
	d.Poll()
	logger := log.New(stderr, "smartclient shell: ", 0)
	cfg.front.Logf = logger.Printf
	cfg.ssh.Stdin, cfg.ssh.Stdout, cfg.ssh.Stderr = stdin, stdout, stderr
	res, err := frontend.Open(ctx, d, cfg.front, &cfg.ssh)
	if err != nil {
		return fmt.Errorf("no member could open a session: %w", err)
	}
	if s := res.Outcome.Status; s != 0 {
		return exitError{code: s}
	}
	return nil
}
