// Package procwait waits for a state change of a child process without
// reaping it, so that its pid, and its process group's id, stay reserved
// while the caller acts on them (signals the group, marks it gone) before
// exec.Cmd.Wait reaps it.
package procwait

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// Peek blocks until the child pid has a state change of the kinds in
// options (unix.WEXITED, unix.WSTOPPED, or both) and returns its report,
// leaving the child waitable (WNOWAIT). It retries when interrupted by a
// signal.
func Peek(pid, options int) (unix.Siginfo, error) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, options|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			return info, err
		}
	}
}
