package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// netlinkTimeout bounds the wait for the kernel's reply when the context
// has no deadline.
const netlinkTimeout = 2 * time.Second

// netlinkCount counts through a NETLINK_SOCK_DIAG socket of its own: one
// dump request for AF_INET, then one for AF_INET6, each filtered by state
// and local port in the kernel (see inetDiagRequest), so the reply holds
// only the sockets counted. buf receives the replies (netlinkBufSize
// bytes). It waits for the kernel at most until ctx's deadline.
func netlinkCount(ctx context.Context, port uint16, buf []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	wait := netlinkTimeout
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
		if wait <= 0 {
			return 0, context.DeadlineExceeded
		}
	}
	tv := unix.NsecToTimeval(max(wait, time.Microsecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return 0, fmt.Errorf("netlink receive timeout: %w", err)
	}
	kernel := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	total := 0
	for i, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := unix.Sendto(fd, inetDiagRequest(family, port, uint32(i+1)), 0, kernel); err != nil {
			return 0, fmt.Errorf("sock_diag request: %w", err)
		}
		for done := false; !done; {
			// MSG_TRUNC makes the kernel return the message's full length,
			// so a reply larger than buf is seen, not silently cut.
			n, _, err := unix.Recvfrom(fd, buf, unix.MSG_TRUNC)
			switch {
			case errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.EAGAIN):
				return 0, fmt.Errorf("sock_diag: no reply within %v", wait.Round(time.Millisecond))
			case err != nil:
				return 0, fmt.Errorf("sock_diag reply: %w", err)
			case n > len(buf):
				return 0, fmt.Errorf("sock_diag reply of %d bytes, more than the %d-byte buffer", n, len(buf))
			}
			var c int
			c, done, err = parseInetDiag(buf[:n], port)
			if err != nil {
				return 0, err
			}
			total += c
		}
	}
	return total, nil
}
