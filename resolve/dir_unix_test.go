//go:build unix

package resolve_test

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/smartclient/smartclient/resolve"
)

// A FIFO planted where a certificate should be would block a plain open
// until a writer appears; DirRoot refuses it instead.
func TestDirRootFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "chat.cert"), 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	_, err := (&resolve.DirRoot{Dir: dir}).Fetch(t.Context(), "chat")
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("Fetch = %v", err)
	}
}
