// Command smartclient runs a director in front of a replicated service:
// `smartclient proxy` is a local reverse proxy that sends each request to
// the best member, `smartclient demo` shows the idea on a local cluster.
// See the README, or run `smartclient help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/smartclient/smartclient/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	stop()
	os.Exit(code)
}
