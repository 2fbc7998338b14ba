//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package cert

import (
	"os"

	"golang.org/x/sys/unix"
)

// flockFile blocks until it holds a flock(2) on f, exclusive or shared. The
// lock belongs to the open file description, so it excludes other processes
// and other descriptors in this process alike, and the kernel drops it when
// f is closed or the holder dies.
func flockFile(f *os.File, exclusive bool) error {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}
