package download

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/internal/nginxproc"
)

// startNginxMirrors starts n of Debian's nginx serving dir on loopback
// ports, each at rate bytes/s per connection (0: unlimited).
func startNginxMirrors(t *testing.T, dir string, n int, rate string) ([]string, []*nginxproc.Server) {
	t.Helper()
	if _, err := nginxproc.LookPath(); err != nil {
		t.Fatalf("%v: run scripts/install-deps.sh (the test command does)", err)
	}
	var urls []string
	var servers []*nginxproc.Server
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		limit := ""
		if rate != "" {
			limit = "\t\tlimit_rate " + rate + ";\n"
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		s, err := nginxproc.Start(ctx, nginxproc.Options{Dir: t.TempDir(), Addr: addr, Config: nginxproc.Config{
			User: "root", // the workers read a test's private directory
			HTTP: "server {\n\tlisten " + addr + ";\n\tlocation /pub/ {\n\t\talias " + nginxproc.Quote(dir+"/") + ";\n" + limit + "\t}\n}\n",
		}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Stop() })
		urls = append(urls, "http://"+addr)
		servers = append(servers, s)
	}
	return urls, servers
}

// TestNginxMirrors: three unmodified nginx mirrors of one 8 MiB file (the
// same file, so the same ETag), each limited to 8 MB/s a connection as a
// real mirror's link would be; p2c spreads the chunks over several of them
// (unlimited loopback mirrors end a chunk before the next pick sees it in
// flight, and p2c may rightly keep to one).
func TestNginxMirrors(t *testing.T) {
	data := randomBytes(8<<20, 20)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "file.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	urls, _ := startNginxMirrors(t, src, 3, "8m")
	dir := t.TempDir()
	dst := filepath.Join(dir, "file.bin")
	res, err := Get(t.Context(), newDirector(t, "p2c", urls...), "/pub/file.bin", dst, Config{ChunkSize: 512 << 10, SHA256: sum(data)})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	onlyFiles(t, dir, "file.bin")
	used := mirrorsUsed(res)
	if used < 2 || res.Fetched != res.Size || res.Retries != 0 || res.Validator == "" {
		t.Fatalf("%d mirrors used; result %+v", used, res)
	}
}

// killingTransport kills a mirror's nginx (SIGKILL, master and workers)
// from inside the client's read of one of its replies, once `after` bytes
// of that mirror's replies have arrived: a mirror dying mid-transfer.
type killingTransport struct {
	base   http.RoundTripper
	host   string
	after  int64
	kill   func()
	seen   atomic.Int64
	once   sync.Once
	killed chan struct{}
}

func (k *killingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := k.base.RoundTrip(r)
	if err == nil && r.URL.Host == k.host {
		resp.Body = &killingBody{ReadCloser: resp.Body, k: k}
	}
	return resp, err
}

type killingBody struct {
	io.ReadCloser
	k *killingTransport
}

func (b *killingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.k.seen.Add(int64(n)) >= b.k.after {
		b.k.once.Do(func() { b.k.kill(); close(b.k.killed) })
	}
	return n, err
}

// TestNginxMirrorDies: one of three rate-limited nginx mirrors is killed
// while it is sending a chunk. The download completes from the others
// with identical bytes, and the cut chunk is resumed where it broke off:
// the bytes fetched exceed the file only by what was in flight from the
// killed mirror when it died, never by a whole chunk.
func TestNginxMirrorDies(t *testing.T) {
	data := randomBytes(8<<20, 21)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "file.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// 8 MB/s a connection keeps chunks in flight long enough to be cut.
	urls, servers := startNginxMirrors(t, src, 3, "8m")
	const chunk = 1 << 20
	victim := servers[0]
	kt := &killingTransport{
		base: http.DefaultTransport.(*http.Transport).Clone(), host: victim.Addr, after: chunk / 3,
		kill: func() { victim.Process().Kill() }, killed: make(chan struct{}),
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "file.bin")
	res, err := Get(t.Context(), newDirector(t, "round-robin", urls...), "/pub/file.bin", dst,
		Config{ChunkSize: chunk, Client: &http.Client{Transport: kt}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-kt.killed:
	default:
		t.Fatal("the victim was never killed")
	}
	checkFile(t, dst, data)
	onlyFiles(t, dir, "file.bin")
	st := bytesFrom(res, urls[0])
	if st.Failures == 0 || st.Bytes == 0 || res.Retries == 0 {
		t.Fatalf("victim %+v; result %+v", st, res)
	}
	// Every byte received is written once: a resumed chunk is not fetched
	// again from its start.
	if res.Fetched != res.Size {
		t.Fatalf("fetched %d bytes for %d", res.Fetched, res.Size)
	}
}
