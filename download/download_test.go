package download

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
)

// mirror is an in-process HTTP mirror of one file, with the faults the
// tests need. http.ServeContent does the range, If-Range and validator
// handling a real file server does.
type mirror struct {
	content []byte
	etag    string
	modtime time.Time
	noRange bool // ignore Range: always 200 with the whole file
	// cutReq > 0: the cutReq-th reply (1-based) is cut off after cutAfter
	// body bytes by closing the connection.
	cutReq   int64
	cutAfter int
	// stall > 0: the stall-th reply sends stallAfter bytes, closes stalled
	// and waits until the client goes away.
	stall      int64
	stallAfter int
	stalled    chan struct{}
	// dieAfter > 0: every request after the dieAfter-th has its connection
	// closed without a reply.
	dieAfter int64
	// The version question (a GET of bytes 0-0) is counted apart, in
	// asked, and spared the faults above. askHang makes it hang until the
	// client goes away: a black hole for that question only.
	askHang bool
	asked   atomic.Int64

	reqs atomic.Int64
	sent atomic.Int64
}

func newMirror(content []byte, etag string) *mirror {
	return &mirror{content: content, etag: etag, modtime: time.Unix(1700000000, 0)}
}

func (m *mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Range") == "bytes=0-0" {
		m.asked.Add(1)
		if m.askHang {
			<-r.Context().Done()
			return
		}
		m.serve(w, r)
		return
	}
	n := m.reqs.Add(1)
	if m.dieAfter > 0 && n > m.dieAfter {
		panic(http.ErrAbortHandler)
	}
	cw := &countWriter{ResponseWriter: w, m: m, left: -1}
	switch n {
	case m.cutReq:
		cw.left = m.cutAfter
	case m.stall:
		cw.left, cw.stall, cw.done = m.stallAfter, m.stalled, r.Context().Done()
	}
	m.serve(cw, r)
}

func (m *mirror) serve(w http.ResponseWriter, r *http.Request) {
	if m.etag != "" {
		w.Header().Set("ETag", m.etag)
	}
	if m.noRange {
		w.Header().Set("Last-Modified", m.modtime.UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Length", strconv.Itoa(len(m.content)))
		w.Write(m.content)
		return
	}
	http.ServeContent(w, r, "file", m.modtime, bytes.NewReader(m.content))
}

// countWriter counts body bytes and cuts or stalls the reply after left
// bytes (left < 0: never).
type countWriter struct {
	http.ResponseWriter
	m     *mirror
	left  int
	stall chan struct{}
	done  <-chan struct{}
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.left < 0 || len(p) < c.left {
		c.left -= len(p) * boolInt(c.left >= 0)
		c.m.sent.Add(int64(len(p)))
		return c.ResponseWriter.Write(p)
	}
	n, _ := c.ResponseWriter.Write(p[:c.left])
	c.m.sent.Add(int64(n))
	c.ResponseWriter.(http.Flusher).Flush()
	if c.stall != nil {
		close(c.stall)
		<-c.done
	}
	panic(http.ErrAbortHandler) // closes the connection mid-body
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func serve(t testing.TB, h http.Handler) string {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

// zeroRand makes round-robin start at the first member, so a test knows
// which mirror answers first.
type zeroRand struct{}

func (zeroRand) Uint64() uint64 { return 0 }

func newDirector(t testing.TB, policy string, urls ...string) *director.Director {
	ms := make([]balance.Member, len(urls))
	for i, u := range urls {
		ms[i] = balance.Member{URL: u}
	}
	d, err := director.New(director.Config{Policy: policy, Rand: zeroRand{}}, ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// onlyFiles fails the test unless dir holds exactly names.
func onlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %q, want %q", dir, got, names)
	}
}

func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes, sha256 %s; want %d bytes, sha256 %s", path, len(got), sum(got), len(want), sum(want))
	}
}

// mirrorsUsed counts the mirrors that contributed bytes to r.
func mirrorsUsed(r Result) int {
	n := 0
	for _, m := range r.Mirrors {
		if m.Bytes > 0 {
			n++
		}
	}
	return n
}

func bytesFrom(r Result, url string) MirrorStats {
	for _, m := range r.Mirrors {
		if m.URL == url {
			return m
		}
	}
	return MirrorStats{URL: url}
}

func TestThreeMirrors(t *testing.T) {
	data := randomBytes(3<<20+12345, 1)
	var urls []string
	for range 3 {
		urls = append(urls, serve(t, newMirror(data, `"v1"`)))
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "file")
	// Round robin: the spread over mirrors is the policy's, and p2c may
	// rightly keep in-process mirrors this fast to one of them (a chunk
	// ends before the next pick sees it in flight). TestNginxMirrors
	// checks p2c's spread over rate-limited mirrors.
	res, err := Get(t.Context(), newDirector(t, "round-robin", urls...), "/pub/file", dst, Config{ChunkSize: 256 << 10, SHA256: sum(data)})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	onlyFiles(t, dir, "file")
	if res.Size != int64(len(data)) || res.Fetched != res.Size || res.Retries != 0 || res.Validator != `"v1"` || res.WholeFile {
		t.Fatalf("result %+v", res)
	}
	used := mirrorsUsed(res)
	if used < 2 {
		t.Fatalf("only %d mirror used: %+v", used, res.Mirrors)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", fi.Mode())
	}
}

// TestCutMidChunk: the first mirror closes the connection 100 KiB into a
// 256 KiB chunk (the first chunk, and again into a later one on a second
// mirror); the download completes, and the cut chunks are resumed, not
// fetched again: every byte was fetched exactly once.
func TestCutMidChunk(t *testing.T) {
	data := randomBytes(2<<20, 2)
	a, b, c := newMirror(data, `"v1"`), newMirror(data, `"v1"`), newMirror(data, `"v1"`)
	a.cutReq, a.cutAfter = 1, 100<<10
	b.cutReq, b.cutAfter = 2, 50<<10
	urls := []string{serve(t, a), serve(t, b), serve(t, c)}
	dir := t.TempDir()
	dst := filepath.Join(dir, "file")
	var logs []string
	var mu sync.Mutex
	res, err := Get(t.Context(), newDirector(t, "round-robin", urls...), "/file", dst, Config{
		ChunkSize: 256 << 10, Parallel: 3,
		Logf: func(f string, args ...any) { mu.Lock(); logs = append(logs, fmt.Sprintf(f, args...)); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	onlyFiles(t, dir, "file")
	if res.Fetched != int64(len(data)) {
		t.Fatalf("fetched %d bytes for a %d-byte file: a cut chunk was fetched again", res.Fetched, len(data))
	}
	if res.Retries < 1 || bytesFrom(res, urls[0]).Failures != 1 || bytesFrom(res, urls[0]).Bytes < 100<<10 {
		t.Fatalf("result %+v", res)
	}
	if got := a.sent.Load() + b.sent.Load() + c.sent.Load(); got != int64(len(data)) {
		t.Fatalf("mirrors sent %d bytes for a %d-byte file", got, len(data))
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(logs, "\n"), urls[0]+" bytes 0-262143") {
		t.Fatalf("no log line names the cut mirror and range:\n%s", strings.Join(logs, "\n"))
	}
}

// TestWrongVersion: a mirror serving another version of the file (other
// content and ETag) fails every attempt on it and never writes a byte.
func TestWrongVersion(t *testing.T) {
	data := randomBytes(1<<20, 3)
	other := randomBytes(1<<20, 4)
	bad := newMirror(other, `"v2"`)
	urls := []string{serve(t, newMirror(data, `"v1"`)), serve(t, bad), serve(t, newMirror(data, `"v1"`))}
	dir := t.TempDir()
	dst := filepath.Join(dir, "file")
	res, err := Get(t.Context(), newDirector(t, "round-robin", urls...), "/file", dst, Config{ChunkSize: 64 << 10, Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if st := bytesFrom(res, urls[1]); st.Bytes != 0 || st.Failures == 0 || bad.reqs.Load() == 0 {
		t.Fatalf("bad mirror: %+v after %d requests", st, bad.reqs.Load())
	}
	if res.Fetched != int64(len(data)) {
		t.Fatalf("fetched %d", res.Fetched)
	}
}

// TestOnlyWrongVersionLeft: the first mirror serves one chunk and dies; the
// only other one serves a different version. The download fails with an
// error naming the mismatch and the mirror, leaving no file behind.
func TestOnlyWrongVersionLeft(t *testing.T) {
	data := randomBytes(256<<10, 5)
	good := newMirror(data, `"v1"`)
	good.dieAfter = 1
	urls := []string{serve(t, good), serve(t, newMirror(randomBytes(256<<10, 6), `"v2"`))}
	dir := t.TempDir()
	dst := filepath.Join(dir, "file")
	// Quorum 1: asked first, the two would tie (TestQuorumTie).
	_, err := Get(t.Context(), newDirector(t, "round-robin", urls...), "/file", dst, Config{ChunkSize: 64 << 10, Parallel: 1, Quorum: 1})
	if err == nil {
		t.Fatal("download succeeded")
	}
	for _, want := range []string{"different version", `ETag "\"v2\"", want "\"v1\""`, urls[1]} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	onlyFiles(t, dir)
}

// TestNoRangeSupport: a mirror that ignores Range serves the whole file in
// one stream; when that stream is cut, the rest comes by range from the
// others.
func TestNoRangeSupport(t *testing.T) {
	data := randomBytes(1<<20+7, 7)
	t.Run("alone", func(t *testing.T) {
		m := newMirror(data, "")
		m.noRange = true
		dst := filepath.Join(t.TempDir(), "file")
		res, err := Get(t.Context(), newDirector(t, "p2c", serve(t, m)), "/file", dst, Config{ChunkSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		checkFile(t, dst, data)
		if !res.WholeFile || res.Fetched != int64(len(data)) || m.reqs.Load() != 1 || !strings.Contains(res.Validator, "GMT") {
			t.Fatalf("result %+v after %d requests", res, m.reqs.Load())
		}
	})
	t.Run("cut and resumed by range", func(t *testing.T) {
		whole := newMirror(data, "")
		whole.noRange, whole.cutReq, whole.cutAfter = true, 1, 300<<10
		ranged := newMirror(data, "")
		urls := []string{serve(t, whole), serve(t, ranged)}
		dst := filepath.Join(t.TempDir(), "file")
		res, err := Get(t.Context(), newDirector(t, "round-robin", urls...), "/file", dst, Config{ChunkSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		checkFile(t, dst, data)
		if !res.WholeFile || res.Fetched != int64(len(data)) || bytesFrom(res, urls[0]).Bytes != 300<<10 || ranged.sent.Load() != int64(len(data)-300<<10) {
			t.Fatalf("result %+v; ranged mirror sent %d", res, ranged.sent.Load())
		}
	})
}

func TestSHA256Mismatch(t *testing.T) {
	data := randomBytes(200<<10, 8)
	dir := t.TempDir()
	dst := filepath.Join(dir, "file")
	if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Get(t.Context(), newDirector(t, "p2c", serve(t, newMirror(data, `"v1"`))), "/file", dst,
		Config{ChunkSize: 64 << 10, SHA256: strings.Repeat("ab", 32)})
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "got "+sum(data)) {
		t.Fatalf("err = %v", err)
	}
	checkFile(t, dst, []byte("old"))
	onlyFiles(t, dir, "file")
}

// TestCancel: the caller's context ends while a mirror stalls mid-chunk:
// Get returns the context's error and leaves the old file alone.
func TestCancel(t *testing.T) {
	data := randomBytes(512<<10, 9)
	m := newMirror(data, `"v1"`)
	m.stall, m.stallAfter, m.stalled = 3, 1000, make(chan struct{})
	dir := t.TempDir()
	dst := filepath.Join(dir, "file")
	if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-m.stalled
		cancel()
	}()
	_, err := Get(ctx, newDirector(t, "p2c", serve(t, m)), "/file", dst, Config{ChunkSize: 64 << 10, Parallel: 2})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	checkFile(t, dst, []byte("old"))
	onlyFiles(t, dir, "file")
}

func TestStatusAndLimits(t *testing.T) {
	data := randomBytes(100<<10, 10)
	t.Run("404 everywhere", func(t *testing.T) {
		dir := t.TempDir()
		u := serve(t, http.NotFoundHandler())
		_, err := Get(t.Context(), newDirector(t, "p2c", u), "/file", filepath.Join(dir, "f"), Config{})
		if !errors.Is(err, ErrStatus) || !strings.Contains(err.Error(), u+" bytes 0-1048575: unexpected status 404") {
			t.Fatalf("err = %v", err)
		}
		onlyFiles(t, dir)
	})
	t.Run("max size", func(t *testing.T) {
		dir := t.TempDir()
		m := newMirror(data, `"v1"`)
		_, err := Get(t.Context(), newDirector(t, "p2c", serve(t, m)), "/file", filepath.Join(dir, "f"), Config{MaxSize: 1000})
		if !errors.Is(err, ErrTooLarge) || m.reqs.Load() != 1 {
			t.Fatalf("err = %v after %d requests", err, m.reqs.Load())
		}
		onlyFiles(t, dir)
	})
	t.Run("empty file", func(t *testing.T) {
		dir := t.TempDir()
		res, err := Get(t.Context(), newDirector(t, "p2c", serve(t, newMirror(nil, `"e"`))), "/file", filepath.Join(dir, "f"), Config{SHA256: sum(nil)})
		if err != nil || res.Size != 0 {
			t.Fatalf("%+v, %v", res, err)
		}
		checkFile(t, filepath.Join(dir, "f"), nil)
	})
	t.Run("config", func(t *testing.T) {
		for _, c := range []struct {
			cfg  Config
			want string
		}{
			{Config{ChunkSize: -1}, "ChunkSize -1 must be in"},
			{Config{Parallel: 65}, "Parallel 65 must be in 1..64"},
			{Config{MaxSize: -1}, "MaxSize -1"},
			{Config{SHA256: "xyz"}, `SHA256 "xyz" must be 64 hexadecimal digits`},
		} {
			if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
			}
		}
		d := newDirector(t, "p2c", "http://127.0.0.1:9")
		if _, err := Get(t.Context(), d, "file", "x", Config{}); err == nil || !strings.Contains(err.Error(), `path "file" must start with /`) {
			t.Errorf("relative path: %v", err)
		}
	})
}

// TestUnreachableMirror: a mirror that refuses connections is skipped.
func TestUnreachableMirror(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	data := randomBytes(300<<10, 11)
	dst := filepath.Join(t.TempDir(), "f")
	res, err := Get(t.Context(), newDirector(t, "round-robin", dead, serve(t, newMirror(data, `"v1"`))), "/f", dst, Config{ChunkSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if bytesFrom(res, dead).Failures == 0 {
		t.Fatalf("%+v", res)
	}
}

// TestAttemptTimeoutKeepsProgress: a mirror stalls 100 KiB into the first
// chunk; the director's attempt timeout moves the chunk to another mirror,
// which is asked only for the rest.
func TestAttemptTimeoutKeepsProgress(t *testing.T) {
	data := randomBytes(1<<20, 12)
	slow, fast := newMirror(data, `"v1"`), newMirror(data, `"v1"`)
	slow.stall, slow.stallAfter, slow.stalled = 1, 100<<10, make(chan struct{})
	urls := []string{serve(t, slow), serve(t, fast)}
	d, err := director.New(director.Config{Policy: "round-robin", Rand: zeroRand{}, AttemptTimeout: 300 * time.Millisecond},
		[]balance.Member{{URL: urls[0]}, {URL: urls[1]}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	dst := filepath.Join(t.TempDir(), "f")
	res, err := Get(t.Context(), d, "/f", dst, Config{ChunkSize: 256 << 10, Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	// The slow mirror sent 100 KiB of the first chunk, then whole later ones.
	if st := bytesFrom(res, urls[0]); (st.Bytes-100<<10)%(256<<10) != 0 || st.Failures != 1 || res.Fetched != int64(len(data)) {
		t.Fatalf("slow mirror %+v; result %+v", st, res)
	}
}

// TestHedged: with hedging on, two attempts may fetch the same chunk at
// once into the same bytes of the file; the file is still right.
func TestHedged(t *testing.T) {
	data := randomBytes(2<<20, 13)
	urls := []string{serve(t, newMirror(data, `"v1"`)), serve(t, newMirror(data, `"v1"`)), serve(t, newMirror(data, `"v1"`))}
	ms := []balance.Member{{URL: urls[0]}, {URL: urls[1]}, {URL: urls[2]}}
	d, err := director.New(director.Config{Hedge: director.HedgeConfig{Enabled: true, Quantile: 0.01, MinSamples: 1},
		Budget: balance.BudgetConfig{Ratio: 10}}, ms)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	dst := filepath.Join(t.TempDir(), "f")
	res, err := Get(t.Context(), d, "/f", dst, Config{ChunkSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if res.Fetched < res.Size || res.Retries != 0 {
		t.Fatalf("%+v", res)
	}
	t.Logf("fetched %d for %d bytes: hedges fetched some twice", res.Fetched, res.Size)
}
