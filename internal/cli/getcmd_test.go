package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fileMirrors serves data as /pub/file.bin from n HTTP mirrors on loopback.
func fileMirrors(t *testing.T, data []byte, n int) []string {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "file.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var urls []string
	for range n {
		s := httptest.NewServer(http.StripPrefix("/pub", http.FileServer(http.Dir(src))))
		t.Cleanup(s.Close)
		urls = append(urls, s.URL)
	}
	return urls
}

func TestGetCommand(t *testing.T) {
	data := bytes.Repeat([]byte("smart clients fetch from mirrors\n"), 20000) // 660 kB
	digest := sha256.Sum256(data)
	hexsum := hex.EncodeToString(digest[:])
	urls := fileMirrors(t, data, 3)

	dir := t.TempDir()
	t.Chdir(dir)
	code, stdout, stderr := run("get", "--member", urls[0], "--member", urls[1], "--member", urls[2],
		"--chunk", "64K", "--parallel", "3", "--sha256", strings.ToUpper(hexsum), "/pub/file.bin")
	if code != ExitOK {
		t.Fatalf("exit %d; stderr %q", code, stderr)
	}
	got, err := os.ReadFile(filepath.Join(dir, "file.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file.bin: %d bytes, %v", len(got), err)
	}
	for _, want := range []string{"summary: file=file.bin bytes=660000 ", " mb_per_s=", " fetched=660000 retries=0 mirrors=http://127.0.0.1:"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout %q lacks %q", stdout, want)
		}
	}

	// A wrong digest: exit 1 with the reason, the earlier file untouched.
	out := filepath.Join(dir, "file.bin")
	code, _, stderr = run("get", "--member", urls[0], "--sha256", strings.Repeat("0", 64), "-o", out, "/pub/file.bin")
	if code != ExitFailure || !strings.Contains(stderr, "SHA-256 mismatch: got "+hexsum) {
		t.Fatalf("exit %d; stderr %q", code, stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatal("a failed download changed the existing file")
	}
	// Missing everywhere: exit 1 naming the status and the mirror.
	code, _, stderr = run("get", "--member", urls[1], "-o", filepath.Join(dir, "x"), "/pub/missing")
	if code != ExitFailure || !strings.Contains(stderr, urls[1]+" bytes 0-1048575: unexpected status 404") {
		t.Fatalf("exit %d; stderr %q", code, stderr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d files left in %s", len(ents), dir)
	}
}

func TestGetBadCommandLines(t *testing.T) {
	const m = "http://127.0.0.1:9"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "/f"}, "no mirrors: give at least one --member"},
		{[]string{"get", "--member", m}, "want exactly one PATH to download, got 0"},
		{[]string{"get", "--member", m, "/a", "/b"}, "want exactly one PATH to download, got 2"},
		{[]string{"get", "--member", m, "f"}, `PATH "f": must start with /`},
		{[]string{"get", "--member", m, "/dir/"}, `PATH "/dir/" names no file: give -o FILE`},
		{[]string{"get", "--member", "gopher://h", "/f"}, `--member "gopher://h": must be an absolute http://, https:// or ftp:// URL`},
		{[]string{"get", "--member", "ftp://u:p@h", "/f"}, "FTP mirrors are read anonymously"},
		{[]string{"get", "--member", "ftp://h:21/pub/", "--member", "FTP://H:21/pub", "/f"}, `duplicate mirror, same as "ftp://h:21/pub/"`},
		{[]string{"get", "--member", m, "--chunk", "lots", "/f"}, `--chunk "lots": want a size`},
		{[]string{"get", "--member", m, "--chunk", "0", "/f"}, `--chunk "0"`},
		{[]string{"get", "--member", m, "--chunk", "2G", "/f"}, "ChunkSize 2147483648 must be in"},
		{[]string{"get", "--member", m, "--parallel", "0", "/f"}, "--parallel 0: must be in 1..64"},
		{[]string{"get", "--member", m, "--quorum", "0", "/f"}, "--quorum 0: must be in 1..16"},
		{[]string{"get", "--member", m, "--quorum-wait", "0s", "/f"}, "--quorum-wait 0s: must be in 1ns..1m0s"},
		{[]string{"get", "--member", m, "--sha256", "abc", "/f"}, `SHA256 "abc" must be 64 hexadecimal digits`},
		{[]string{"get", "--member", m, "--max-size", "-1", "/f"}, `--max-size "-1"`},
		{[]string{"get", "--member", m, "--policy", "best", "/f"}, `unknown policy "best"`},
		{[]string{"get", "--member", m, "--max-attempts", "0", "/f"}, "--max-attempts 0: must be in 1..100"},
		{[]string{"get", "--member", m, "--service", "service://x", "/f"}, "either --service or --member"},
		{[]string{"get", "--member", m, "--bogus", "/f"}, "flag provided but not defined: -bogus"},
	} {
		code, _, stderr := run(tc.args...)
		if code != ExitUsage || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if code, stdout, _ := run("help", "get"); code != ExitOK || !strings.Contains(stdout, "usage: smartclient get") || !strings.Contains(stdout, "-sha256") {
		t.Errorf("help get: %d %q", code, stdout)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"262144", 262144, true}, {"64K", 64 << 10, true}, {"64k", 64 << 10, true},
		{"1M", 1 << 20, true}, {"1MiB", 1 << 20, true}, {"1mb", 1 << 20, true}, {"4G", 4 << 30, true},
		{"", 0, false}, {"M", 0, false}, {"-1", 0, false}, {"1.5M", 0, false}, {"1T", 0, false},
		{"99999999999999999999", 0, false}, {"9999999999G", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v", tc.in, got, err)
		}
	}
}
