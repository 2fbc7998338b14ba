package frontend

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeSSH writes a stand-in for ssh: it takes ssh's options, refuses
// the host "refuse" with 255 before authenticating, otherwise runs the
// LocalCommand (as ssh does after authentication) and then the command
// locally, as a remote shell would.
func fakeSSH(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ssh")
	script := `#!/bin/sh
lc=
while [ $# -gt 0 ]; do
  case "$1" in
    -o) case "$2" in LocalCommand=*) lc="${2#LocalCommand=}";; esac; shift 2;;
    -p|-l|-i) shift 2;;
    --) shift; break;;
    *) shift;;
  esac
done
host=$1; shift
[ "$host" = refuse ] && { echo "Permission denied" >&2; exit 255; }
eval "$lc"
eval "$*"
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSSHOutcomes(t *testing.T) {
	bin := fakeSSH(t)
	for _, tc := range []struct {
		name, host, cmd string
		want            Outcome
	}{
		{"ok", "h", "true", Outcome{Status: 0, Started: true}},
		{"remote status", "h", "exit 4", Outcome{Status: 4, Started: true}},
		{"lost mid-session", "h", "exit 255", Outcome{Status: 255, Started: true}},
		{"refused before the session", "refuse", "true", Outcome{Status: 255}},
		{"killed by a signal", "h", "kill -KILL $$", Outcome{Status: 128 + 9, Started: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &SSH{Path: bin, Command: []string{tc.cmd}, Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard}
			o, err := s.Run(context.Background(), Target{Host: tc.host, Port: 22})
			if err != nil || o != tc.want {
				t.Fatalf("Run = %+v, %v; want %+v", o, err, tc.want)
			}
		})
	}
	s := &SSH{Path: filepath.Join(t.TempDir(), "missing"), Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard}
	if _, err := s.Run(context.Background(), Target{Host: "h", Port: 22}); err == nil || Classify(Outcome{}, err) == nil {
		t.Fatalf("missing ssh: %v", err)
	}
}

// started runs s in the background and returns once the session printed
// its first line, with the channel that yields its outcome.
func started(t *testing.T, ctx context.Context, s *SSH) <-chan Outcome {
	t.Helper()
	pr, pw := io.Pipe()
	s.Stdout, s.Stdin, s.Stderr = pw, strings.NewReader(""), io.Discard
	out := make(chan Outcome, 1)
	go func() {
		o, err := s.Run(ctx, Target{Host: "h", Port: 22})
		if err != nil {
			t.Error(err)
		}
		pw.Close()
		out <- o
	}()
	if line, err := bufio.NewReader(pr).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("session said %q, %v", line, err)
	}
	go io.Copy(io.Discard, pr)
	return out
}

func TestSSHForwardsSignals(t *testing.T) {
	s := &SSH{Path: fakeSSH(t), Signals: []os.Signal{syscall.SIGUSR1},
		Command: []string{`trap "exit 7" USR1; echo ready; while :; do sleep 0.05; done`}}
	out := started(t, context.Background(), s)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-out:
		if o != (Outcome{Status: 7, Started: true}) {
			t.Fatalf("outcome %+v", o)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("signal not forwarded")
	}
}

func TestSSHEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &SSH{Path: fakeSSH(t), Signals: []os.Signal{},
		Command: []string{`trap "exit 9" TERM; echo ready; while :; do sleep 0.05; done`}}
	out := started(t, ctx, s)
	cancel() // SIGTERM first, SIGKILL only after WaitDelay
	select {
	case o := <-out:
		if o != (Outcome{Status: 9, Started: true}) {
			t.Fatalf("outcome %+v", o)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("context did not end the session")
	}
}
