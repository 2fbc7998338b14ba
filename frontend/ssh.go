package frontend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultSignals are the signals SSH forwards to the ssh client while it
// runs. Terminal-generated ones already reach ssh (it shares the foreground
// process group), so ssh may see them twice; ssh quits on either.
var DefaultSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// DefaultWaitDelay is how long SSH waits, after sending ssh SIGTERM because
// the context ended, before it kills it.
const DefaultWaitDelay = 5 * time.Second

// SSH is a Session that runs the system OpenSSH client, so the user's own
// ~/.ssh/config, keys, agent and known_hosts apply unchanged:
//
//	ssh -o PermitLocalCommand=yes -o LocalCommand=MARK -o ControlPath=none ARGS... -p PORT [-l USER] -- HOST [COMMAND...]
//
// ssh runs as a child process with the caller's stdin, stdout and stderr
// (a terminal stays a terminal) and the signals in Signals forwarded. The
// LocalCommand creates a marker file once ssh has authenticated, before the
// session's channel can run anything: ssh's exit status 255 without the
// marker is a failure to reach the member, safe to try on another; with it,
// the session started and its status is the result. The marker overrides
// a LocalCommand in the user's configuration (options given first win),
// and connection sharing is off (ControlPath=none): a session through an
// existing master never runs LocalCommand, so its 255 could not be told
// from a failure to connect.
type SSH struct {
	// Path is the ssh program. Default "ssh", looked up in PATH.
	Path string
	// User is the remote login name (-l). Default: ssh's own choice (its
	// configuration, else the local user).
	User string
	// Args are options placed before the destination, e.g. "-t", "-i",
	// "KEY", "-o", "StrictHostKeyChecking=accept-new". Not modified.
	Args []string
	// Command is the remote command and its arguments, joined by ssh with
	// spaces; none opens a login shell.
	Command []string
	// Stdin, Stdout and Stderr default to the process's own.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Signals are forwarded to ssh while it runs. Default DefaultSignals;
	// an empty non-nil slice forwards none.
	Signals []os.Signal
	// WaitDelay: see DefaultWaitDelay (the default).
	WaitDelay time.Duration
}

var _ Session = (*SSH)(nil)

// Argv returns the ssh command line for t, marker being the file the
// LocalCommand creates.
func (s *SSH) Argv(t Target, marker string) []string {
	path := s.Path
	if path == "" {
		path = "ssh"
	}
	argv := []string{path,
		"-o", "PermitLocalCommand=yes",
		"-o", "LocalCommand=" + localCommand(marker),
		"-o", "ControlPath=none"}
	argv = append(argv, s.Args...)
	argv = append(argv, "-p", strconv.Itoa(t.Port))
	if s.User != "" {
		argv = append(argv, "-l", s.User)
	}
	argv = append(argv, "--", t.Host)
	return append(argv, s.Command...)
}

// localCommand is a shell command that creates marker. ssh expands
// %-tokens in LocalCommand, so a % is doubled; the path is single-quoted
// for the shell.
func localCommand(marker string) string {
	q := "'" + strings.ReplaceAll(marker, "'", `'\''`) + "'"
	return "touch " + strings.ReplaceAll(q, "%", "%%")
}

// Run implements Session.
func (s *SSH) Run(ctx context.Context, t Target) (Outcome, error) {
	dir, err := os.MkdirTemp("", "smartclient-shell-")
	if err != nil {
		return Outcome{}, fmt.Errorf("ssh: %w", err)
	}
	defer os.RemoveAll(dir)
	marker := filepath.Join(dir, "started")
	argv := s.Argv(t, marker)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = s.WaitDelay
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = DefaultWaitDelay
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.Stdin, s.Stdout, s.Stderr
	if cmd.Stdin == nil {
		cmd.Stdin = os.Stdin
	}
	if cmd.Stdout == nil {
		cmd.Stdout = os.Stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	sigs := s.Signals
	if sigs == nil {
		sigs = DefaultSignals
	}
	ch := make(chan os.Signal, 4)
	if len(sigs) > 0 {
		signal.Notify(ch, sigs...)
		defer signal.Stop(ch)
	}
	if err := cmd.Start(); err != nil {
		return Outcome{}, fmt.Errorf("ssh: %w", err)
	}
	done := make(chan struct{})
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		for {
			select {
			case sig := <-ch:
				cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	<-forwarded
	_, statErr := os.Stat(marker)
	o := Outcome{Started: statErr == nil}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		o.Status = exitStatus(ee.ProcessState)
	case errors.Is(err, exec.ErrWaitDelay):
		o.Status = exitStatus(cmd.ProcessState)
	default:
		return o, fmt.Errorf("ssh: %w", err)
	}
	return o, nil
}

// exitStatus is a shell's view of how a process ended: its exit status, or
// 128+N if signal N killed it.
func exitStatus(ps *os.ProcessState) int {
	if ps == nil {
		return 255
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
