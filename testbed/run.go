package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// cmdTimeout bounds one ip/iptables/tc invocation, so that a wedged tool
// cannot hang a test or a sweep.
const cmdTimeout = 20 * time.Second

// tool finds a system tool by name, also in the sbin directories that a
// non-login root shell may lack in PATH.
func tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("testbed: %s not found in PATH or /usr/sbin: install it (Debian: %s)", name, debPackage(name))
}

func debPackage(tool string) string {
	switch tool {
	case "ip", "tc":
		return "apt-get install -y iproute2"
	case "iptables":
		return "apt-get install -y iptables"
	case "nginx":
		return "apt-get install -y nginx"
	}
	return "apt-get install -y " + tool
}

// run runs a tool and returns its standard output; the error carries the
// command line and what the tool printed on standard error.
func run(ctx context.Context, name string, args ...string) (string, error) {
	return runInput(ctx, nil, name, args...)
}

func runInput(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	path, err := tool(name)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return stdout.String(), &cmdError{cmd: name + " " + strings.Join(args, " "), msg: msg, err: err}
	}
	return stdout.String(), nil
}

// cmdError is a failed tool invocation.
type cmdError struct {
	cmd, msg string
	err      error
}

func (e *cmdError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("testbed: %s: %v", e.cmd, e.err)
	}
	return fmt.Sprintf("testbed: %s: %v: %s", e.cmd, e.err, e.msg)
}

func (e *cmdError) Unwrap() error { return e.err }

// notFound reports whether a tool failed because the object it was asked
// to change does not exist (any more): a heal or teardown that finds
// nothing to remove has nothing to do.
func notFound(err error) bool {
	var ce *cmdError
	if !errors.As(err, &ce) {
		return false
	}
	m := strings.ToLower(ce.msg)
	for _, s := range []string{
		"no such file", "cannot find device", "does not exist", "bad rule",
		"no chain/target/match by that name", "cannot open network namespace",
		"cannot delete qdisc with handle of zero", "no such process", "not found",
	} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}
