package resolve_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smartclient/smartclient/resolve"
)

func TestParseRoot(t *testing.T) {
	tests := []struct {
		in     string
		string string // "" = error
		typ    string
		errHas string
	}{
		{"https://example.com", "https://example.com", "http", ""},
		{"https://example.com:8443/mirror/", "https://example.com:8443/mirror/", "http", ""},
		{"HTTP://127.0.0.1:8080", "http://127.0.0.1:8080", "http", ""},
		{"http://[::1]:80", "http://[::1]:80", "http", ""},
		{"dns://127.0.0.1:5353/example.com", "dns://127.0.0.1:5353/example.com", "dns", ""},
		{"dns://ns1.example.net/Example.COM.", "dns://ns1.example.net:53/example.com", "dns", ""},
		{"dns://[::1]/example.com", "dns://[::1]:53/example.com", "dns", ""},
		{"file:///var/lib/certs", "file:///var/lib/certs", "dir", ""},
		{"file://localhost/var/lib/certs/", "file:///var/lib/certs", "dir", ""},
		{"file:///tmp/with%20space", "file:///tmp/with%20space", "dir", ""},
		{"/srv/certs", "file:///srv/certs", "dir", ""},
		{"./certs", "./certs", "dir", ""},
		{"./a:b", "./a:b", "dir", ""},
		{"../up", "../up", "dir", ""},
		{"certs/sub", "./certs/sub", "dir", ""},
		{"", "", "", "empty root"},
		{"ftp://example.com", "", "", `unsupported scheme "ftp"`},
		{"https://", "", "", "missing host"},
		{"https://:443", "", "", "missing host"},
		{"https://example.com:99999", "", "", "bad port"},
		{"https://example.com/?v=1", "", "", "no query"},
		{"https://example.com/#x", "", "", "no query or fragment"},
		{"https://user:pw@example.com", "", "", "no user"},
		{"dns://127.0.0.1", "", "", "missing zone"},
		{"dns:///example.com", "", "", "missing DNS server"},
		{"dns://127.0.0.1/a/b", "", "", "not a domain name"},
		{"dns://127.0.0.1/a..b", "", "", "not a domain name"},
		{"file://otherhost/x", "", "", "local path"},
		{"file://", "", "", "absolute path"},
		{"example.com:443", "", "", "neither a URL nor a directory"},
		{"https://exa mple.com", "", "", "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := resolve.ParseRoot(tt.in)
			if tt.string == "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("ParseRoot(%q) = %v, %v; want error with %q", tt.in, r, err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.String() != tt.string {
				t.Errorf("String() = %q, want %q", r.String(), tt.string)
			}
			var typ string
			switch r.(type) {
			case *resolve.HTTPRoot:
				typ = "http"
			case *resolve.DNSRoot:
				typ = "dns"
			case *resolve.DirRoot:
				typ = "dir"
			}
			if typ != tt.typ {
				t.Errorf("type %T, want %s", r, tt.typ)
			}
			again, err := resolve.ParseRoot(r.String())
			if err != nil || again.String() != r.String() {
				t.Errorf("String() does not round-trip: %v, %v", again, err)
			}
		})
	}
	if _, err := resolve.ParseRoots([]string{"/a", "gopher://x"}); err == nil {
		t.Error("ParseRoots accepted a bad root")
	}
}

func TestHTTPRootURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://example.com":          "https://example.com/.well-known/smartclient/chat.cert",
		"https://example.com/":         "https://example.com/.well-known/smartclient/chat.cert",
		"https://example.com/mirror":   "https://example.com/mirror/.well-known/smartclient/chat.cert",
		"https://example.com/mirror/":  "https://example.com/mirror/.well-known/smartclient/chat.cert",
		"http://127.0.0.1:8080/a/b/..": "http://127.0.0.1:8080/a/.well-known/smartclient/chat.cert",
	} {
		r, err := resolve.ParseRoot(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.(*resolve.HTTPRoot).URL("chat"); got != want {
			t.Errorf("%s: URL = %s, want %s", in, got, want)
		}
	}
}

// httpRoot starts a loopback server with h and returns a root for it.
func httpRoot(t *testing.T, h http.Handler) *resolve.HTTPRoot {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r, err := resolve.ParseRoot(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return r.(*resolve.HTTPRoot)
}

// endless writes until the client goes away.
func endless(w http.ResponseWriter, r *http.Request) {
	chunk := bytes.Repeat([]byte("A"), 64<<10)
	for {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

func TestHTTPRootFetch(t *testing.T) {
	good := certOf(1)
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(make([]byte, 4<<20)) // 4 MiB of zeros in ~4 KiB: 16 times the limit
	zw.Close()

	tests := []struct {
		name    string
		h       http.HandlerFunc
		maxSize int
		want    []byte
		errIs   error
		errHas  string
	}{
		{name: "ok", h: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/.well-known/smartclient/chat.cert" || r.Header.Get("Cache-Control") != "no-cache" {
				http.Error(w, "unexpected request", 400)
				return
			}
			w.Write(good)
		}, want: good},
		{name: "redirect followed", h: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/moved" {
				w.Write(good)
				return
			}
			http.Redirect(w, r, "/moved", http.StatusFound)
		}, want: good},
		{name: "404", h: http.NotFound, errIs: resolve.ErrNotFound, errHas: "HTTP 404"},
		{name: "410", h: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(410) }, errIs: resolve.ErrNotFound},
		{name: "500", h: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }, errHas: "HTTP 500 Internal Server Error (want 200)"},
		{name: "204 is not a certificate", h: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }, errHas: "HTTP 204"},
		{name: "exactly the limit", maxSize: 1000, h: func(w http.ResponseWriter, r *http.Request) { w.Write(padded(1, 1000)) }, want: padded(1, 1000)},
		{name: "one byte over", maxSize: 1000, h: func(w http.ResponseWriter, r *http.Request) { w.Write(padded(1, 1001)) }, errIs: resolve.ErrTooLarge},
		{name: "over MaxCertSize", h: func(w http.ResponseWriter, r *http.Request) { w.Write(padded(1, resolve.MaxCertSize+1)) }, errIs: resolve.ErrTooLarge},
		{name: "endless body", h: endless, errIs: resolve.ErrTooLarge, errHas: "more than 262144 bytes"},
		{name: "endless body, small limit", maxSize: 10, h: endless, errIs: resolve.ErrTooLarge},
		{name: "declared huge", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000000000")
			w.Write(good)
		}, errIs: resolve.ErrTooLarge, errHas: "Content-Length 1000000000"},
		{name: "gzip bomb", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(bomb.Bytes())
		}, errIs: resolve.ErrTooLarge},
		{name: "cut short", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.Write(good[:10])
		}, errHas: "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := httpRoot(t, tt.h)
			root.MaxSize = tt.maxSize
			got, err := root.Fetch(t.Context(), "chat")
			if tt.want != nil {
				if err != nil || !bytes.Equal(got, tt.want) {
					t.Fatalf("Fetch = %q, %v", got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Fetch accepted %d bytes", len(got))
			}
			if got != nil {
				t.Fatal("Fetch returned data with an error")
			}
			if !strings.HasPrefix(err.Error(), root.String()+": ") {
				t.Errorf("error does not name the root: %v", err)
			}
			if tt.errIs != nil && !errors.Is(err, tt.errIs) {
				t.Errorf("err = %v, want %v", err, tt.errIs)
			}
			if !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("err = %v, want it to mention %q", err, tt.errHas)
			}
		})
	}
}

func TestHTTPRootPrefixAndDown(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/mirror/", http.StripPrefix("/mirror", resolve.ServeHandler(certDir(t, map[string][]byte{"chat": certOf(4)}))))
	root := httpRoot(t, mux)
	prefixed, _ := resolve.ParseRoot(root.String() + "/mirror")
	if got, err := prefixed.Fetch(t.Context(), "chat"); err != nil || !bytes.Equal(got, certOf(4)) {
		t.Fatalf("Fetch under a prefix = %q, %v", got, err)
	}

	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	down, _ := resolve.ParseRoot(srv.URL)
	_, err := down.Fetch(t.Context(), "chat")
	if err == nil || !strings.HasPrefix(err.Error(), srv.URL+": ") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("down root: %v", err)
	}
	if _, err := root.Fetch(t.Context(), "../etc/passwd"); err == nil || !strings.Contains(err.Error(), "invalid service name") {
		t.Fatalf("bad name: %v", err)
	}
}

// A blocked server does not hold Fetch once the context ends.
func TestHTTPRootCancel(t *testing.T) {
	entered := make(chan struct{})
	root := httpRoot(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	}))
	ctx, cancel := context.WithCancelCause(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := root.Fetch(ctx, "chat")
		errc <- err
	}()
	<-entered
	stop := errors.New("grace over")
	cancel(stop)
	if err := <-errc; !errors.Is(err, stop) || !strings.HasPrefix(err.Error(), root.String()) {
		t.Fatalf("err = %v", err)
	}
}

// certDir writes SERVICE.cert files into a new directory.
func certDir(t *testing.T, certs map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for svc, data := range certs {
		writeFile(t, dir, svc+resolve.CertSuffix, data)
	}
	return dir
}

func TestDirRoot(t *testing.T) {
	dir := certDir(t, map[string][]byte{"chat": certOf(2), "big": padded(1, 2000), "limit": padded(1, 1000)})
	if err := os.Mkdir(filepath.Join(dir, "sub.cert"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "chat.cert"), filepath.Join(dir, "link.cert")); err != nil {
		t.Fatal(err)
	}
	root := &resolve.DirRoot{Dir: dir, MaxSize: 1000}
	tests := []struct {
		service string
		want    []byte
		errIs   error
		errHas  string
	}{
		{service: "chat", want: certOf(2)},
		{service: "link", want: certOf(2)},
		{service: "limit", want: padded(1, 1000)},
		{service: "big", errIs: resolve.ErrTooLarge, errHas: "2000 bytes"},
		{service: "missing", errIs: resolve.ErrNotFound, errHas: "does not exist"},
		{service: "sub", errHas: "not a regular file"},
		{service: "../chat", errHas: "invalid service name"},
	}
	for _, tt := range tests {
		got, err := root.Fetch(t.Context(), tt.service)
		if tt.want != nil {
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Errorf("%s: Fetch = %q, %v", tt.service, got, err)
			}
			continue
		}
		if err == nil || got != nil || !strings.HasPrefix(err.Error(), "file://"+dir+": ") ||
			(tt.errIs != nil && !errors.Is(err, tt.errIs)) || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("%s: Fetch = %d bytes, %v", tt.service, len(got), err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := root.Fetch(ctx, "chat"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Fetch = %v", err)
	}
}

func TestServeHandler(t *testing.T) {
	dir := certDir(t, map[string][]byte{"chat": certOf(3), "huge": padded(1, resolve.MaxCertSize+1)})
	writeFile(t, filepath.Dir(dir), "secret.cert", []byte("outside"))
	h := resolve.ServeHandler(dir)
	do := func(method, path string, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "http://x"+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	rec := do("GET", "/.well-known/smartclient/chat.cert")
	if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), certOf(3)) || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("ETag") == "" {
		t.Fatalf("GET: %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	etag := rec.Header().Get("ETag")
	if rec := do("GET", "/.well-known/smartclient/chat.cert", "If-None-Match", etag); rec.Code != http.StatusNotModified {
		t.Errorf("conditional GET: %d", rec.Code)
	}
	if rec := do("HEAD", "/.well-known/smartclient/chat.cert"); rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d, %d body bytes", rec.Code, rec.Body.Len())
	}
	for _, tt := range []struct {
		method, path string
		code         int
	}{
		{"POST", "/.well-known/smartclient/chat.cert", 405},
		{"GET", "/.well-known/smartclient/missing.cert", 404},
		{"GET", "/.well-known/smartclient/chat", 404},
		{"GET", "/chat.cert", 404},
		{"GET", "/.well-known/smartclient/..%2Fsecret.cert", 404},
		{"GET", "/.well-known/smartclient/huge.cert", 500},
	} {
		if rec := do(tt.method, tt.path); rec.Code != tt.code {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, rec.Code, tt.code)
		}
	}
	// Through a real server and HTTPRoot.
	root := httpRoot(t, h)
	got, err := root.Fetch(t.Context(), "chat")
	if err != nil || !bytes.Equal(got, certOf(3)) {
		t.Fatalf("Fetch = %q, %v", got, err)
	}
	// A replaced file is published at once.
	writeFile(t, dir, "chat.cert", certOf(4))
	if got, _ := root.Fetch(t.Context(), "chat"); !bytes.Equal(got, certOf(4)) {
		t.Fatalf("after replacing the file: %q", got)
	}
	if _, err := root.Fetch(t.Context(), "missing"); !errors.Is(err, resolve.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}
