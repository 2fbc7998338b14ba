//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package cache

import (
	"os"

	"golang.org/x/sys/unix"
)

// lockFile blocks until it holds an exclusive flock(2) on f. The lock
// belongs to the open file description, so it excludes other processes
// and other descriptors in this process alike, and the kernel drops it
// when the holder closes f or dies.
func lockFile(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}
