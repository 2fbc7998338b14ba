//go:build !linux

package agent

import (
	"context"
	"errors"
	"fmt"
)

// netlinkCount: sock_diag is Linux's; elsewhere connCounter falls back to
// /proc (which fails too, naming the file it could not open).
func netlinkCount(context.Context, uint16, []byte) (int, error) {
	return 0, fmt.Errorf("netlink sock_diag: %w", errors.ErrUnsupported)
}
