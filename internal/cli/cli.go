// Package cli is the smartclient command: subcommand dispatch, flag parsing
// into the packages' config structs, the local reverse proxy with its stats
// and Prometheus endpoints, and the demo's front end. It lives outside
// package main so that tests run every subcommand in-process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is the command's version; release builds set it with
// -ldflags "-X github.com/smartclient/smartclient/internal/cli.Version=v1.2.3".
var Version = ""

// Exit statuses.
const (
	ExitOK      = 0
	ExitFailure = 1 // the command ran and failed (a demo request failed, the server broke)
	ExitUsage   = 2 // bad command line, or the listen address cannot be used
)

const mainUsage = `usage: smartclient <command> [flags]

A smart client for replicated services: a director in the client picks the
best member for each request and retries failures elsewhere.

commands:
  demo      run a local cluster, load it, kill and add members, show a live table
  proxy     local reverse proxy that sends each request to the best member
  get       download a file from mirrors in parallel chunks, resuming failures elsewhere
  shell     open an ssh session on the least-loaded of several sshd servers
  cert      keygen, sign, verify, inspect and endorse service certificates
  resolve   find a service's certificate through its roots (service://NAME)
  serve-cert  publish certificates from a directory as an HTTP root
  agent     report a server's load and health for directors (GET /load), beside an unmodified server
  member    an HTTP member: load reporting, service time, capacity, graceful drain
  testbed   network-namespace hosts for trying failures by hand: up, down, status, fault
  bench     side-by-side benchmark against HAProxy, nginx, DNS round robin and a direct connection
  dns       authoritative DNS round robin over a service's healthy members (the classic alternative)
  version   print the version
  help      show this help, or 'help COMMAND' for a command's flags
`

const proxyUsage = `usage: smartclient proxy --member URL [--member URL ...] [flags]
       smartclient proxy --service service://NAME --root URL --trust KEY.pub [flags]
       smartclient proxy --registry etcd://HOST:PORT/SERVICE|consul://HOST:PORT/SERVICE [flags]
       smartclient proxy --gossip-join HOST:PORT --gossip-service NAME [flags]

Serves a reverse proxy (default on ` + DefaultListen + `) that sends every request
through a director to one of the members, retrying idempotent requests on
another member when one fails. GET ` + StatsPath + ` returns JSON statistics;
GET ` + MetricsPath + ` (also ` + AltMetricsPath + `) serves Prometheus metrics.
`

const demoUsage = `usage: smartclient demo [flags]

Starts a local cluster of members of unequal speed on loopback sockets, sends
them an open-loop load of GET requests through a director, kills one member
part-way and adds a new one later (learned lazily from replies), and shows a
live per-member table. Ends with one 'summary:' line; exits 0 only if every
request succeeded.
`

// helpError is -h or --help on a subcommand: print its usage, exit 0.
type helpError struct {
	fs    *flag.FlagSet
	usage string
}

func (h helpError) Error() string { return "help requested" }

func (h helpError) print(w io.Writer) {
	fmt.Fprint(w, h.usage, "\nflags:\n")
	h.fs.SetOutput(w)
	h.fs.PrintDefaults()
}

// exitError ends a command with a status and no further message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Run runs the smartclient command with args (without the program name) and
// returns the exit status. ctx ending is the signal to stop: the proxy
// shuts down gracefully and the demo stops early. ready, if not nil,
// receives the proxy's bound address once it accepts connections.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return ExitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "proxy":
		err = runProxy(ctx, rest, stdout, stderr, ready)
	case "demo":
		err = runDemo(ctx, rest, stdout, stderr)
	case "get":
		err = runGet(ctx, rest, stdout, stderr)
	case "shell":
		err = runShell(ctx, rest, stdout, stderr)
	case "cert":
		err = runCert(ctx, rest, stdout, stderr)
	case "resolve":
		err = runResolve(ctx, rest, stdout, stderr)
	case "serve-cert":
		err = runServeCert(ctx, rest, stdout, stderr, ready)
	case "agent":
		err = runAgent(ctx, rest, stdout, stderr)
	case "member":
		err = runMember(ctx, rest, stdout, stderr)
	case "testbed":
		err = runTestbed(ctx, rest, stdout, stderr)
	case "bench":
		err = runBench(ctx, rest, stdout, stderr)
	case "dns":
		err = runDNS(ctx, rest, stdout, stderr, ready)
	case "version", "-version", "--version":
		if len(rest) > 0 {
			err = usagef("unexpected argument %q", rest[0])
			break
		}
		fmt.Fprintf(stdout, "smartclient %s (%s %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	case "help", "-h", "-help", "--help":
		return help(rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "smartclient: unknown command %q; commands: demo, proxy, get, shell, cert, resolve, serve-cert, agent, member, testbed, bench, dns, version, help\n", cmd)
		return ExitUsage
	}
	return report(cmd, err, stdout, stderr)
}

// report turns a command's error into a message and an exit status.
func report(cmd string, err error, stdout, stderr io.Writer) int {
	var (
		he helpError
		ue *usageError
		ee exitError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &he):
		he.print(stdout)
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "smartclient %s: %s (see 'smartclient help %s')\n", cmd, oneLine(ue.msg), cmd)
		return ExitUsage
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(stderr, "smartclient %s: %s\n", cmd, oneLine(err.Error()))
		return ExitFailure
	}
}

func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, mainUsage)
		return ExitOK
	}
	switch args[0] {
	case "proxy":
		_, err := parseProxyFlags([]string{"-h"})
		return report("proxy", err, stdout, stderr)
	case "demo":
		_, err := parseDemoFlags([]string{"-h"})
		return report("demo", err, stdout, stderr)
	case "get":
		_, err := parseGetFlags([]string{"-h"})
		return report("get", err, stdout, stderr)
	case "shell":
		_, err := parseShellFlags([]string{"-h"})
		return report("shell", err, stdout, stderr)
	case "cert":
		return report("cert", runCert(context.Background(), []string{"keygen", "-h"}, stdout, stderr), stdout, stderr)
	case "resolve":
		return report("resolve", runResolve(context.Background(), []string{"-h"}, stdout, stderr), stdout, stderr)
	case "serve-cert":
		return report("serve-cert", runServeCert(context.Background(), []string{"-h"}, stdout, stderr, nil), stdout, stderr)
	case "agent":
		return report("agent", runAgent(context.Background(), []string{"-h"}, stdout, stderr), stdout, stderr)
	case "member":
		return report("member", runMember(context.Background(), []string{"-h"}, stdout, stderr), stdout, stderr)
	case "testbed":
		return report("testbed", runTestbed(context.Background(), []string{"-h"}, stdout, stderr), stdout, stderr)
	case "bench":
		return report("bench", runBench(context.Background(), []string{"-h"}, stdout, stderr), stdout, stderr)
	case "dns":
		return report("dns", runDNS(context.Background(), []string{"-h"}, stdout, stderr, nil), stdout, stderr)
	case "version", "help":
		fmt.Fprint(stdout, mainUsage)
		return ExitOK
	}
	fmt.Fprintf(stderr, "smartclient help: unknown command %q; commands: demo, proxy, get, shell, cert, resolve, serve-cert, agent, member, testbed, bench, dns, version, help\n", args[0])
	return ExitUsage
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// oneLine keeps a message on one line, whatever an error wrapped.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
