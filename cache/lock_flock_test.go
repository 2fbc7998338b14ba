//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package cache

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// lockHeld reports whether some other descriptor holds dir's lock,
// probing with a non-blocking flock on a descriptor of its own.
func lockHeld(t *testing.T, dir string) (held, ok bool) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, lockName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err {
	case nil:
		return false, true
	case unix.EWOULDBLOCK:
		return true, true
	default:
		t.Fatal(err)
		return false, false
	}
}

// A FIFO must be refused without being opened: opening one blocks.
func TestCorruptFIFO(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := s.Put("chat", KindCert, []byte("old")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir, "chat", KindCert)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get("chat", KindCert)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Get(FIFO) = %v, want ErrCorrupt: not a regular file", err)
	}
	if err := s.Put("chat", KindCert, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get("chat", KindCert); err != nil || string(got) != "new" {
		t.Errorf("Get after repair = %q, %v", got, err)
	}
}

// TestLockFileRemovedWhileWaiting: another process's Remove deletes the
// service directory, lock file included, while this process waits for
// that lock. The waiter then holds a lock on a deleted file, which
// excludes nobody, so it must notice and start over.
func TestLockFileRemovedWhileWaiting(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := s.Put("chat", KindCert, []byte("old")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir, "chat")
	// Play the other process: hold the lock through a descriptor of our
	// own (flock treats it like another process's).
	other, err := os.Open(filepath.Join(dir, lockName))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := unix.Flock(int(other.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	opened := make(chan struct{}, 1)
	s.lockOpened = func() {
		select {
		case opened <- struct{}{}:
		default:
		}
	}
	done := make(chan error)
	go func() { done <- s.Put("chat", KindCert, []byte("new")) }()
	<-opened
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	other.Close() // the other process's Remove is over
	if err := <-done; err != nil {
		t.Fatalf("Put after its lock file was removed: %v", err)
	}
	if got, err := s.Get("chat", KindCert); err != nil || string(got) != "new" {
		t.Errorf("Get = %q, %v; want the new entry", got, err)
	}
}
