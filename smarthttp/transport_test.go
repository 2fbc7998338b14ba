package smarthttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

func TestHeaderNamesAreCanonical(t *testing.T) {
	// piggyback and Middleware index header maps directly.
	for _, h := range []string{wire.LoadHeader, wire.MembersHeader, AffinityHeader, idempotencyKey, xIdempotencyKey} {
		if c := http.CanonicalHeaderKey(h); c != h {
			t.Errorf("%q is not canonical (%q)", h, c)
		}
	}
}

// seen is what a member saw of a request.
type seen struct {
	Path, RawPath, Query, Host, Body, Header string
}

func recorder(ch chan<- seen) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- seen{Path: r.URL.Path, RawPath: r.URL.EscapedPath(), Query: r.URL.RawQuery, Host: r.Host,
			Body: string(b), Header: r.Header.Get("X-Test")}
	}
}

func TestRewrite(t *testing.T) {
	ch := make(chan seen, 1)
	srv := newServer(t, recorder(ch))
	host := srv.Listener.Addr().String()
	tests := []struct {
		member, req string
		path, query string
	}{
		{"http://" + host, "http://svc/a/b?x=1", "/a/b", "x=1"},
		{"http://" + host + "/", "http://svc/a", "/a", ""},
		{"http://" + host + "/prefix", "http://svc/a", "/prefix/a", ""},
		{"http://" + host + "/prefix/", "http://svc/a?y=2&z=3", "/prefix/a", "y=2&z=3"},
		{"http://" + host + "/p?m=1", "http://svc/a?x=1", "/p/a", "m=1&x=1"},
		{"http://" + host + "/p", "http://svc/a%2Fb", "/p/a%2Fb", ""},
		{"http://" + host + "/p", "http://svc", "/p/", ""}, // as httputil joins
	}
	for _, tc := range tests {
		t.Run(tc.member+" "+tc.req, func(t *testing.T) {
			d := newDirector(t, director.Config{}, tc.member)
			tr := newTransport(t, d)
			body := "hello body"
			req, err := http.NewRequestWithContext(testCtx(t), "POST", tc.req, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "caller.example"
			req.Header.Set("X-Test", "kept")
			before := snapshot(req)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got := <-ch
			want := seen{Path: got.Path, RawPath: tc.path, Query: tc.query, Host: host, Body: body, Header: "kept"}
			if got != want {
				t.Errorf("member saw %+v, want %+v", got, want)
			}
			if after := snapshot(req); !reflect.DeepEqual(before, after) {
				t.Errorf("caller's request changed:\nbefore %+v\nafter  %+v", before, after)
			}
			if resp.Request.URL.Host != host {
				t.Errorf("resp.Request.URL = %v, want the member's", resp.Request.URL)
			}
		})
	}
}

// reqSnapshot is the observable state of a request.
type reqSnapshot struct {
	Method, URL, Host string
	URLPtr            *url.URL
	Header            http.Header
	Body              io.ReadCloser
	ContentLength     int64
	Ctx               context.Context
}

func snapshot(r *http.Request) reqSnapshot {
	u := *r.URL
	return reqSnapshot{Method: r.Method, URL: u.String(), URLPtr: r.URL, Host: r.Host, Header: r.Header.Clone(),
		Body: r.Body, ContentLength: r.ContentLength, Ctx: r.Context()}
}

func TestInvalidMember(t *testing.T) {
	good := newServer(t, status(200, "ok"))
	c, d := orderedClient(t, director.Config{}, "ftp://nope", good.URL)
	resp, err := c.Get("http://svc/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if st := d.Stats(); st.Retries != 1 {
		t.Errorf("retries = %d, want 1", st.Retries)
	}
}

// hashHandler answers the SHA-256 of the request body.
func hashHandler(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	io.Copy(h, r.Body)
	fmt.Fprint(w, hex.EncodeToString(h.Sum(nil)))
}

// dropper reads part of the request body, then drops the connection.
func dropper(hits *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.ReadFull(r.Body, make([]byte, 1000))
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		conn.Close()
	}
}

func TestRetryRewindsBody(t *testing.T) {
	var drops, echoes atomic.Int64
	drop := newServer(t, dropper(&drops))
	echo := newServer(t, (&counter{}).wrap(func(w http.ResponseWriter, r *http.Request) {
		echoes.Add(1)
		hashHandler(w, r)
	}))
	c, d := orderedClient(t, director.Config{}, drop.URL, echo.URL)
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	sum := sha256.Sum256(body)

	req, _ := http.NewRequestWithContext(testCtx(t), "POST", "http://svc/upload", bytes.NewReader(body))
	req.Header.Set("Idempotency-Key", "k1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != hex.EncodeToString(sum[:]) {
		t.Errorf("echo member got a different body (hash %s)", got)
	}
	if drops.Load() != 1 || echoes.Load() != 1 || d.Stats().Retries != 1 {
		t.Errorf("drops %d echoes %d retries %d, want 1 1 1", drops.Load(), echoes.Load(), d.Stats().Retries)
	}

	// Without the key, a POST the member may have acted on is not re-sent.
	req, _ = http.NewRequestWithContext(testCtx(t), "POST", "http://svc/upload", bytes.NewReader(body))
	resp, err = c.Do(req)
	var de *director.Error
	if err == nil || !errors.As(err, &de) || !errors.Is(err, director.ErrNotRetryable) || len(de.Attempts) != 1 {
		if resp != nil {
			resp.Body.Close()
		}
		t.Fatalf("POST without key: err = %v, want ErrNotRetryable after 1 attempt", err)
	}
	if echoes.Load() != 1 {
		t.Errorf("POST without key reached the second member")
	}
}

func TestFailoverRefused(t *testing.T) {
	a := newServer(t, status(200, "a"))
	b := newServer(t, status(200, "b"))
	// Round robin sends the dead member its share until it is ejected (p2c
	// would learn to avoid it before a test could see a retry).
	d := newDirector(t, director.Config{Policy: "round-robin"}, closedURL(t), a.URL, b.URL)
	c := &http.Client{Transport: newTransport(t, d)}
	for i := range 300 {
		resp, err := c.Get("http://svc/x")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	st := d.Stats()
	if st.Failed != 0 || st.Retries == 0 {
		t.Errorf("failed %d retries %d; want 0 and > 0", st.Failed, st.Retries)
	}
}

func TestRetryAfterServerError(t *testing.T) {
	var bad, good counter
	b := newServer(t, bad.wrap(status(500, "boom")))
	g := newServer(t, good.wrap(status(200, "fine")))
	tests := []struct {
		method, key string
		wantStatus  int
		wantBody    string
		wantGood    int64
	}{
		{"GET", "", 200, "fine", 1},
		{"PUT", "", 200, "fine", 1},
		{"DELETE", "", 200, "fine", 1},
		{"POST", "k", 200, "fine", 1},
		{"POST", "", 500, "boom", 0},
		{"PATCH", "", 500, "boom", 0},
	}
	for _, tc := range tests {
		t.Run(tc.method+tc.key, func(t *testing.T) {
			bad.n.Store(0)
			good.n.Store(0)
			c, d := orderedClient(t, director.Config{}, b.URL, g.URL)
			req, _ := http.NewRequestWithContext(testCtx(t), tc.method, "http://svc/", strings.NewReader("x"))
			if tc.key != "" {
				req.Header.Set("X-Idempotency-Key", tc.key)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != tc.wantStatus || string(got) != tc.wantBody {
				t.Errorf("got %d %q (%v), want %d %q", resp.StatusCode, got, err, tc.wantStatus, tc.wantBody)
			}
			if bad.n.Load() != 1 || good.n.Load() != tc.wantGood {
				t.Errorf("bad member saw %d, good %d; want 1, %d", bad.n.Load(), good.n.Load(), tc.wantGood)
			}
			if tc.wantStatus != 200 && d.Stats().Failed != 1 {
				t.Errorf("director counted %d failures, want 1", d.Stats().Failed)
			}
		})
	}
}

func TestAllDown(t *testing.T) {
	urls := []string{closedURL(t), closedURL(t), closedURL(t)}
	d := newDirector(t, director.Config{}, urls...)
	tr := newTransport(t, d)
	req, _ := http.NewRequestWithContext(testCtx(t), "GET", "http://svc/", nil)
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		t.Fatalf("got a response: %v", resp.Status)
	}
	var de *director.Error
	if !errors.Is(err, director.ErrExhausted) || !errors.As(err, &de) {
		t.Fatalf("err = %v, want a *director.Error wrapping ErrExhausted", err)
	}
	tried := map[string]bool{}
	for _, a := range de.Attempts {
		tried[a.Member] = true
		if a.Class != director.NotReached {
			t.Errorf("attempt %v: class %v, want not-reached", a, a.Class)
		}
	}
	if len(de.Attempts) != 3 || len(tried) != 3 {
		t.Errorf("attempts %v, want one on each member", de.Attempts)
	}

	// Through an http.Client the error is wrapped in *url.Error.
	_, err = (&http.Client{Transport: tr}).Get("http://svc/")
	if !errors.Is(err, director.ErrExhausted) || !errors.As(err, &de) {
		t.Errorf("client err = %v", err)
	}
}

func TestLastReplyReturned(t *testing.T) {
	// Bodies larger than what the connection buffers, so that reading one
	// fails if the attempt's context ended with the attempt.
	pad := strings.Repeat(".", 4<<20)
	a := newServer(t, status(502, "from a"+pad))
	b := newServer(t, status(500, "from b"+pad))
	dead := closedURL(t)
	tests := []struct {
		name    string
		members []string
		want    string
	}{
		{"both fail", []string{a.URL, b.URL}, "from b" + pad},
		{"last without reply", []string{a.URL, dead}, "from a" + pad},
	}
	for _, tc := range tests {
		for _, timeout := range []time.Duration{0, time.Minute} {
			t.Run(fmt.Sprint(tc.name, " timeout=", timeout), func(t *testing.T) {
				lastReplyReturned(t, director.Config{MaxAttempts: 2, AttemptTimeout: timeout}, tc.members, tc.want)
			})
		}
	}
}

// lastReplyReturned checks that a request failing on every member returns
// the last reply. With an attempt timeout, requests run under a context
// linked to the attempt's, which must be detached for this to work.
func lastReplyReturned(t *testing.T, cfg director.Config, members []string, want string) {
	c, d := orderedClient(t, cfg, members...)
	resp, err := c.Get("http://svc/")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(got) != want {
		t.Errorf("body of %d bytes (%v), want %d bytes", len(got), err, len(want))
	}
	if st := d.Stats(); st.Failed != 1 || st.Retries != 1 {
		t.Errorf("failed %d retries %d, want 1 1", st.Failed, st.Retries)
	}
}

func TestPiggybackLoad(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	m := &Middleware{Capacity: 8, Clock: func() time.Time { return at }}
	srv := newServer(t, m.Wrap(status(200, "ok")))
	d := newDirector(t, director.Config{}, srv.URL)
	c := &http.Client{Transport: newTransport(t, d)}
	resp, err := c.Get("http://svc/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	want := wire.Load{TimeMillis: at.UnixMilli(), InFlight: 1, Capacity: 8, Util: 0.125}
	if got := d.Stats().Members[0].LastLoad; got != want {
		t.Errorf("LastLoad = %+v, want %+v", got, want)
	}
	if resp.Header.Get(wire.LoadHeader) == "" {
		t.Errorf("load header not passed on to the caller")
	}
}

func TestBadReports(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		bad    uint64
	}{
		{"malformed load", http.Header{wire.LoadHeader: {"garbage"}}, 1},
		{"wrong version", http.Header{wire.LoadHeader: {"v=9;t=1"}}, 1},
		{"repeated load", http.Header{wire.LoadHeader: {"v=1;t=1;q=0;u=0", "v=1;t=1;q=0;u=0"}}, 1},
		{"malformed members", http.Header{wire.MembersHeader: {"v=1;m=nope"}}, 1},
		{"both bad", http.Header{wire.LoadHeader: {"v=1"}, wire.MembersHeader: {"x"}}, 2},
		{"good", http.Header{wire.LoadHeader: {"v=1;t=1;q=0;u=0"}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header()[k] = v
				}
				fmt.Fprint(w, "ok")
			}))
			d := newDirector(t, director.Config{}, srv.URL)
			c := &http.Client{Transport: newTransport(t, d)}
			resp, err := c.Get("http://svc/")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(got) != "ok" {
				t.Errorf("got %d %q", resp.StatusCode, got)
			}
			if st := d.Stats(); st.BadReports != tc.bad || st.Failed != 0 {
				t.Errorf("BadReports %d Failed %d, want %d 0", st.BadReports, st.Failed, tc.bad)
			}
		})
	}
}

func TestLearnMembers(t *testing.T) {
	other := newServer(t, status(200, "other"))
	var selfURL string
	m := &Middleware{Members: func() (wire.Members, bool) {
		return wire.Members{Epoch: 5, Members: []wire.Member{{URL: selfURL}, {URL: other.URL, Weight: 2}}}, true
	}}
	self := newServer(t, m.Wrap(status(200, "self")))
	selfURL = self.URL
	d := newDirector(t, director.Config{LearnMembers: true}, self.URL)
	c := &http.Client{Transport: newTransport(t, d)}
	resp, err := c.Get("http://svc/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st := d.Stats()
	if st.Epoch != 5 || st.LearnedMembers != 1 || len(st.Members) != 2 {
		t.Errorf("epoch %d learned %d members %v", st.Epoch, st.LearnedMembers, st.Members)
	}
	if l := st.Members[0].LastLoad; l.Epoch != 5 {
		t.Errorf("load record epoch %d, want 5", l.Epoch)
	}
}

func TestDraining503(t *testing.T) {
	var good counter
	drain := &Middleware{Draining: func() bool { return true }}
	draining := newServer(t, drain.Wrap(status(503, "draining")))
	busy := newServer(t, status(503, "busy"))
	g := newServer(t, good.wrap(status(200, "fine")))

	// A POST without a key: only a not-reached failure may be re-sent.
	post := func(c *http.Client) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(testCtx(t), "POST", "http://svc/", strings.NewReader("x"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	c, d := orderedClient(t, director.Config{}, draining.URL, g.URL)
	if code, body := post(c); code != 200 || body != "fine" || good.n.Load() != 1 {
		t.Errorf("draining member: got %d %q, good member saw %d", code, body, good.n.Load())
	}
	if st := d.Stats(); st.Members[0].State.String() != "draining" {
		t.Errorf("director did not learn the member is draining: %v", st.Members[0].State)
	}

	c, _ = orderedClient(t, director.Config{}, busy.URL, g.URL)
	if code, body := post(c); code != 503 || body != "busy" || good.n.Load() != 1 {
		t.Errorf("busy member: got %d %q, good member saw %d", code, body, good.n.Load())
	}
}

// lateBody is a response body that reports its Close.
type lateBody struct {
	io.Reader
	closed chan struct{}
	once   sync.Once
}

func (b *lateBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// stubRT answers for fake members without a network. The member "late"
// holds its reply until release is closed, ignoring the request's context,
// so that its reply arrives after another attempt has won.
type stubRT struct {
	late    atomic.Bool
	entered chan struct{}
	release chan struct{}
	body    *lateBody
}

func (s *stubRT) RoundTrip(r *http.Request) (*http.Response, error) {
	resp := &http.Response{StatusCode: 200, Header: http.Header{}, Request: r, Body: io.NopCloser(strings.NewReader(r.URL.Host))}
	if r.URL.Host == "late" && s.late.Load() {
		s.entered <- struct{}{}
		<-s.release
		resp.Body = s.body
	}
	return resp, nil
}

func TestHedgeLoserReplyClosed(t *testing.T) {
	rt := &stubRT{entered: make(chan struct{}, 1), release: make(chan struct{}),
		body: &lateBody{Reader: strings.NewReader("late"), closed: make(chan struct{})}}
	d := newDirector(t, director.Config{PolicyImpl: ordered{}, Hedge: director.HedgeConfig{Enabled: true, MinSamples: 5}},
		"http://late", "http://fast")
	tr := NewTransport(d, rt)
	get := func() string {
		t.Helper()
		req, _ := http.NewRequestWithContext(testCtx(t), "GET", "http://svc/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	for range 10 {
		get() // latency samples for the hedge delay
	}
	rt.late.Store(true)
	if got := get(); got != "fast" {
		t.Fatalf("hedged request answered by %q, want fast", got)
	}
	wait(t, rt.entered, "the late member")
	close(rt.release)
	wait(t, rt.body.closed, "the loser's reply to be closed")
	if d.Stats().Hedges != 1 {
		t.Errorf("hedges = %d, want 1", d.Stats().Hedges)
	}
}

func TestHedging(t *testing.T) {
	var slow atomic.Bool
	entered := make(chan struct{}, 100)
	cancelled := make(chan struct{}, 100)
	fast := newServer(t, status(200, "fast"))
	slowSrv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slow.Load() {
			fmt.Fprint(w, "slow member, fast today")
			return
		}
		entered <- struct{}{}
		<-r.Context().Done()
		cancelled <- struct{}{}
	}))
	d := newDirector(t, director.Config{Policy: "round-robin",
		Hedge: director.HedgeConfig{Enabled: true, MinSamples: 5}}, fast.URL, slowSrv.URL)
	c := &http.Client{Transport: newTransport(t, d)}
	get := func() string {
		t.Helper()
		req, _ := http.NewRequestWithContext(testCtx(t), "GET", "http://svc/", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	for range 10 {
		get()
	}
	slow.Store(true)
	for i := range 6 { // round-robin: every other one meets the slow member
		if got := get(); got != "fast" {
			t.Fatalf("request %d answered %q", i, got)
		}
	}
	for i := range 3 {
		wait(t, entered, "the slow member")
		wait(t, cancelled, fmt.Sprintf("the slow member's request %d to be cancelled", i))
	}
	if h := d.Stats().Hedges; h < 3 {
		t.Errorf("hedges = %d, want >= 3", h)
	}
}

func TestStreamingBody(t *testing.T) {
	const chunk, chunks = 64 << 10, 256 // 16 MiB
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := bytes.Repeat([]byte{'s'}, chunk)
		for i := range chunks {
			buf[0] = byte(i)
			if _, err := w.Write(buf); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	for _, timeout := range []time.Duration{0, time.Minute} {
		t.Run(fmt.Sprint("timeout=", timeout), func(t *testing.T) {
			streamBody(t, director.Config{AttemptTimeout: timeout}, srv.URL, chunk, chunks)
		})
	}
}

func streamBody(t *testing.T, cfg director.Config, url string, chunk, chunks int) {
	d := newDirector(t, cfg, url)
	c := &http.Client{Transport: newTransport(t, d)}
	for _, readToEOF := range []bool{true, false} {
		resp, err := c.Get("http://svc/big")
		if err != nil {
			t.Fatal(err)
		}
		a := resp.Body.(*respBody).a
		if err := a.Context().Err(); err != nil {
			t.Fatalf("attempt ended before the body was read: %v", err)
		}
		buf := make([]byte, chunk)
		n := 0
		for i := 0; readToEOF || i < chunks/2; i++ {
			if _, err := io.ReadFull(resp.Body, buf); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("after %d bytes: %v", n, err)
			}
			if buf[0] != byte(i) || buf[chunk-1] != 's' {
				t.Fatalf("chunk %d corrupt", i)
			}
			n += chunk
		}
		if readToEOF {
			if n != chunk*chunks {
				t.Errorf("read %d bytes, want %d", n, chunk*chunks)
			}
			if !a.Released() {
				t.Errorf("attempt still live after EOF")
			}
		} else if a.Context().Err() != nil || a.Released() {
			t.Errorf("attempt ended before Close")
		}
		resp.Body.Close()
		if !a.Released() {
			t.Errorf("attempt still live after Close")
		}
		if cfg.AttemptTimeout > 0 && a.Context().Err() == nil {
			t.Errorf("attempt context of its own still live after Close")
		}
	}
}

func TestCallerCancel(t *testing.T) {
	entered := make(chan struct{}, 1)
	done := make(chan struct{}, 1)
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
		done <- struct{}{}
	}))
	d := newDirector(t, director.Config{}, srv.URL)
	c := &http.Client{Transport: newTransport(t, d)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered
		cancel()
	}()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc/", nil)
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("no error")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	wait(t, done, "the member to see the cancellation")
}

func TestAffinity(t *testing.T) {
	var urls []string
	for i := range 4 {
		s := newServer(t, status(200, fmt.Sprint(i)))
		urls = append(urls, s.URL)
	}
	d := newDirector(t, director.Config{Policy: "hash"}, urls...)
	tr := newTransport(t, d)
	tr.AffinityCookie = "sid"
	c := &http.Client{Transport: tr}
	who := func(set func(*http.Request)) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(testCtx(t), "GET", "http://svc/", nil)
		set(req)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	for _, kind := range []string{"header", "cookie"} {
		set := func(key string) func(*http.Request) {
			return func(r *http.Request) {
				if kind == "header" {
					r.Header.Set(AffinityHeader, key)
				} else {
					r.AddCookie(&http.Cookie{Name: "sid", Value: key})
				}
			}
		}
		spread := map[string]bool{}
		for k := range 40 {
			key := fmt.Sprint("user-", k)
			first := who(set(key))
			spread[first] = true
			for range 5 {
				if got := who(set(key)); got != first {
					t.Fatalf("%s %s went to %s, then %s", kind, key, first, got)
				}
			}
		}
		if len(spread) < 2 {
			t.Errorf("%s: 40 keys all went to one member", kind)
		}
	}
}

// garbageServer answers every connection with bytes that are not HTTP.
func garbageServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				conn.Read(make([]byte, 4096))
				conn.Write([]byte("\x00\xffgarbage \r\n\r\n\x01"))
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

func TestGarbageMember(t *testing.T) {
	g := newServer(t, status(200, "fine"))
	c, _ := orderedClient(t, director.Config{}, garbageServer(t), g.URL)
	resp, err := c.Get("http://svc/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET: status %d", resp.StatusCode)
	}
	req, _ := http.NewRequestWithContext(testCtx(t), "POST", "http://svc/", strings.NewReader("x"))
	resp, err = c.Do(req)
	if !errors.Is(err, director.ErrNotRetryable) {
		if resp != nil {
			resp.Body.Close()
		}
		t.Errorf("POST: err = %v, want ErrNotRetryable", err)
	}
}

// closeRT answers for fake members without a network: each member's reply
// has the status in its URL's port and a body that reports its Close.
type closeRT struct {
	mu     sync.Mutex
	bodies map[string][]*lateBody
}

func (c *closeRT) RoundTrip(r *http.Request) (*http.Response, error) {
	code, _ := strconv.Atoi(r.URL.Port())
	b := &lateBody{Reader: strings.NewReader(r.URL.Host), closed: make(chan struct{})}
	c.mu.Lock()
	c.bodies[r.URL.Host] = append(c.bodies[r.URL.Host], b)
	c.mu.Unlock()
	return &http.Response{StatusCode: code, Header: http.Header{}, Request: r, Body: b}, nil
}

func isClosed(b *lateBody) bool {
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}

func TestSupersededRepliesClosed(t *testing.T) {
	tests := []struct {
		name    string
		members []string
		want    string // member whose reply is returned
	}{
		{"retried to success", []string{"http://a:500", "http://b:502", "http://c:200"}, "c:200"},
		{"all failed", []string{"http://a:500", "http://b:502", "http://c:503"}, "c:503"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := &closeRT{bodies: map[string][]*lateBody{}}
			d := newDirector(t, director.Config{PolicyImpl: ordered{}, Health: noEjection}, tc.members...)
			req, _ := http.NewRequestWithContext(testCtx(t), "GET", "http://svc/", nil)
			resp, err := NewTransport(d, rt).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.members {
				host := strings.TrimPrefix(m, "http://")
				bodies := rt.bodies[host]
				if len(bodies) != 1 {
					t.Fatalf("%s got %d requests", host, len(bodies))
				}
				if closed := isClosed(bodies[0]); closed != (host != tc.want) {
					t.Errorf("%s: reply closed = %v before the caller was done", host, closed)
				}
			}
			if b, _ := io.ReadAll(resp.Body); string(b) != tc.want {
				t.Errorf("returned reply %q, want %q's", b, tc.want)
			}
			resp.Body.Close()
			if !isClosed(rt.bodies[tc.want][0]) {
				t.Errorf("returned reply not closed by the caller's Close")
			}
		})
	}
}

// onceBody is a request body without GetBody that counts its Closes.
type onceBody struct {
	io.Reader
	closes atomic.Int64
}

func (b *onceBody) Close() error { b.closes.Add(1); return nil }

func TestBodyWithoutGetBody(t *testing.T) {
	var echoes atomic.Int64
	echo := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		echoes.Add(1)
		b, _ := io.ReadAll(r.Body) // HTTP/1 servers are not full duplex
		w.Write(b)
	}))
	var drops atomic.Int64
	drop := newServer(t, dropper(&drops))
	drain := &Middleware{Draining: func() bool { return true }}
	readThenDrain := newServer(t, drain.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(503)
		fmt.Fprint(w, "draining")
	})))
	payload := strings.Repeat("payload ", 4096)
	tests := []struct {
		name       string
		method     string
		members    []string
		wantStatus int    // 0: want an error
		wantErr    error  // when wantStatus is 0
		wantBody   string // when wantStatus is not 0
		wantEchoes int64
		retries    uint64
	}{
		{"refused then ok", "POST", []string{closedURL(t), echo.URL}, 200, nil, payload, 1, 1},
		{"refused twice", "POST", []string{closedURL(t), closedURL(t)}, 0, director.ErrExhausted, "", 0, 1},
		{"dropped mid-body", "PUT", []string{drop.URL, echo.URL}, 0, director.ErrNotRetryable, "", 0, 0},
		{"draining after reading", "PUT", []string{readThenDrain.URL, echo.URL}, 503, nil, "draining", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			echoes.Store(0)
			c, d := orderedClient(t, director.Config{MaxAttempts: 2}, tc.members...)
			body := &onceBody{Reader: strings.NewReader(payload)}
			req, _ := http.NewRequestWithContext(testCtx(t), tc.method, "http://svc/", body)
			req.ContentLength = int64(len(payload))
			if req.GetBody != nil {
				t.Fatal("test needs a body without GetBody")
			}
			resp, err := c.Do(req)
			if tc.wantStatus == 0 {
				var de *director.Error
				if err == nil {
					resp.Body.Close()
				}
				if !errors.Is(err, tc.wantErr) || !errors.As(err, &de) {
					t.Errorf("err = %v, want %v", err, tc.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus || string(got) != tc.wantBody {
					t.Errorf("got %d (%d bytes), want %d (%d bytes)", resp.StatusCode, len(got), tc.wantStatus, len(tc.wantBody))
				}
			}
			if echoes.Load() != tc.wantEchoes {
				t.Errorf("second member saw %d requests, want %d", echoes.Load(), tc.wantEchoes)
			}
			if st := d.Stats(); st.Retries != tc.retries {
				t.Errorf("director made %d retries, want %d", st.Retries, tc.retries)
			}
			// The transport closes asynchronously after a reply; the close
			// must have happened by the time the reply was consumed.
			if n := body.closes.Load(); n != 1 {
				t.Errorf("body closed %d times, want 1", n)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	d := newDirector(t, director.Config{}, closedURL(t))
	tr := newTransport(t, d)
	body := &onceBody{Reader: strings.NewReader("x")}
	if _, err := tr.RoundTrip(&http.Request{Method: "POST", Header: http.Header{}, Body: body}); err == nil {
		t.Error("nil URL accepted")
	}
	if _, err := tr.RoundTrip(&http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: "svc"}}); err == nil {
		t.Error("nil Header accepted")
	}
	if body.closes.Load() != 1 {
		t.Errorf("refused request's body closed %d times, want 1", body.closes.Load())
	}
	if d.Stats().Requests != 0 {
		t.Error("refused requests reached the director")
	}
}

func TestBodyClosedWithoutAttempt(t *testing.T) {
	for _, rewindable := range []bool{true, false} {
		t.Run(fmt.Sprint("GetBody=", rewindable), func(t *testing.T) {
			d := newDirector(t, director.Config{}, closedURL(t))
			d.Close() // Apply refuses at once
			body := &onceBody{Reader: strings.NewReader("x")}
			req, _ := http.NewRequestWithContext(testCtx(t), "POST", "http://svc/", body)
			if rewindable {
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil }
			}
			_, err := newTransport(t, d).RoundTrip(req)
			if !errors.Is(err, director.ErrClosed) {
				t.Errorf("err = %v, want ErrClosed", err)
			}
			if n := body.closes.Load(); n != 1 {
				t.Errorf("body closed %d times, want 1", n)
			}
		})
	}
}

// TestConcurrentMixedFailures runs many concurrent requests with bodies,
// hedging and attempt timeouts against members that fail in every way the
// Transport distinguishes, for the race detector and for leaks. Every
// request must succeed: each failure mode leaves a healthy member to retry.
func TestConcurrentMixedFailures(t *testing.T) {
	var n atomic.Int64
	echo := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}
	flaky := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			http.Error(w, "boom", 500)
		case 1:
			io.ReadAll(r.Body)
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
		case 2:
			// Slow: hedged or timed out. net/http notices the client going
			// away only once the body has been read.
			io.ReadAll(r.Body)
			<-r.Context().Done()
		default:
			echo(w, r)
		}
	}))
	good := newServer(t, http.HandlerFunc(echo))
	drain := &Middleware{Capacity: 4, Draining: func() bool { return true }}
	draining := newServer(t, drain.Wrap(status(503, "draining")))
	d := newDirector(t, director.Config{
		MaxAttempts:    8,
		AttemptTimeout: 300 * time.Millisecond,
		Hedge:          director.HedgeConfig{Enabled: true, MinSamples: 5, MaxHedges: 2},
		Budget:         balance.BudgetConfig{Ratio: 10, Burst: 1000},
		Health:         noEjection,
		Policy:         "random",
	}, flaky.URL, good.URL, draining.URL, closedURL(t))
	c := &http.Client{Transport: newTransport(t, d)}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				want := fmt.Sprintf("g%d-r%d-%s", g, i, strings.Repeat("x", i*100))
				req, _ := http.NewRequestWithContext(testCtx(t), "POST", "http://svc/", strings.NewReader(want))
				req.Header.Set("Idempotency-Key", fmt.Sprint(g, "-", i))
				resp, err := c.Do(req)
				if err != nil {
					errs <- err
					continue
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(got) != want {
					errs <- fmt.Errorf("status %d, %d bytes (%v), want %d bytes", resp.StatusCode, len(got), err, len(want))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := d.Stats()
	t.Logf("requests %d retries %d hedges %d failed %d", st.Requests, st.Retries, st.Hedges, st.Failed)
}
