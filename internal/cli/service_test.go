package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certSetup runs keygen and sign through the command line and returns the
// key, certificate and a directory holding chat.cert.
func certSetup(t *testing.T, members ...string) (key, certFile, rootDir string) {
	t.Helper()
	dir := t.TempDir()
	key = filepath.Join(dir, "chat.key")
	if code, out, errs := run("cert", "keygen", "--out", key); code != 0 || !strings.Contains(out, "fingerprint: ") {
		t.Fatalf("keygen: %d %s %s", code, out, errs)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v, %v; want 0600", st.Mode(), err)
	}
	if code, _, errs := run("cert", "keygen", "--out", key); code == 0 || !strings.Contains(errs, "exist") {
		t.Fatalf("keygen over an existing key: %d %s", code, errs)
	}
	desc := "service: chat\nversion: 1\npolicy: round-robin\nttl: 1h\nrefresh: 30m\nmembers:\n"
	for _, m := range members {
		desc += "  - " + m + "\n"
	}
	descFile := filepath.Join(dir, "chat.yaml")
	if err := os.WriteFile(descFile, []byte(desc), 0o644); err != nil {
		t.Fatal(err)
	}
	rootDir = filepath.Join(dir, "root")
	os.Mkdir(rootDir, 0o755)
	certFile = filepath.Join(rootDir, "chat.cert")
	if code, out, errs := run("cert", "sign", "--key", key, "--in", descFile, "--out", certFile); code != 0 {
		t.Fatalf("sign: %d %s %s", code, out, errs)
	}
	return key, certFile, rootDir
}

func TestCertCommands(t *testing.T) {
	key, certFile, _ := certSetup(t, "http://127.0.0.1:1", "http://127.0.0.1:2")
	if code, out, errs := run("cert", "verify", "--trust", key+".pub", certFile); code != 0 || !strings.HasPrefix(out, "ok: chat version 1, 2 members") {
		t.Fatalf("verify: %d %q %q", code, out, errs)
	}
	if code, out, _ := run("cert", "inspect", certFile); code != 0 || !strings.Contains(out, `"service": "chat"`) || !strings.Contains(out, "not verified") {
		t.Fatalf("inspect: %d %s", code, out)
	}

	other := filepath.Join(t.TempDir(), "other.key")
	run("cert", "keygen", "--out", other)
	data, _ := os.ReadFile(certFile)
	tampered := filepath.Join(t.TempDir(), "tampered.cert")
	// Re-encode the payload with one member changed: valid base64, bad signature.
	env := string(data)
	i := strings.Index(env, `"payload":"`) + len(`"payload":"`)
	mid := i + 40
	flip := env[:mid] + string(rune(env[mid]^1)) + env[mid+1:]
	os.WriteFile(tampered, []byte(flip), 0o644)
	truncated := filepath.Join(t.TempDir(), "truncated.cert")
	os.WriteFile(truncated, data[:len(data)/2], 0o644)

	for _, tc := range []struct {
		name, want string
		args       []string
	}{
		{"another key", "untrusted key", []string{"--trust", other + ".pub", certFile}},
		{"tampered", "cert:", []string{"--trust", key + ".pub", tampered}},
		{"truncated", "malformed", []string{"--trust", key + ".pub", truncated}},
		{"wrong service", "another service", []string{"--trust", key + ".pub", "--name", "service://mail", certFile}},
		{"no such file", "no such file", []string{"--trust", key + ".pub", filepath.Join(t.TempDir(), "missing")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := run(append([]string{"cert", "verify"}, tc.args...)...)
			if code == 0 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, tc.want) {
				t.Errorf("verify: exit %d, stderr %q; want non-zero and one line containing %q", code, errs, tc.want)
			}
		})
	}
}

func TestResolveAndProxyByService(t *testing.T) {
	a := newMember(t, "a", nil)
	b := newMember(t, "b", nil)
	key, _, rootDir := certSetup(t, a.URL, b.URL)
	cacheDir := t.TempDir()

	// serve-cert publishes the directory as an HTTP root.
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan int, 1)
	var so, se syncBuffer
	go func() {
		done <- Run(ctx, []string{"serve-cert", "--dir", rootDir, "--listen", "127.0.0.1:0"}, &so, &se, ready)
	}()
	var rootURL string
	select {
	case addr := <-ready:
		rootURL = "http://" + addr
	case <-time.After(10 * time.Second):
		t.Fatal("serve-cert did not start")
	}
	stopRoot := func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve-cert exited %d: %s", code, se.String())
		}
	}

	code, out, errs := run("resolve", "service://chat", "--root", rootURL, "--root", filepath.Join(t.TempDir(), "empty"),
		"--trust", key+".pub", "--cache-dir", cacheDir)
	if code != 0 || !strings.Contains(out, "version: 1") || !strings.Contains(out, "source: "+rootURL) ||
		!strings.Contains(out, "member: "+a.URL) || !strings.Contains(out, "no certificate published") {
		t.Fatalf("resolve: %d\n%s\n%s", code, out, errs)
	}

	p := startProxy(t, "--service", "service://chat", "--root", rootURL, "--trust", key+".pub", "--cache-dir", cacheDir)
	p.waitLine(t, "service: service://chat version 1")
	for range 4 {
		if status, body, _ := get(t, p.url+"/x"); status != 200 || !strings.HasSuffix(body, " /x") {
			t.Fatalf("through the proxy: %d %q", status, body)
		}
	}
	if a.served.Load() == 0 || b.served.Load() == 0 {
		t.Errorf("round-robin from the certificate: served a=%d b=%d", a.served.Load(), b.served.Load())
	}
	p.stop(t)

	// Every root gone: the next start is served from the cache.
	stopRoot()
	p = startProxy(t, "--service", "service://chat", "--root", rootURL, "--trust", key+".pub", "--cache-dir", cacheDir)
	p.waitLine(t, "from cache")
	if status, _, _ := get(t, p.url+"/y"); status != 200 {
		t.Fatalf("from the cache: status %d", status)
	}
}

func TestServiceFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"proxy", "--service", "chat", "--root", "/tmp"}, "does not start with"},
		{[]string{"proxy", "--service", "service://chat", "--member", "http://h:1"}, "either --service or --member"},
		{[]string{"proxy", "--service", "service://chat", "--root", "gopher://x"}, "--root"},
		{[]string{"proxy", "--service", "service://chat", "--no-cache"}, "nowhere to find"},
		{[]string{"proxy", "--service", "service://chat", "--root", "/tmp", "--stale", "maybe"}, "--stale"},
		{[]string{"resolve", "--root", "/tmp"}, "exactly one service://NAME"},
		{[]string{"resolve", "service://chat"}, "no --root"},
		{[]string{"cert", "frob"}, "unknown subcommand"},
		{[]string{"cert", "sign", "--key", "k"}, "--key, --in and --out are required"},
		{[]string{"serve-cert"}, "--dir is required"},
	} {
		code, _, errs := run(tc.args...)
		if code != ExitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
}
