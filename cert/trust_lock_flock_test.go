//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package cert

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests stand in for two processes with two Trusts on one file: each
// Trust has its own mutex, so only the file lock keeps them apart.

// recordMany records a key for each of n services named prefix0, prefix1, ...
func recordMany(tr *Trust, prefix string, n int) error {
	for i := range n {
		ok, err := tr.recordTOFU(fmt.Sprintf("%s%d", prefix, i), pubOf(testKey(byte(1+i%7))), t0)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s%d: another key won", prefix, i)
		}
	}
	return nil
}

// wantServices fails unless the trusted-keys file at path holds exactly one
// key for each of n services per prefix, and nothing else.
func wantServices(t *testing.T, path string, n int, prefixes ...string) {
	t.Helper()
	tr, err := LoadTrustFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prefixes {
		for i := range n {
			if ks := tr.KeysFor(fmt.Sprintf("%s%d", p, i)); len(ks) != 1 {
				t.Errorf("%s%d has %d keys in the file, want 1", p, i, len(ks))
			}
		}
	}
	if len(tr.Keys) != n*len(prefixes) {
		t.Errorf("file trusts %d patterns, want %d", len(tr.Keys), n*len(prefixes))
	}
}

func openTOFU(t *testing.T, path string) *Trust {
	t.Helper()
	tr, err := OpenTOFU(path)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// Two Trusts recording different services at once lose no line.
func TestTOFUTwoTrustsKeepAllEntries(t *testing.T) {
	const n = 40
	path := filepath.Join(t.TempDir(), "known_keys")
	trs := []*Trust{openTOFU(t, path), openTOFU(t, path)}
	prefixes := []string{"a", "b"}
	start := make(chan struct{})
	errs := make([]error, len(trs))
	var wg sync.WaitGroup
	for i, tr := range trs {
		wg.Go(func() {
			<-start
			errs[i] = recordMany(tr, prefixes[i], n)
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	wantServices(t, path, n, prefixes...)
}

// Two Trusts recording different keys for the same new service at once:
// exactly one key wins, in the file and in both Trusts, and the other
// Verify fails with the usual error.
func TestTOFUTwoTrustsSameService(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_keys")
	trs := []*Trust{openTOFU(t, path), openTOFU(t, path)}
	keys := []byte{1, 2}
	for round := range 20 {
		c := testCert()
		c.Service = fmt.Sprintf("svc%d", round)
		certs := [][]byte{mustSign(t, c, testKey(keys[0])), mustSign(t, c, testKey(keys[1]))}
		start := make(chan struct{})
		errs := make([]error, len(trs))
		var wg sync.WaitGroup
		for i, tr := range trs {
			wg.Go(func() {
				<-start
				_, errs[i] = Verify(certs[i], Name{Service: c.Service}, tr, t0)
			})
		}
		close(start)
		wg.Wait()

		winner := -1
		for i, err := range errs {
			if err == nil {
				winner = i
				continue
			}
			wantOnly(t, err, ErrUntrustedKey)
			if !strings.Contains(err.Error(), "another key was trusted first") {
				t.Errorf("%s: loser's error %q does not say another key was trusted first", c.Service, err)
			}
		}
		if winner < 0 || errs[1-winner] == nil {
			t.Fatalf("%s: errors %v, want exactly one winner", c.Service, errs)
		}
		won := pubOf(testKey(keys[winner]))
		for i, tr := range trs {
			if ks := tr.KeysFor(c.Service); len(ks) != 1 || !containsKey(ks, won) {
				t.Errorf("%s: Trust %d holds %d keys, want only the winner's", c.Service, i, len(ks))
			}
		}
		disk, err := LoadTrustFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if ks := disk.KeysFor(c.Service); len(ks) != 1 || !containsKey(ks, won) {
			t.Errorf("%s: file holds %d keys, want only the winner's", c.Service, len(ks))
		}
	}
}

const tofuHelperEnv = "SMARTCLIENT_TEST_TOFU_FILE"

// TestHelperProcess is the child of TestTOFUAcrossProcesses: it opens the
// file named in tofuHelperEnv, says "ready", waits for stdin to close,
// then records the child0... services.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(tofuHelperEnv)
	if path == "" {
		t.Skip("runs only as the child of TestTOFUAcrossProcesses")
	}
	tr, err := OpenTOFU(path)
	if err == nil {
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin) // until the parent says go
		err = recordMany(tr, "child", tofuAcrossN)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

const tofuAcrossN = 40

// A second process recording into the same file at the same time: both
// processes' entries survive.
func TestTOFUAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	path := filepath.Join(t.TempDir(), "known_keys")
	tr := openTOFU(t, path)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), tofuHelperEnv+"="+path)
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 10 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited {
			cancel()
			cmd.Wait()
		}
	}()
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && lines.Text() != "ready" {
	}
	if lines.Text() != "ready" {
		t.Fatalf("child never got ready: %v", lines.Err())
	}

	stdin.Close() // go
	parentErr := recordMany(tr, "parent", tofuAcrossN)
	err = cmd.Wait()
	waited = true
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if parentErr != nil {
		t.Fatal(parentErr)
	}
	wantServices(t, path, tofuAcrossN, "parent", "child")
}

// A lock file that cannot be created fails opening and recording, naming
// the file, and trusts nothing.
func TestTOFULockFailure(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(file, "child", "known_keys") // under a regular file, so even root fails

	_, err := OpenTOFU(path)
	if err == nil || !strings.Contains(err.Error(), path+".lock") {
		t.Errorf("OpenTOFU: error %v, want one naming %s.lock", err, path)
	}

	tr := &Trust{TOFU: true, TOFUFile: path}
	_, err = Verify(mustSign(t, testCert(), testKey(1)), chat, tr, t0)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Verify: error %v, want one naming %s", err, path)
	}
	if len(tr.KeysFor("chat")) != 0 {
		t.Error("key trusted in memory although it could not be recorded")
	}

	// A directory where the lock file should be.
	dir := t.TempDir()
	path = filepath.Join(dir, "known_keys")
	if err := os.Mkdir(path+".lock", 0o700); err != nil {
		t.Fatal(err)
	}
	tr = &Trust{TOFU: true, TOFUFile: path}
	_, err = Verify(mustSign(t, testCert(), testKey(1)), chat, tr, t0)
	if err == nil || !strings.Contains(err.Error(), path+".lock") {
		t.Errorf("Verify with a directory for a lock: error %v, want one naming %s.lock", err, path)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("trust file written without its lock: %v", err)
	}
}
