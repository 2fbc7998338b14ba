//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package cert

import "os"

// flockFile does nothing where flock(2) is missing: Trust's mutex still
// serialises recording within one process, and the atomic rename still
// keeps readers from seeing a half-written file, but two processes that
// record at once may lose one line.
func flockFile(*os.File, bool) error { return nil }
