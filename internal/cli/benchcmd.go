package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/smartclient/smartclient/bench"
)

const benchUsage = `usage: smartclient bench [--quick] [--out DIR] [flags]

Runs the side-by-side benchmark suite on loopback: members with capped
concurrency, heavy-tailed service times, a 10x slower member and a crash,
driven by an open-loop load through each contender in turn (direct, the
director as a library for each policy, smartclient proxy, HAProxy, nginx,
DNS round robin), plus the seed paper's Figure 6. Prints a markdown table,
one row per contender, and writes results.json, report.md and PNG plots to
--out. HAProxy and nginx come from Debian's haproxy and nginx packages; a
contender that cannot start is reported in the table with the reason.
The full run takes under 10 minutes on 2 cores; --quick under 2.
`

// runBench is `smartclient bench`. `smartclient bench member …` is the
// member process the suite starts itself.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "member" {
		return bench.MemberMain(ctx, args[1:], os.Stdin, stdout, stderr)
	}
	var (
		cfg                   bench.Config
		contenders, scenarios string
	)
	fs := newFlagSet("bench")
	fs.BoolVar(&cfg.Quick, "quick", false, "short windows: check every contender produces numbers (under 2 minutes)")
	fs.StringVar(&cfg.Out, "out", "", "directory for results.json, report.md and plots (default: a new temporary directory)")
	fs.StringVar(&contenders, "contenders", "", "comma-separated contenders to run (default all): "+strings.Join(bench.ContenderNames(), ", "))
	fs.StringVar(&scenarios, "scenarios", "", "comma-separated scenarios to run (default all)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed for the members' service times")
	fs.StringVar(&cfg.HAProxy, "haproxy", "haproxy", "HAProxy program")
	fs.StringVar(&cfg.Nginx, "nginx", "nginx", "nginx program")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpError{fs: fs, usage: benchUsage}
		}
		return err
	}
	cfg.Contenders = splitList(contenders)
	cfg.Scenarios = splitList(scenarios)
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find my own executable: %w", err)
	}
	cfg.Self = []string{exe}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	if cfg.Out == "" {
		if cfg.Out, err = os.MkdirTemp("", "smartclient-bench-results-"); err != nil {
			return err
		}
	}
	cfg.Progress = stderr
	rep, err := bench.Run(ctx, cfg)
	if rep != nil {
		rep.WriteSummary(stdout)
		fmt.Fprintf(stdout, "\nsuite time: %.0f s; details, JSON and plots in %s\n", rep.Seconds, cfg.Out)
	}
	return err
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
