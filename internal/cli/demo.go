package cli

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"strings"
	"time"

	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/internal/demo"
)

// parseDemoFlags fills a demo.Config from the command line.
func parseDemoFlags(args []string) (demo.Config, error) {
	var cfg demo.Config
	fs := newFlagSet("demo")
	fs.IntVar(&cfg.Servers, "servers", 4, "members at the start (2..32)")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "how long to offer load")
	fs.DurationVar(&cfg.KillAfter, "kill-after", 6*time.Second, "when to crash the fastest member (negative: never)")
	fs.DurationVar(&cfg.AddAfter, "add-after", 12*time.Second, "when to add a new member (negative: never)")
	fs.Float64Var(&cfg.Rate, "rate", 300, "offered load, requests per second (open loop)")
	fs.StringVar(&cfg.Policy, "policy", policy.Default, "selection policy: "+strings.Join(policy.Names(), ", "))
	fs.IntVar(&cfg.Concurrency, "concurrency", 8, "requests each member serves at once")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, helpError{fs: fs, usage: demoUsage}
		}
		return cfg, err
	}
	if err := checkPolicy(cfg.Policy); err != nil {
		return cfg, err
	}
	// Zero means "default" in demo.Config, but on the command line it is
	// what the user typed: refuse it rather than quietly use the default.
	if cfg.Servers == 0 || cfg.Duration <= 0 || cfg.Rate <= 0 || cfg.Concurrency <= 0 {
		return cfg, usagef("--servers, --duration, --rate and --concurrency must be > 0")
	}
	if cfg.KillAfter == 0 || cfg.AddAfter == 0 {
		return cfg, usagef("--kill-after and --add-after must be > 0, or negative for never")
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usagef("%s", strings.TrimPrefix(err.Error(), "demo: "))
	}
	return cfg, nil
}

// runDemo is `smartclient demo`.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseDemoFlags(args)
	if err != nil {
		return err
	}
	cfg.ANSI = isTerminal(stdout)
	s, err := demo.Run(ctx, cfg, stdout)
	switch {
	case err != nil && ctx.Err() != nil:
		return exitError{code: 130} // interrupted: the summary was printed
	case err != nil:
		return err
	case s.Failed > 0:
		return exitError{code: ExitFailure}
	}
	return nil
}

// isTerminal reports whether w is a terminal that understands ANSI escapes.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
