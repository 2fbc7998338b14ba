package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// Limits on the load command.
const (
	// MaxCmdOutput is how much of the command's standard output is read;
	// the rest is discarded. Only the first line counts.
	MaxCmdOutput = 4 << 10
	// maxCmdLine is the longest first line taken as a number.
	maxCmdLine = 64
	// maxCmdStderr is how much of standard error is quoted in an error.
	maxCmdStderr = 200
)

// ParseCmdOutput reads the load command's output: the first line, white
// space around it ignored, must be one decimal number (as strconv.ParseFloat
// reads it) that is finite and in 0..MaxCmdValue. Anything else is an error
// that quotes (a bounded part of) what was wrong.
func ParseCmdOutput(out []byte) (float64, error) {
	if len(out) > MaxCmdOutput {
		out = out[:MaxCmdOutput]
	}
	line, _, _ := bytes.Cut(out, []byte{'\n'})
	line = bytes.TrimSpace(line)
	switch {
	case len(line) == 0:
		return 0, errors.New("output's first line is empty, want a number")
	case len(line) > maxCmdLine:
		return 0, fmt.Errorf("output's first line is %d bytes, want a number of at most %d", len(line), maxCmdLine)
	}
	for _, c := range line {
		// ParseFloat also takes "inf", "nan", hex and '_' forms; a load
		// figure is a plain decimal.
		if !('0' <= c && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E') {
			return 0, fmt.Errorf("output's first line %q is not a decimal number", clip(line))
		}
	}
	v, err := strconv.ParseFloat(string(line), 64)
	if err != nil {
		return 0, fmt.Errorf("output's first line %q is not a number", clip(line))
	}
	if !finite(v) || v < 0 || v > MaxCmdValue {
		return 0, fmt.Errorf("value %s is out of range 0..%g", fmtFloat(v), float64(MaxCmdValue))
	}
	return v, nil
}

// clip bounds what an error quotes of untrusted output.
func clip(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// Command produces the user's load figure. Run must return by the time ctx
// ends; an error says why there is no figure.
type Command interface {
	Run(ctx context.Context) (float64, error)
}

// ShellCommand runs a command line with /bin/sh -c and parses its output
// with ParseCmdOutput. The command runs in its own process group, which is
// killed when the timeout passes, so that a pipeline's children go too.
type ShellCommand struct {
	// Line is the command line, e.g. "cat /run/queue-depth".
	Line string
	// Timeout bounds each run. Default 1s.
	Timeout time.Duration
}

// Run implements Command.
func (s ShellCommand) Run(ctx context.Context) (float64, error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", s.Line)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that kept our pipes open would hold Wait forever.
	cmd.WaitDelay = 100 * time.Millisecond
	var stdout, stderr capped
	stdout.max, stderr.max = MaxCmdOutput, maxCmdStderr
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return 0, fmt.Errorf("load command timed out after %v", timeout)
	case err != nil:
		msg := bytes.TrimSpace(stderr.buf.Bytes())
		if len(msg) > 0 {
			return 0, fmt.Errorf("load command: %v: %q", err, msg)
		}
		return 0, fmt.Errorf("load command: %v", err)
	}
	v, err := ParseCmdOutput(stdout.buf.Bytes())
	if err != nil {
		return 0, fmt.Errorf("load command: %w", err)
	}
	return v, nil
}

// capped keeps the first max bytes written to it and discards the rest,
// without failing the writer (a failed write would kill the command with
// SIGPIPE and hide its real output).
type capped struct {
	buf bytes.Buffer
	max int
}

var _ io.Writer = (*capped)(nil)

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
