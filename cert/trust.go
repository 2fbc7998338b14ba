package cert

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smartclient/smartclient/internal/atomicfile"
)

// maxTrustFile bounds a trusted-keys file.
const maxTrustFile = 1 << 20

// Trust is the set of keys a client trusts to sign certificates, by service
// pattern, and whether it trusts a new service's first key (TOFU).
//
// The trusted-keys file, like ssh's known_hosts, has one key per line:
//
//	# comment
//	chat        ed25519 BASE64-OF-32-BYTES  optional comment
//	*.example   ed25519 BASE64...
//	*           ed25519 BASE64...           trusted for every service
//
// Patterns are path.Match patterns over service names ("*" is any
// service). A file that is instead one or more PEM "PUBLIC KEY" blocks (a
// KEY.pub from WriteKeyPair) trusts each key for every service.
//
// A Trust is safe for concurrent use by Verify; set Keys directly only
// before sharing it, and do not copy it after first use.
type Trust struct {
	// Keys maps a service pattern to the keys trusted for matching services.
	Keys map[string][]ed25519.PublicKey
	// TOFU trusts the signing key of a service's first valid certificate
	// when no key is trusted for that service yet, and records it in
	// TOFUFile (if set) so that later runs insist on the same key. Off by
	// default: the first fetch is then only as safe as the roots answering.
	TOFU bool
	// TOFUFile is the trusted-keys file TOFU appends to, atomically
	// (rewritten to a temporary file and renamed), while holding an
	// exclusive flock(2) on TOFUFile+".lock" (created 0600 if missing). The
	// file is re-read under that lock, so when another process has recorded
	// a key for the service meanwhile, that key decides.
	TOFUFile string

	mu sync.RWMutex
}

// ValidPattern reports whether p is a service pattern: a path.Match pattern
// of visible ASCII without '/' and at most 128 bytes.
func ValidPattern(p string) bool {
	if p == "" || len(p) > 128 || !visibleASCII(p) || strings.Contains(p, "/") {
		return false
	}
	_, err := path.Match(p, "x")
	return err == nil
}

// AddKey trusts pub for services matching pattern.
func (t *Trust) AddKey(pattern string, pub ed25519.PublicKey) error {
	if !ValidPattern(pattern) {
		return fmt.Errorf("cert: bad service pattern %q", clip(pattern))
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("cert: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLocked(pattern, pub)
	return nil
}

func (t *Trust) addLocked(pattern string, pub ed25519.PublicKey) {
	if t.Keys == nil {
		t.Keys = make(map[string][]ed25519.PublicKey)
	}
	if !slices.ContainsFunc(t.Keys[pattern], func(k ed25519.PublicKey) bool { return bytes.Equal(k, pub) }) {
		t.Keys[pattern] = append(t.Keys[pattern], bytes.Clone(pub))
	}
}

// KeysFor returns the keys trusted for service, deduplicated.
func (t *Trust) KeysFor(service string) []ed25519.PublicKey {
	if t == nil {
		return nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.keysForLocked(service)
}

func (t *Trust) keysForLocked(service string) []ed25519.PublicKey {
	var ks []ed25519.PublicKey
	for p, keys := range t.Keys {
		if ok, _ := path.Match(p, service); !ok {
			continue
		}
		for _, k := range keys {
			if len(k) == ed25519.PublicKeySize && !slices.ContainsFunc(ks, func(x ed25519.PublicKey) bool { return bytes.Equal(x, k) }) {
				ks = append(ks, k)
			}
		}
	}
	return ks
}

// ParseTrust parses a trusted-keys file's contents (see Trust).
func ParseTrust(data []byte) (*Trust, error) {
	t := &Trust{}
	if err := t.parse(data); err != nil {
		return nil, err
	}
	return t, nil
}

// LoadTrustFile reads a trusted-keys file (see Trust) of at most 1 MiB.
func LoadTrustFile(path string) (*Trust, error) {
	data, err := readBounded(path, maxTrustFile)
	if err != nil {
		return nil, err
	}
	t := &Trust{}
	if err := t.parse(data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// OpenTOFU returns a Trust with TOFU on, recording into path, holding the
// keys already in path if it exists. It reads path under a shared lock on
// path+".lock" (see Trust.TOFUFile).
func OpenTOFU(path string) (*Trust, error) {
	lock, err := lockTrustFile(path, false)
	switch {
	case err == nil:
		defer lock.Close()
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		// No directory yet (so no file), or one we may not write to (so we
		// record nothing): the atomic rename alone keeps the read whole.
	default:
		return nil, err
	}
	t, err := LoadTrustFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		t, err = &Trust{}, nil
	}
	if err != nil {
		return nil, err
	}
	t.TOFU, t.TOFUFile = true, path
	return t, nil
}

func (t *Trust) parse(data []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		rest := data
		for n := 0; ; n++ {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				if n == 0 || len(bytes.TrimSpace(rest)) > 0 {
					return errors.New("cert: trusted keys: bad PEM data")
				}
				return nil
			}
			if block.Type != "PUBLIC KEY" {
				return fmt.Errorf("cert: trusted keys: PEM block %q, want \"PUBLIC KEY\"", clip(block.Type))
			}
			pub, err := parsePKIX(block.Bytes)
			if err != nil {
				return fmt.Errorf("cert: trusted keys: %w", err)
			}
			t.addLocked("*", pub)
		}
	}
	n := 0
	for line := range strings.Lines(string(data)) {
		n++
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 3 || f[1] != keyType {
			return fmt.Errorf("cert: trusted keys line %d: want \"PATTERN %s BASE64 [comment]\"", n, keyType)
		}
		if !ValidPattern(f[0]) {
			return fmt.Errorf("cert: trusted keys line %d: bad service pattern %q", n, clip(f[0]))
		}
		pub, err := parseRawKey(f[2])
		if err != nil {
			return fmt.Errorf("cert: trusted keys line %d: %w", n, err)
		}
		t.addLocked(f[0], pub)
	}
	return nil
}

// TrustLine formats one trusted-keys line.
func TrustLine(pattern string, pub ed25519.PublicKey, comment string) string {
	s := pattern + " " + keyType + " " + base64.StdEncoding.EncodeToString(pub)
	if comment = strings.Join(strings.Fields(comment), " "); comment != "" {
		s += " " + comment
	}
	return s + "\n"
}

// recordTOFU trusts pub for service if no key is trusted for it yet, or if
// pub already is (another Verify, here or in another process, got there
// first with the same key), and records it in TOFUFile. It reports false if
// another key won the race.
func (t *Trust) recordTOFU(service string, pub ed25519.PublicKey, now time.Time) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ks := t.keysForLocked(service); len(ks) > 0 {
		return containsKey(ks, pub), nil
	}
	if t.TOFUFile != "" {
		if ok, err := t.recordFileLocked(service, pub, now); !ok || err != nil {
			return ok, err
		}
	}
	t.addLocked(service, pub)
	return true, nil
}

// recordFileLocked does recordTOFU's read-modify-write of TOFUFile under
// the exclusive cross-process lock. The keys in the file as re-read are
// merged into t first, so a key another process recorded for service since
// t was loaded decides, and pub is appended only if there is none.
func (t *Trust) recordFileLocked(service string, pub ed25519.PublicKey, now time.Time) (bool, error) {
	path := t.TOFUFile
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("cert: recording first-use key in %s: %w", path, err)
	}
	lock, err := lockTrustFile(path, true)
	if err != nil {
		return false, err
	}
	defer lock.Close()

	old, err := readBounded(path, maxTrustFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = []byte("# smartclient trusted keys; \"tofu\" lines were trusted on first use\n")
	case err != nil:
		return false, fmt.Errorf("cert: recording first-use key in %s: %w", path, err)
	default:
		disk, err := ParseTrust(old)
		if err != nil {
			return false, fmt.Errorf("%s: %w", path, err)
		}
		for p, ks := range disk.Keys {
			for _, k := range ks {
				t.addLocked(p, k)
			}
		}
		if ks := t.keysForLocked(service); len(ks) > 0 {
			return containsKey(ks, pub), nil
		}
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		old = append(old, '\n')
	}
	data := append(old, TrustLine(service, pub, "tofu "+now.UTC().Format(time.RFC3339))...)
	if len(data) > maxTrustFile {
		return false, fmt.Errorf("cert: %s would grow past %d bytes", path, maxTrustFile)
	}
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return false, fmt.Errorf("cert: recording first-use key in %s: %w", path, err)
	}
	return true, nil
}

// lockTrustFile opens path+".lock", creating it 0600 if missing, and locks
// it for writing path (exclusive) or reading it (shared). Closing the
// returned file unlocks. The lock file is never removed: removing it would
// let a waiter lock a file a newcomer no longer sees.
func lockTrustFile(path string, exclusive bool) (*os.File, error) {
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cert: locking trusted keys: %w", err)
	}
	if err := flockFile(f, exclusive); err != nil {
		f.Close()
		return nil, fmt.Errorf("cert: locking trusted keys: flock %s: %w", name, err)
	}
	return f, nil
}
