package cache

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDir(t *testing.T) {
	if got, err := Dir("/x/y/../z/"); err != nil || got != "/x/z" {
		t.Errorf("Dir(override) = %q, %v; want /x/z", got, err)
	}
	if runtime.GOOS != "linux" {
		t.Skip("the default location is platform-specific; checked on Linux")
	}
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if got, err := Dir(""); err != nil || got != "/xdg/smartclient" {
		t.Errorf("Dir(\"\") = %q, %v; want /xdg/smartclient", got, err)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "")
	if got, err := Dir(""); err == nil {
		t.Errorf("Dir(\"\") with neither $XDG_CACHE_HOME nor $HOME = %q, want an error", got)
	}
}

func TestRoundTrip(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "new", "dir")}
	for _, body := range [][]byte{
		[]byte(`{"payloadType":"application/vnd.smartclient.cert+json"}`),
		{},
		[]byte("smartclient-cache v1 sha256=00 len=1\n\n\x00\xff"), // a body that looks like a header
		bytes.Repeat([]byte{0xa5}, MaxSize),
	} {
		if err := s.Put("chat.example.com", KindCert, body); err != nil {
			t.Fatalf("Put(%d bytes): %v", len(body), err)
		}
		got, err := s.Get("chat.example.com", KindCert)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("Get after Put(%d bytes) = %d bytes, %v", len(body), len(got), err)
		}
	}
	// Kinds and services are independent.
	if err := s.Put("chat.example.com", KindState, []byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("chat~abc", KindState, []byte("other")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ service, kind, want string }{
		{"chat.example.com", KindState, "state"},
		{"chat~abc", KindState, "other"},
	} {
		if got, err := s.Get(c.service, c.kind); err != nil || string(got) != c.want {
			t.Errorf("Get(%s, %s) = %q, %v; want %q", c.service, c.kind, got, err, c.want)
		}
	}
	if got, err := s.Get("chat.example.com", KindCert); err != nil || len(got) != MaxSize {
		t.Errorf("Get(cert) after Put(state) = %d bytes, %v", len(got), err)
	}
}

func TestPutTooLarge(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := s.Put("chat", KindCert, make([]byte, MaxSize+1)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("Put(MaxSize+1 bytes) = %v, want a size error", err)
	}
	if _, err := s.Get("chat", KindCert); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after a refused Put = %v, want ErrNotFound", err)
	}
}

func TestNames(t *testing.T) {
	root := t.TempDir()
	s := Store{Dir: filepath.Join(root, "c")}
	long := strings.Repeat("a", maxName)
	for _, name := range []string{"chat", "chat.example.com", "a", "0", "chat~" + strings.Repeat("b", 52), "a_b-c", long} {
		if err := s.Put(name, KindCert, []byte("x")); err != nil {
			t.Errorf("Put(service %q): %v", name, err)
		}
		if err := s.Put("chat", name, []byte("x")); err != nil {
			t.Errorf("Put(kind %q): %v", name, err)
		}
	}
	for _, name := range []string{
		"", ".", "..", "../x", "../../etc/passwd", "a/b", "/abs", `a\b`, "a/../..",
		".hidden", ".lock", ".tmp-cert-1", "-x", "~x", "_x", "Chat", "a b", "a\x00", "é",
		long + "a",
	} {
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
				t.Errorf("%s with %q = %v, want ErrInvalidName naming it", op, name, err)
			}
		}
		check("Put service", s.Put(name, KindCert, []byte("x")))
		check("Put kind", s.Put("chat", name, []byte("x")))
		_, err := s.Get(name, KindCert)
		check("Get service", err)
		_, err = s.Get("chat", name)
		check("Get kind", err)
		check("Remove", s.Remove(name))
	}
	// Nothing was written outside the store.
	entries, err := os.ReadDir(root)
	if err != nil || len(entries) != 1 || entries[0].Name() != "c" {
		t.Errorf("root holds %v, %v; want only the store directory", entries, err)
	}
}

func TestEmptyStoreDir(t *testing.T) {
	var s Store
	if err := s.Put("chat", KindCert, nil); err == nil {
		t.Error("Put with an empty Store.Dir succeeded")
	}
	if _, err := s.Get("chat", KindCert); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get with an empty Store.Dir = %v, want a configuration error", err)
	}
}

func TestNotFound(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if _, err := s.Get("chat", KindCert); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(no service directory) = %v, want ErrNotFound", err)
	}
	if err := s.Put("chat", KindState, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("chat", KindCert); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
		t.Errorf("Get(missing kind) = %v, want ErrNotFound", err)
	}
	// A temporary file is never taken for the entry it was meant to become.
	plant(t, filepath.Join(s.Dir, "chat", tmpPrefix+KindCert+"-123"), encode([]byte("half")))
	if _, err := s.Get("chat", KindCert); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(only a temporary file) = %v, want ErrNotFound", err)
	}
}

// TestCorrupt damages a valid entry in each way and expects ErrCorrupt
// naming the file and the reason, then a Put that repairs it.
func TestCorrupt(t *testing.T) {
	valid := encode([]byte(`{"payload":"certificate bytes"}`))
	flip := func(i int) func(t *testing.T, p string) {
		return func(t *testing.T, p string) {
			b := bytes.Clone(valid)
			b[(i+len(b))%len(b)] ^= 0x01
			plant(t, p, b)
		}
	}
	write := func(b []byte) func(t *testing.T, p string) {
		return func(t *testing.T, p string) { plant(t, p, b) }
	}
	header := func(h string) func(t *testing.T, p string) {
		return write(append([]byte(h+"\n"), `{"payload":"certificate bytes"}`...))
	}
	nl := bytes.IndexByte(valid, '\n')
	sumAt := bytes.Index(valid, []byte("sha256=")) + len("sha256=")
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string)
		reason string
		stuck  bool // Put cannot replace it either
	}{
		{"empty", write(nil), "empty file", false},
		{"truncated header", write(valid[:nl-3]), "truncated header", false},
		{"header only", write(valid[:nl+1]), "truncated: body has 0 of", false},
		{"truncated body", write(valid[:len(valid)-1]), "truncated: body has", false},
		{"flipped body byte", flip(-5), "checksum mismatch", false},
		{"flipped checksum digit", flip(sumAt + 3), "checksum mismatch", false},
		{"trailing bytes", write(append(bytes.Clone(valid), "x"...)), "1 unexpected bytes", false},
		{"no header", write([]byte(`{"payload":"certificate bytes"}` + "\n")), "does not start with", false},
		{"no newline", write(bytes.Repeat([]byte("x"), maxHeader+1)), "no newline in the first", false},
		{"newer version", header("smartclient-cache v2 sha256=" + strings.Repeat("0", 64) + " len=31"), "unsupported version", false},
		{"missing fields", header("smartclient-cache v1 len=31"), "fields, want 4", false},
		{"upper-case checksum", header("smartclient-cache v1 sha256=" + strings.Repeat("A", 64) + " len=31"), "checksum field", false},
		{"short checksum", header("smartclient-cache v1 sha256=abcd len=31"), "checksum field", false},
		{"padded length", header("smartclient-cache v1 sha256=" + strings.Repeat("0", 64) + " len=031"), "length field", false},
		{"negative length", header("smartclient-cache v1 sha256=" + strings.Repeat("0", 64) + " len=-1"), "length field", false},
		{"huge length", header("smartclient-cache v1 sha256=" + strings.Repeat("0", 64) + " len=99999999999"), "declares 99999999999 bytes", false},
		{"too large", func(t *testing.T, p string) {
			plant(t, p, valid)
			if err := os.Truncate(p, MaxSize+maxHeader+1); err != nil { // sparse: cheap
				t.Fatal(err)
			}
		}, "too large", false},
		{"symlink", func(t *testing.T, p string) {
			other := filepath.Join(filepath.Dir(p), "elsewhere")
			plant(t, other, valid)
			if err := os.Symlink(other, p); err != nil {
				t.Skip("no symlinks:", err)
			}
		}, "not a regular file", false},
		{"directory", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Store{Dir: t.TempDir()}
			if err := s.Put("chat", KindCert, []byte("old")); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(s.Dir, "chat", KindCert)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			c.damage(t, path)
			got, err := s.Get("chat", KindCert)
			if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound) || got != nil {
				t.Fatalf("Get = %q, %v; want ErrCorrupt", got, err)
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, c.reason) {
				t.Errorf("Get error %q does not name the file and %q", msg, c.reason)
			}
			err = s.Put("chat", KindCert, []byte("new"))
			if c.stuck {
				if err == nil {
					t.Fatal("Put over a directory succeeded")
				}
				assertNoTemps(t, filepath.Dir(path))
				return
			}
			if err != nil {
				t.Fatalf("Put over the damaged entry: %v", err)
			}
			if got, err := s.Get("chat", KindCert); err != nil || string(got) != "new" {
				t.Errorf("Get after repair = %q, %v", got, err)
			}
		})
	}
}

func TestUnreadable(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() == 0 {
		t.Skip("needs Unix permissions and a user that is not root")
	}
	s := Store{Dir: t.TempDir()}
	if err := s.Put("chat", KindCert, []byte("x")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir, "chat", KindCert)
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get("chat", KindCert)
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), path) {
		t.Errorf("Get(mode 0 file) = %v, want ErrCorrupt wrapping a permission error naming the file", err)
	}
	// Rename needs only the directory's permissions, so Put repairs it.
	if err := s.Put("chat", KindCert, []byte("y")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get("chat", KindCert); err != nil || string(got) != "y" {
		t.Errorf("Get after repair = %q, %v", got, err)
	}
}

func TestPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	root := t.TempDir()
	s := Store{Dir: filepath.Join(root, "a", "b")}
	if err := s.Put("chat", KindCert, []byte("x")); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]fs.FileMode{
		filepath.Join(root, "a"):               fs.ModeDir | 0o700,
		s.Dir:                                  fs.ModeDir | 0o700,
		filepath.Join(s.Dir, "chat"):           fs.ModeDir | 0o700,
		filepath.Join(s.Dir, "chat", KindCert): 0o600,
		filepath.Join(s.Dir, "chat", lockName): 0o600,
	} {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

// TestLeftoverTemps: temporary files left by crashed writers are ignored
// by Get and deleted by the next Put of any kind.
func TestLeftoverTemps(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := s.Put("chat", KindCert, []byte("good")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir, "chat")
	plant(t, filepath.Join(dir, tmpPrefix+KindCert+"-1"), encode([]byte("newer but never renamed")))
	plant(t, filepath.Join(dir, tmpPrefix+KindState+"-2"), []byte("half-writ"))
	if err := os.Mkdir(filepath.Join(dir, tmpPrefix+"odd"), 0o700); err != nil {
		t.Fatal(err)
	}
	plant(t, filepath.Join(dir, "unrelated"), []byte("left alone"))
	if got, err := s.Get("chat", KindCert); err != nil || string(got) != "good" {
		t.Fatalf("Get with temporary files around = %q, %v", got, err)
	}
	if err := s.Put("chat", KindState, []byte("s")); err != nil {
		t.Fatal(err)
	}
	assertNoTemps(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "unrelated")); err != nil {
		t.Errorf("Put deleted a file that is not temporary: %v", err)
	}
	if got, err := s.Get("chat", KindCert); err != nil || string(got) != "good" {
		t.Errorf("Get after cleanup = %q, %v", got, err)
	}
}

// TestInterruptBeforeRename looks at the cache from inside Put, after the
// temporary file is durable and before the rename.
func TestInterruptBeforeRename(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := s.Put("chat", KindCert, []byte("old")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir, "chat")
	ran := false
	s.beforeRename = func(tmp string) {
		ran = true
		if filepath.Dir(tmp) != dir || !strings.HasPrefix(filepath.Base(tmp), tmpPrefix) {
			t.Errorf("temporary file %s is not a %s* file in %s", tmp, tmpPrefix, dir)
		}
		b, err := os.ReadFile(tmp)
		if body, derr := decode(b); err != nil || derr != nil || string(body) != "new" {
			t.Errorf("temporary file holds %q (%v, %v), want the complete new entry", b, err, derr)
		}
		if got, err := (Store{Dir: s.Dir}).Get("chat", KindCert); err != nil || string(got) != "old" {
			t.Errorf("Get during Put = %q, %v; want the old entry", got, err)
		}
		if held, ok := lockHeld(t, dir); ok && !held {
			t.Error("the service lock is not held during Put")
		}
	}
	if err := s.Put("chat", KindCert, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if !ran {
		t.Fatal("hook did not run")
	}
	if got, err := s.Get("chat", KindCert); err != nil || string(got) != "new" {
		t.Errorf("Get after Put = %q, %v", got, err)
	}
	assertNoTemps(t, dir)
	if held, ok := lockHeld(t, dir); ok && held {
		t.Error("the service lock is still held after Put")
	}
}

const crashEnv = "SMARTCLIENT_CACHE_TEST_CRASH_DIR"

// TestCrashBeforeRename kills a real process between writing the
// temporary file and renaming it: the lock must die with it, the old
// entry must survive, and the next Put must clean up.
func TestCrashBeforeRename(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		s := Store{Dir: dir, beforeRename: func(string) {
			fmt.Println("ready")
			io.Copy(io.Discard, os.Stdin) // until the parent closes it
			os.Exit(3)                    // no deferred cleanup runs, as in a crash
		}}
		fmt.Println("Put returned", s.Put("chat", KindCert, []byte("new")))
		os.Exit(4)
	}
	if testing.Short() {
		t.Skip("starts a process")
	}
	s := Store{Dir: t.TempDir()}
	if err := s.Put("chat", KindCert, []byte("old")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir, "chat")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashBeforeRename$")
	cmd.Env = append(os.Environ(), crashEnv+"="+s.Dir)
	cmd.Stderr = os.Stderr
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
		t.Fatalf("child never reached the rename: %v", lines.Err())
	}

	if held, ok := lockHeld(t, dir); ok && !held {
		t.Error("the child's lock is not visible to this process")
	}
	if got, err := s.Get("chat", KindCert); err != nil || string(got) != "old" {
		t.Errorf("Get while the child is mid-Put = %q, %v", got, err)
	}

	stdin.Close()
	err = cmd.Wait()
	waited = true
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("child ended with %v, want exit status 3", err)
	}

	temps, _ := filepath.Glob(filepath.Join(dir, tmpPrefix+"*"))
	if len(temps) != 1 {
		t.Errorf("after the crash the directory holds temporary files %v, want exactly one", temps)
	}
	if held, ok := lockHeld(t, dir); ok && held {
		t.Error("the crashed child's lock is still held")
	}
	if got, err := s.Get("chat", KindCert); err != nil || string(got) != "old" {
		t.Errorf("Get after the crash = %q, %v; want the old entry", got, err)
	}
	if err := s.Put("chat", KindCert, []byte("newer")); err != nil {
		t.Fatal(err)
	}
	assertNoTemps(t, dir)
	if got, err := s.Get("chat", KindCert); err != nil || string(got) != "newer" {
		t.Errorf("Get after recovery = %q, %v", got, err)
	}
}

func TestRemove(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := s.Remove("chat"); err != nil {
		t.Errorf("Remove(absent) = %v", err)
	}
	for _, kind := range []string{KindCert, KindState} {
		if err := s.Put("chat", kind, []byte(kind)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put("other", KindCert, []byte("keep")); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("chat"); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{KindCert, KindState} {
		if _, err := s.Get("chat", kind); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%s) after Remove = %v, want ErrNotFound", kind, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(s.Dir, "chat")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("service directory still there: %v", err)
	}
	if got, err := s.Get("other", KindCert); err != nil || string(got) != "keep" {
		t.Errorf("Remove touched another service: %q, %v", got, err)
	}
	// A file where the service directory should be is removed too.
	plant(t, filepath.Join(s.Dir, "chat"), []byte("junk"))
	if err := s.Remove("chat"); err != nil {
		t.Errorf("Remove(a file) = %v", err)
	}
}

// TestConcurrent runs writers and readers on two Stores sharing one
// directory; run it with -race. Every Get must see a complete entry.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	stores := []Store{{Dir: dir}, {Dir: dir}}
	payload := func(w, i int) []byte { return bytes.Repeat([]byte{byte('a' + w)}, 1+(w*7919+i*104729)%70000) }
	for _, kind := range []string{KindCert, KindState} {
		if err := stores[0].Put("chat", kind, payload(0, 0)); err != nil {
			t.Fatal(err)
		}
	}
	const writers, puts = 4, 10
	var wg, readers sync.WaitGroup
	done := make(chan struct{})
	for r := range 4 {
		readers.Go(func() {
			s := stores[r%2]
			for n := 0; ; n++ {
				kind := []string{KindCert, KindState}[n%2]
				b, err := s.Get("chat", kind)
				if err != nil {
					t.Errorf("Get during writes: %v", err)
					return
				}
				if len(b) == 0 || len(bytes.Trim(b, string(b[:1]))) != 0 {
					t.Errorf("Get returned a mixed %d-byte entry", len(b))
					return
				}
				select {
				case <-done:
					return
				default:
				}
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for i := range puts {
				kind := []string{KindCert, KindState}[(w+i)%2]
				if err := stores[w%2].Put("chat", kind, payload(w, i)); err != nil {
					t.Errorf("Put: %v", err)
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	assertNoTemps(t, filepath.Join(dir, "chat"))
}

// TestConcurrentRemove: Puts racing Removes all succeed, and what is left
// is either nothing or a complete entry.
func TestConcurrentRemove(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			s := Store{Dir: dir}
			for i := range 10 {
				if err := s.Put("chat", KindCert, []byte(fmt.Sprint(w, i))); err != nil {
					t.Errorf("Put racing Remove: %v", err)
				}
			}
		})
	}
	wg.Go(func() {
		s := Store{Dir: dir}
		for range 10 {
			if err := s.Remove("chat"); err != nil {
				t.Errorf("Remove racing Put: %v", err)
			}
		}
	})
	wg.Wait()
	if _, err := (Store{Dir: dir}).Get("chat", KindCert); err != nil && !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after the race = %v", err)
	}
}

func plant(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	temps, err := filepath.Glob(filepath.Join(dir, tmpPrefix+"*"))
	if err != nil || len(temps) != 0 {
		t.Errorf("temporary files left in %s: %v %v", dir, temps, err)
	}
}

func BenchmarkGet(b *testing.B) {
	s := Store{Dir: b.TempDir()}
	if err := s.Put("chat", KindCert, make([]byte, 4096)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get("chat", KindCert); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPut is dominated by the two fsyncs, i.e. by the disk.
func BenchmarkPut(b *testing.B) {
	s := Store{Dir: b.TempDir()}
	data := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Put("chat", KindCert, data); err != nil {
			b.Fatal(err)
		}
	}
}
