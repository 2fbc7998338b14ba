// Package download is the Smart Clients paper's fault-transparent mirror
// downloader (section 4.2), done with HTTP byte ranges: one file is fetched
// from a group of mirrors in chunks, each chunk a director request, so the
// director's policy picks the mirror for every chunk and re-applies a
// failed chunk on another. The request-specific cleanup of the paper is
// what makes this cheap: an attempt that fails mid-chunk keeps the bytes it
// wrote, and the next mirror is asked only for the remainder.
//
// Which version of the file is the right one is decided by the mirrors'
// agreement: before the first chunk, up to Config.Quorum mirrors are asked
// for the file's size and validator, and the version most of them report
// is the one the first reply must match. Every reply is then
// checked against the first one: same size, same validator (ETag, else
// Last-Modified), exactly the byte range asked for. A mirror serving
// another version of the file is stale: it fails its attempt and never
// contributes a byte. The file is written into a temporary file beside the
// destination, fsynced, optionally checked against a SHA-256 digest and
// only then renamed into place, so no partial file ever appears under the
// destination's name.
package download

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

// Sentinel errors; the errors Get returns wrap them (through the
// director's *director.Error for failures of every mirror).
var (
	// ErrVersion: a mirror serves a different version of the file (its
	// validator or size differs from the agreed version or the first
	// reply's).
	ErrVersion = errors.New("mirror serves a different version of the file")
	// ErrDisagree: the mirrors asked report different versions in equal
	// numbers and no date tells which is newer. Ask more mirrors
	// (Config.Quorum), or use Quorum 1 and Config.SHA256.
	ErrDisagree = errors.New("mirrors disagree on the file's version")
	// ErrShort: a reply's body ended before the range asked for.
	ErrShort = errors.New("reply ended early")
	// ErrBadRange: a reply's Content-Range is missing, malformed or not the
	// range asked for.
	ErrBadRange = errors.New("reply has the wrong byte range")
	// ErrNoRange: a mirror answered a range request with the whole file
	// after the download had started elsewhere.
	ErrNoRange = errors.New("mirror does not serve byte ranges")
	// ErrStatus: a mirror answered with a status that is not a success.
	ErrStatus = errors.New("unexpected status")
	// ErrChecksum: the whole file's SHA-256 differs from Config.SHA256.
	ErrChecksum = errors.New("SHA-256 mismatch")
	// ErrTooLarge: the file is larger than Config.MaxSize.
	ErrTooLarge = errors.New("file larger than MaxSize")
)

// MirrorError is a failed attempt on one mirror: which mirror, which bytes
// and why (wrapping one of the sentinels above or a network error).
type MirrorError struct {
	Mirror   string // the member's URL
	From, To int64  // the bytes asked for, [From, To); To is -1 if open
	Err      error
}

func (e *MirrorError) Error() string {
	to := "end"
	if e.To >= 0 {
		to = fmt.Sprint(e.To - 1)
	}
	return fmt.Sprintf("%s bytes %d-%s: %v", e.Mirror, e.From, to, e.Err)
}

func (e *MirrorError) Unwrap() error { return e.Err }

// MirrorStats is what one mirror contributed.
type MirrorStats struct {
	URL      string
	Bytes    int64 // body bytes received from it and written to the file
	Failures int   // attempts that failed on it
}

// Result describes a finished (or failed) download.
type Result struct {
	// Size is the file's size; -1 if the download failed before a mirror
	// told it.
	Size int64
	// Fetched is the body bytes received from every mirror. It exceeds
	// Size only by what hedged attempts fetched twice: a failed attempt's
	// bytes are kept.
	Fetched int64
	// Retries counts failed attempts (each re-applied elsewhere); hedges
	// that lost a race are not failures.
	Retries int
	// Mirrors lists, by URL, every mirror that was tried.
	Mirrors []MirrorStats
	// Validator is the ETag (or, without one, Last-Modified) every reply
	// was held to; empty if the mirrors sent neither.
	Validator string
	// Stale lists, by URL and sorted, the mirrors found serving a version
	// other than the one downloaded, when asked or on an attempt: they
	// contributed no bytes.
	Stale []string
	// WholeFile is set when the first mirror ignored the range request and
	// sent the whole file, which was then streamed from it (and, after a
	// failure, from other mirrors by range).
	WholeFile bool
	// Elapsed is the time from the start to the rename (or the failure).
	Elapsed time.Duration
}

// Get downloads path (with its query, if any, e.g. "/pub/file.iso") from
// the members of d, which are the mirrors' base URLs, into the file dst.
// dst is replaced only on success; on failure Get removes its temporary
// file and returns an error naming the cause and, for failures of the
// mirrors, every attempt. The Result is filled in either way.
//
// The file's size and version are those most of the Config.Quorum mirrors
// first asked report (see getter.agree); the first reply must match them and
// fixes them for the rest. A mirror whose version differs is treated as a
// failure for that chunk and the director tries another. If only stale
// mirrors answer that question, their version is the one downloaded: set
// Config.SHA256 to be sure of the content.
func Get(ctx context.Context, d *director.Director, path, dst string, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	if !strings.HasPrefix(path, "/") {
		return Result{}, fmt.Errorf("download: path %q must start with /", path)
	}
	if dst == "" {
		return Result{}, errors.New("download: no destination file")
	}
	cfg = cfg.withDefaults()
	start := cfg.Clock.Now()
	g := &getter{d: d, cfg: cfg, path: path, metaReady: make(chan struct{}), mirrors: map[string]*MirrorStats{}, stale: map[string]bool{}}
	f, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".part-*")
	if err != nil {
		return Result{}, fmt.Errorf("download: temporary file for %s: %w", dst, err)
	}
	g.f = f
	err = g.run(ctx)
	if err == nil {
		err = g.finish(dst)
	}
	res := g.result()
	res.Elapsed = cfg.Clock.Now().Sub(start)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return res, err
	}
	return res, nil
}

// getter is one download in progress.
type getter struct {
	d    *director.Director
	cfg  Config
	path string
	f    *os.File

	// want is the version the mirrors agreed on, which the first reply
	// must match; nil if none was decided (Quorum 1, or no answer). Set
	// before the chunks start.
	want *meta

	metaOnce  sync.Once
	metaReady chan struct{} // closed once meta is set
	meta      meta

	next atomic.Int64 // next chunk to hand out; chunk 0 is the first span
	// size is the file's size once known: meta.size, or where that was -1,
	// what the whole-file stream turned out to hold.
	size atomic.Int64

	mu      sync.Mutex
	mirrors map[string]*MirrorStats
	fetched int64
	retries int
	stale   map[string]bool // mirrors found serving another version
}

// meta is what the first reply fixed. Set once, before metaReady closes.
type meta struct {
	size      int64  // -1: unknown until the end of a whole-file stream
	etag      string // validators, as the first reply sent them
	modified  string
	mtime     time.Time // modified as a time (zero if absent or unparsable), or an FTP mirror's MDTM
	whole     bool      // the first mirror sent the whole file
	chunks    int64     // number of chunks, chunk 0 included; 1 when whole
	noVersion bool      // neither ETag nor Last-Modified: only the size is checked
}

func (m *meta) validator() string {
	if m.etag != "" {
		return m.etag
	}
	return m.modified
}

// ifRange is the If-Range value to send, if any: a strong ETag or a
// Last-Modified date (RFC 9110 §13.1.5 allows no weak ETag).
func (m *meta) ifRange() string {
	switch {
	case m.etag != "" && !strings.HasPrefix(m.etag, "W/"):
		return m.etag
	case m.etag == "" && m.modified != "":
		return m.modified
	}
	return ""
}

// httpMeta is what an HTTP reply says about the file.
func httpMeta(size int64, h http.Header) meta {
	m := meta{size: size, etag: h.Get("Etag"), modified: h.Get("Last-Modified")}
	m.mtime, _ = http.ParseTime(m.modified)
	return m
}

// sameVersion compares a reply's validators with the first reply's: the
// ETag if the first reply had one, else Last-Modified (as times, so that
// the date an FTP mirror's MDTM gave matches an HTTP mirror's).
func (m *meta) sameVersion(h http.Header) error {
	return m.sameValidators(h.Get("Etag"), h.Get("Last-Modified"))
}

func (m *meta) sameValidators(etag, mod string) error {
	if m.etag != "" {
		if etag != m.etag {
			return fmt.Errorf("%w: ETag %s, want %s", ErrVersion, quote(etag), quote(m.etag))
		}
		return nil
	}
	if m.modified == "" || mod == m.modified {
		return nil
	}
	if t, err := http.ParseTime(mod); err == nil && !m.mtime.IsZero() && t.Equal(m.mtime) {
		return nil
	}
	return fmt.Errorf("%w: Last-Modified %s, want %s", ErrVersion, quote(mod), quote(m.modified))
}

func (g *getter) run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	if err := g.agree(ctx); err != nil {
		return err
	}
	fail := func(err error) {
		once.Do(func() { first = err })
		cancel(err)
	}
	worker := func(s *span) {
		defer wg.Done()
		for {
			if s != nil {
				if err := g.fetch(ctx, s); err != nil {
					fail(err)
					return
				}
			}
			i := g.next.Add(1)
			if i >= g.meta.chunks || ctx.Err() != nil {
				return
			}
			s = g.chunk(i)
		}
	}
	// Chunk 0 goes first, alone: its reply tells the size, the version and
	// whether the mirrors serve ranges. The other workers start as soon as
	// its header has arrived, while its body still streams.
	wg.Add(1)
	firstDone := make(chan struct{})
	go func() {
		defer close(firstDone)
		worker(&span{g: g, from: 0, to: g.cfg.ChunkSize})
	}()
	select {
	case <-g.metaReady:
		for range g.cfg.Parallel - 1 {
			wg.Add(1)
			go worker(nil)
		}
	case <-firstDone:
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("download %s: %w", g.path, context.Cause(ctx))
	}
	return nil
}

// chunk returns span i of the plan (i >= 1).
func (g *getter) chunk(i int64) *span {
	from := i * g.cfg.ChunkSize
	return &span{g: g, from: from, to: min(from+g.cfg.ChunkSize, g.size.Load())}
}

// setMeta fixes the file's size and version from the first good reply. It
// returns false if another attempt got there first (a hedge).
func (g *getter) setMeta(m meta) bool {
	set := false
	g.metaOnce.Do(func() {
		switch {
		case m.whole || m.size <= g.cfg.ChunkSize:
			m.chunks = 1
		default:
			m.chunks = (m.size + g.cfg.ChunkSize - 1) / g.cfg.ChunkSize
		}
		m.noVersion = m.etag == "" && m.modified == ""
		g.meta = m
		g.size.Store(m.size)
		close(g.metaReady)
		set = true
	})
	if set && m.noVersion {
		g.cfg.Logf("download %s: the mirrors send neither ETag nor Last-Modified: only the size tells versions apart", g.path)
	}
	return set
}

// metaKnown reports whether the first reply has been seen.
func (g *getter) metaKnown() bool {
	select {
	case <-g.metaReady:
		return true
	default:
		return false
	}
}

// fetch gets span s through the director. Apply re-applies a failed attempt
// on other mirrors up to the director's MaxAttempts; as long as the
// attempts make progress, fetch applies the rest again, so a large file
// does not fail on a few mirror failures spread over many chunks.
func (g *getter) fetch(ctx context.Context, s *span) error {
	for {
		before := s.position()
		err := g.d.Do(ctx, s)
		if err == nil {
			return nil
		}
		// Permanent failures (the disk, MaxSize) end Apply with
		// ErrNotRetryable: every other failure of a range GET is retried.
		if ctx.Err() != nil || s.position() == before || errors.Is(err, director.ErrNotRetryable) {
			return fmt.Errorf("download %s: bytes %d-%s: %w", g.path, s.position(), s.last(), err)
		}
		g.cfg.Logf("download %s: %v; resuming at byte %d", g.path, err, s.position())
	}
}

// finish checks the file, syncs it and moves it to dst.
func (g *getter) finish(dst string) error {
	f := g.f
	if g.cfg.SHA256 != "" {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, g.size.Load())); err != nil {
			return fmt.Errorf("download: reading back %s: %w", f.Name(), err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, g.cfg.SHA256) {
			return fmt.Errorf("download %s: %w: got %s, want %s", g.path, ErrChecksum, got, strings.ToLower(g.cfg.SHA256))
		}
	}
	err := f.Chmod(0o644)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		return fmt.Errorf("download: writing %s: %w", dst, err)
	}
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		d.Sync() // the rename survives a crash; a failure here loses nothing written
		d.Close()
	}
	return nil
}

func (g *getter) result() Result {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := Result{Fetched: g.fetched, Retries: g.retries, Size: -1}
	if g.metaKnown() {
		r.Size = g.size.Load()
		r.Validator = g.meta.validator()
		r.WholeFile = g.meta.whole
	}
	for _, m := range g.mirrors {
		r.Mirrors = append(r.Mirrors, *m)
	}
	for u := range g.stale {
		r.Stale = append(r.Stale, u)
	}
	sort.Strings(r.Stale)
	sort.Slice(r.Mirrors, func(i, j int) bool { return r.Mirrors[i].URL < r.Mirrors[j].URL })
	return r
}

func (g *getter) stats(mirror string) *MirrorStats {
	m := g.mirrors[mirror]
	if m == nil {
		m = &MirrorStats{URL: mirror}
		g.mirrors[mirror] = m
	}
	return m
}

func (g *getter) count(mirror string, n int64) {
	g.mu.Lock()
	g.stats(mirror).Bytes += n
	g.fetched += n
	g.mu.Unlock()
}

// span is the director request for bytes [from, to) of the file: a chunk,
// or for a mirror without range support the whole file. It remembers how
// far it got, so an attempt after a failure asks only for the rest.
type span struct {
	g    *getter
	from int64

	mu  sync.Mutex
	to  int64 // exclusive; -1 while the size is unknown (whole-file stream)
	got int64 // bytes from `from` on that are on disk
}

func (s *span) position() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.from + s.got
}

func (s *span) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.to < 0 {
		return "end"
	}
	return fmt.Sprint(s.to - 1)
}

func (s *span) bounds() (from, to int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.from + s.got, s.to
}

// advance records that bytes up to end are on disk. Hedged attempts may
// write the same bytes; coverage is the furthest contiguous end.
func (s *span) advance(end int64) {
	s.mu.Lock()
	s.got = max(s.got, end-s.from)
	s.mu.Unlock()
}

func (s *span) setEnd(to int64) {
	s.mu.Lock()
	s.to = to
	s.mu.Unlock()
}

// Idempotent: a range GET may be re-applied anywhere.
func (s *span) Idempotent() bool { return true }

// Cleanup keeps what the failed attempt wrote (that is the point) and
// counts the failure against its mirror. A hedge that lost, or an attempt
// the caller cancelled, is no failure of its mirror.
func (s *span) Cleanup(a *director.Attempt, err error) {
	g := s.g
	if errors.Is(err, director.ErrHedgeLost) || errors.Is(err, context.Canceled) {
		return
	}
	g.mu.Lock()
	g.stats(a.Member.URL).Failures++
	g.retries++
	if errors.Is(err, ErrVersion) {
		g.stale[a.Member.URL] = true
	}
	g.mu.Unlock()
	g.cfg.Logf("download %s: %v (attempt %d); %d bytes of the span on disk", g.path, err, a.Number, s.position()-s.from)
}

// Action fetches what is left of the span from a.Member, over HTTP(S) or
// FTP as its URL says.
func (s *span) Action(ctx context.Context, a *director.Attempt) error {
	from, to := s.bounds()
	if to >= 0 && from >= to {
		return nil // a hedge finished it
	}
	if strings.HasPrefix(a.Member.URL, "ftp://") {
		return s.ftpAction(ctx, a.Member.URL, from, to)
	}
	return s.httpAction(ctx, a, from, to)
}

// httpAction is Action on an HTTP(S) mirror. to may change (and fail
// sees the change) once the reply tells the size.
func (s *span) httpAction(ctx context.Context, a *director.Attempt, from, to int64) error {
	g := s.g
	mirror := a.Member.URL
	fail := func(err error, class director.Class) error {
		return director.WithClass(&MirrorError{Mirror: mirror, From: from, To: to, Err: err}, class)
	}
	u, err := joinURL(mirror, g.path)
	if err != nil {
		return fail(err, director.NotReached)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(err, director.NotReached)
	}
	req.Header.Set("Accept-Encoding", "identity")
	known := g.metaKnown()
	req.Header.Set("Range", rangeHeader(from, to))
	if known {
		if v := g.meta.ifRange(); v != "" {
			req.Header.Set("If-Range", v)
		}
	}
	resp, err := g.cfg.Client.Do(req)
	if err != nil {
		return fail(err, director.Classify(err))
	}
	defer resp.Body.Close()
	reportLoad(a, resp.Header)
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fail(fmt.Errorf("%w: Content-Encoding %s", ErrBadRange, quote(ce)), director.MaybeProcessed)
	}

	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr, err := ParseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return fail(fmt.Errorf("%w: %v", ErrBadRange, err), director.MaybeProcessed)
		}
		if !known {
			if cr.Total < 0 || cr.Unsatisfied() {
				return fail(fmt.Errorf("%w: Content-Range %q tells no size", ErrBadRange, cr.String()), director.MaybeProcessed)
			}
			m := httpMeta(cr.Total, resp.Header)
			if err := g.wanted(m, false); err != nil {
				return fail(err, director.MaybeProcessed)
			}
			if err := g.checkSize(cr.Total); err != nil {
				return fail(err, director.Permanent)
			}
			g.setMeta(m)
			to = min(to, cr.Total)
			s.setEnd(to)
		}
		if err := g.meta.sameVersion(resp.Header); err != nil {
			return fail(err, director.MaybeProcessed)
		}
		if to < 0 && cr.Total >= 0 && cr.First == from {
			// Resuming a whole-file stream of unknown size: now it is known.
			if err := g.checkSize(cr.Total); err != nil {
				return fail(err, director.Permanent)
			}
			to = cr.Total
			g.size.Store(to)
			s.setEnd(to)
		}
		if size := g.size.Load(); cr.First != from || cr.Last != to-1 || cr.Total != size {
			return fail(fmt.Errorf("%w: Content-Range %q, asked for %s of %d bytes", ErrBadRange, cr, rangeHeader(from, to), size), director.MaybeProcessed)
		}
	case http.StatusOK:
		if known {
			if err := g.meta.sameVersion(resp.Header); err != nil {
				return fail(err, director.MaybeProcessed)
			}
			return fail(ErrNoRange, director.MaybeProcessed)
		}
		size := resp.ContentLength // -1 if unknown
		m := httpMeta(size, resp.Header)
		if err := g.wanted(m, false); err != nil {
			return fail(err, director.MaybeProcessed)
		}
		if size < 0 && g.want != nil {
			// The agreed size: a stream that ends before it is short.
			size = g.want.size
			m.size = size
		}
		if err := g.checkSize(size); err != nil {
			return fail(err, director.Permanent)
		}
		m.whole = true
		g.setMeta(m)
		if err := g.meta.sameVersion(resp.Header); err != nil {
			return fail(err, director.MaybeProcessed) // a hedge set it first
		}
		to = size
		s.setEnd(to)
	case http.StatusRequestedRangeNotSatisfiable:
		// The one range request that fails on a good mirror: the first
		// chunk of an empty file.
		if cr, err := ParseContentRange(resp.Header.Get("Content-Range")); !known && err == nil && cr.Unsatisfied() && cr.Total == 0 {
			m := httpMeta(0, resp.Header)
			if err := g.wanted(m, false); err != nil {
				return fail(err, director.MaybeProcessed)
			}
			g.setMeta(m)
			s.setEnd(0)
			return nil
		}
		return fail(fmt.Errorf("%w %d for %s", ErrStatus, resp.StatusCode, rangeHeader(from, to)), director.MaybeProcessed)
	default:
		return fail(fmt.Errorf("%w %d", ErrStatus, resp.StatusCode), director.MaybeProcessed)
	}
	return s.copy(mirror, resp.Body, from, to, fail)
}

// copy writes the reply body at from.. in the file until to (or EOF when
// to < 0), recording progress after every write so a failure keeps it.
func (s *span) copy(mirror string, body io.Reader, from, to int64, fail func(error, director.Class) error) error {
	g := s.g
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	pos := from
	for to < 0 || pos < to {
		b := buf
		if to >= 0 && to-pos < int64(len(b)) {
			b = b[:to-pos]
		}
		n, rerr := body.Read(b)
		if n > 0 {
			if g.cfg.MaxSize > 0 && pos+int64(n) > g.cfg.MaxSize {
				return fail(fmt.Errorf("%w (%d bytes)", ErrTooLarge, g.cfg.MaxSize), director.Permanent)
			}
			if _, err := g.f.WriteAt(b[:n], pos); err != nil {
				// The disk, not the mirror, failed: stop.
				return fail(fmt.Errorf("writing %s: %w", g.f.Name(), err), director.Permanent)
			}
			pos += int64(n)
			s.advance(pos)
			g.count(mirror, int64(n))
			if g.cfg.Progress != nil {
				g.cfg.Progress(mirror, n)
			}
		}
		if rerr == io.EOF {
			if to < 0 {
				// The end of a whole-file stream of unknown size.
				g.size.Store(pos)
				s.setEnd(pos)
				return nil
			}
			if pos < to {
				return fail(fmt.Errorf("%w: %d of %d bytes", ErrShort, pos-from, to-from), director.MaybeProcessed)
			}
		} else if rerr != nil {
			return fail(fmt.Errorf("after %d of %d bytes: %w", pos-from, to-from, rerr), director.MaybeProcessed)
		}
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

func (g *getter) checkSize(size int64) error {
	if g.cfg.MaxSize > 0 && size > g.cfg.MaxSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, g.cfg.MaxSize)
	}
	return nil
}

// reportLoad hands the director a load record piggy-backed on the reply by
// a mirror running smarthttp.Middleware.
func reportLoad(a *director.Attempt, h http.Header) {
	if v := h[wire.LoadHeader]; len(v) == 1 {
		if l, err := wire.ParseLoad(v[0]); err == nil {
			a.ReportLoad(l)
		} else {
			a.BadReport(err)
		}
	}
}

// joinURL appends path (which may carry a query) to a member's base URL,
// which may have a path prefix.
func joinURL(base, path string) (string, error) {
	u, err := url.Parse(strings.TrimRight(base, "/") + path)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("mirror %s: want http:// or https:// with a host", quote(base))
	}
	return u.String(), nil
}
