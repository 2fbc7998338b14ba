// Package cache keeps a service's certificate and the director's saved
// state on disk, so a client can start with no network calls at all.
//
// Layout: DIR/SERVICE/KIND, one file per entry (KindCert, KindState),
// plus DIR/SERVICE/.lock and, after a crash, stale DIR/SERVICE/.tmp-*
// files. Directories are created 0700 and files 0600.
//
// Crash safety: Put writes a temporary file in the same directory,
// fsyncs it, renames it over the entry and fsyncs the directory, so the
// entry is always either the old or the new complete contents, never a
// mix. Every file carries a header with the body's length and SHA-256,
// and Get refuses anything that does not match it with ErrCorrupt: the
// caller reports that and carries on as if the entry were absent, and
// the next Put replaces it.
//
// Concurrency: Get takes no lock, since rename is atomic. Put and Remove
// hold an exclusive lock on DIR/SERVICE/.lock (flock(2) where available,
// plus a process-wide mutex), so writers from several goroutines,
// Stores or processes are serialised, the last Put wins, and a Put may
// delete every temporary file it finds: none can belong to a live
// writer. The kernel drops a crashed process's lock. On systems without
// flock (Windows, Solaris, AIX, illumos) only writers within one process
// are serialised; see lock_other.go.
//
// The cache is not a trust anchor: anyone who can write the user's
// cache directory can replace an entry with a well-formed one, so
// callers verify a cached certificate exactly as a downloaded one.
package cache

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// Entry kinds stored per service.
const (
	KindCert  = "cert"  // the raw signed certificate envelope
	KindState = "state" // the director's saved state (director.SaveState)
)

// MaxSize bounds an entry's body. Get reads at most this much plus the
// header, so a huge or endless file cannot exhaust memory.
const MaxSize = 8 << 20

var (
	// ErrNotFound: the entry does not exist.
	ErrNotFound = errors.New("cache: not found")
	// ErrCorrupt: the entry exists but cannot be used (damaged, wrong
	// header, not a regular file, too large, unreadable). The wrapped
	// error names the file and what is wrong.
	ErrCorrupt = errors.New("cache: corrupt entry")
	// ErrInvalidName: a service or kind name that could escape the cache
	// directory or is otherwise not allowed.
	ErrInvalidName = errors.New("cache: invalid name")
)

// tmpPrefix starts every temporary file. Valid kinds start with a letter
// or digit, so temporary and lock files can never be taken for entries.
const tmpPrefix = ".tmp-"

// lockName is the per-service lock file.
const lockName = ".lock"

// Dir returns override if it is not empty, else the "smartclient"
// directory under os.UserCacheDir ($XDG_CACHE_HOME or ~/.cache on
// Linux, ~/Library/Caches on macOS, %LocalAppData% on Windows).
func Dir(override string) (string, error) {
	if override != "" {
		return filepath.Clean(override), nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache: no user cache directory, give one explicitly: %w", err)
	}
	return filepath.Join(base, "smartclient"), nil
}

// Store reads and writes entries under Dir, which is created (0700) on
// the first Put. A Store is a plain value: copies and several Stores on
// one directory may be used concurrently.
type Store struct {
	Dir string

	// Test hooks. beforeRename, if set, runs after the temporary file
	// is written and synced and before it is renamed (tests crash
	// there); lockOpened runs after the lock file is opened and before
	// it is locked.
	beforeRename func(tmp string)
	lockOpened   func()
}

// Put stores data as the service's entry of the given kind, replacing
// any previous one atomically, and removes temporary files left by
// writers that crashed. It returns only once the entry is durable.
func (s Store) Put(service, kind string, data []byte) error {
	dir, err := s.serviceDir(service)
	if err != nil {
		return err
	}
	if err := checkName("kind", kind); err != nil {
		return err
	}
	if len(data) > MaxSize {
		return fmt.Errorf("cache: %s/%s: %d bytes is more than the %d-byte limit", service, kind, len(data), MaxSize)
	}
	l, err := s.lock(dir, true)
	if err != nil {
		return err
	}
	defer l.unlock()

	if err := removeTemps(dir); err != nil {
		return err
	}
	tmp, err := writeTemp(dir, kind, encode(data))
	if err != nil {
		return err
	}
	if s.beforeRename != nil {
		s.beforeRename(tmp)
	}
	if err := os.Rename(tmp, filepath.Join(dir, kind)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cache: %w", err)
	}
	return syncDir(dir)
}

// Get returns the body of the service's entry of the given kind. Errors:
// ErrInvalidName, ErrNotFound, or ErrCorrupt wrapping the reason.
// Temporary files are never read.
func (s Store) Get(service, kind string) ([]byte, error) {
	dir, err := s.serviceDir(service)
	if err != nil {
		return nil, err
	}
	if err := checkName("kind", kind); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, kind)
	b, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	body, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	return body, nil
}

// Remove deletes every entry of the service; removing an absent service
// is not an error. Meant for tests and the CLI.
func (s Store) Remove(service string) error {
	dir, err := s.serviceDir(service)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(dir); err == nil && fi.IsDir() {
		l, err := s.lock(dir, false)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile
		}
		if err != nil {
			return err
		}
		// Deleting the lock file while holding it is safe: writers
		// waiting on it notice and start over (see lock).
		defer l.unlock()
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

func (s Store) serviceDir(service string) (string, error) {
	if s.Dir == "" {
		return "", errors.New("cache: Store.Dir is empty (see cache.Dir)")
	}
	if err := checkName("service", service); err != nil {
		return "", err
	}
	return filepath.Join(s.Dir, service), nil
}

// maxName leaves room for a self-certifying "name~fingerprint" (a
// 63-byte service name and a 52-byte fingerprint).
const maxName = 128

// checkName allows 1-128 of a-z 0-9 . _ ~ -, starting with a letter or
// digit: no separators, no "." or "..", no hidden files, and no upper
// case, which case-insensitive file systems would fold together.
func checkName(what, name string) error {
	ok := name != "" && len(name) <= maxName && isAlnum(name[0])
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = isAlnum(c) || strings.IndexByte("._~-", c) >= 0
	}
	if !ok {
		return fmt.Errorf("%w: %s name %.140q: want 1-%d characters from a-z 0-9 . _ ~ -, starting with a letter or digit",
			ErrInvalidName, what, name, maxName)
	}
	return nil
}

func isAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// readBounded reads a regular file of at most MaxSize+maxHeader bytes.
func readBounded(path string) ([]byte, error) {
	corrupt := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrCorrupt, path, fmt.Sprintf(format, a...))
	}
	// Lstat first, so a symlink is refused and a FIFO or device is
	// never opened (opening a FIFO would block).
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, corrupt("not a regular file (mode %v)", fi.Mode())
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path) // Removed meanwhile.
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	defer f.Close()
	// Check what was opened too: a Put may have renamed a new file in
	// since the Lstat, which is fine, but it must be a regular file.
	if fi, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	const limit = MaxSize + maxHeader
	if !fi.Mode().IsRegular() {
		return nil, corrupt("not a regular file (mode %v)", fi.Mode())
	}
	if fi.Size() > limit {
		return nil, corrupt("too large: %d bytes, limit %d", fi.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if len(b) > limit {
		return nil, corrupt("too large: more than %d bytes", limit)
	}
	return b, nil
}

// writeTemp writes b to a new 0600 temporary file in dir and syncs it.
func writeTemp(dir, kind string, b []byte) (string, error) {
	f, err := os.CreateTemp(dir, tmpPrefix+kind+"-")
	if err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("cache: %w", err)
	}
	return f.Name(), nil
}

// removeTemps deletes temporary files left in dir by crashed writers.
// The caller holds the lock, so no live writer owns any of them.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("cache: removing a stale temporary file: %w", err)
			}
		}
	}
	return nil
}

// syncDir makes renames and creations in dir durable. Windows cannot
// fsync a directory and needs no such step.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cache: syncing %s: %w", dir, err)
	}
	return nil
}

// processMu serialises writers within this process regardless of how
// the platform's file lock treats two descriptors of one process (flock
// on an NFS mount may behave like a per-process fcntl lock).
var processMu sync.Mutex

// dirLock is a held lock on one service directory.
type dirLock struct{ f *os.File }

// maxLockTries bounds the retries when the lock file keeps being
// deleted under us by concurrent Removes.
const maxLockTries = 100

// lock takes the exclusive lock of the service directory dir. With
// create, it first creates dir (and Store.Dir) if needed; without, a
// missing dir gives an error wrapping fs.ErrNotExist.
//
// A Remove deletes the lock file while holding it, so a writer that was
// waiting may end up holding a lock on a deleted file; lock therefore
// checks that the file it locked is still the one at the path, and
// starts over if not.
func (s Store) lock(dir string, create bool) (*dirLock, error) {
	processMu.Lock()
	path := filepath.Join(dir, lockName)
	for range maxLockTries {
		if create {
			if err := mkdirAll(dir); err != nil {
				processMu.Unlock()
				return nil, err
			}
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if errors.Is(err, fs.ErrNotExist) && create {
			continue // dir was removed after mkdirAll
		}
		if err != nil {
			processMu.Unlock()
			return nil, fmt.Errorf("cache: %w", err)
		}
		if s.lockOpened != nil {
			s.lockOpened()
		}
		if err := lockFile(f); err != nil {
			f.Close()
			processMu.Unlock()
			return nil, fmt.Errorf("cache: locking %s: %w", path, err)
		}
		held, err1 := f.Stat()
		now, err2 := os.Lstat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			return &dirLock{f}, nil
		}
		f.Close() // closing drops the lock
		if !create && errors.Is(err2, fs.ErrNotExist) {
			processMu.Unlock()
			return nil, fmt.Errorf("cache: %w", err2)
		}
	}
	processMu.Unlock()
	return nil, fmt.Errorf("cache: %s keeps being removed while locking it", path)
}

func (l *dirLock) unlock() {
	l.f.Close() // closing drops the lock
	processMu.Unlock()
}

// mkdirAll creates dir and its parents with mode 0700 and syncs the
// parent of each directory it creates, so the new entry survives a
// crash along with the files later renamed into it.
func mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("cache: %s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // created concurrently
		}
		return fmt.Errorf("cache: %w", err)
	}
	return syncDir(parent)
}
