// Package smarthttp adapts the director to net/http.
//
// Transport is an http.RoundTripper that turns any http.Client into a smart
// client: each request goes to the member the director picks and, when a
// member fails in a way that is safe to retry, is re-sent to another member.
// Middleware makes a server one of the paper's "modified servers": it
// piggy-backs the member's load, and optionally the membership, on every
// reply, which Transport hands back to the director.
package smarthttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

// AffinityHeader carries a session-affinity key. Requests with the same key
// go to the same member under the "hash" policy (see policy.KeyOf). The
// header is sent on to the member unchanged.
const AffinityHeader = "Smartclient-Affinity"

// Headers that make a POST or PATCH idempotent: the same names net/http's
// own Transport honours when deciding whether it may replay a request.
const (
	idempotencyKey  = "Idempotency-Key"
	xIdempotencyKey = "X-Idempotency-Key"
)

// Transport is an http.RoundTripper that sends each request through a
// director to one of its members.
//
// The caller's URL scheme and host are ignored: every attempt goes to a
// member, whose URL ("http://10.0.0.1:8080" or "http://host:port/prefix")
// gives the scheme, the host, the Host header and a path prefix joined in
// front of the request's path, and whose query, if any, is prepended to the
// request's. Use a client with this Transport for the service's URLs only:
// it would send an absolute redirect to another site to a member too. The
// response's Request is the copy sent, so its URL names the member that
// answered. The caller's request is never modified: each attempt sends a
// shallow copy with its own URL and context. The copy shares the caller's
// Header and Trailer maps, which an http.RoundTripper must not modify;
// sharing rather than cloning them keeps request trailers working, since a
// caller may fill them in while the body is being read.
//
// Which failures are re-applied on another member:
//
//   - No connection (dial error, refused, no route): always (NotReached).
//   - A 503 whose load record (wire.LoadHeader) says the member is
//     draining: always (NotReached). A member that sends it promises it did
//     not act on the request; Middleware does not send it on its own.
//   - Any other 5xx, a connection lost mid-exchange, a reply that is not
//     HTTP, an attempt timeout: only for idempotent requests
//     (MaybeProcessed). Idempotent means GET, HEAD, OPTIONS, TRACE, PUT or
//     DELETE, or any method with an Idempotency-Key or X-Idempotency-Key
//     header. Only idempotent requests are hedged.
//   - 1xx-4xx replies are the member's answer and are returned as they are.
//
// Request bodies: a request whose body can be rewound (GetBody set, as
// http.NewRequest does for bytes and strings readers) is re-sent with a
// fresh body from GetBody; GetBody must be safe for concurrent use when
// hedging is on. A request with a body but no GetBody is sent again only if
// it failed NotReached before any byte of the body was read; otherwise the
// first attempt is its only one (RoundTrip then returns the member's reply,
// or a *director.Error whose Reason is director.ErrNotRetryable), and it
// is never hedged.
//
// Results: RoundTrip returns an error only when no member answered. When
// every attempt failed and at least one got a reply (a 5xx), the most recent
// such reply is returned with its body intact, as a plain http.Transport
// would have returned it; otherwise the error is the director's *Error,
// which lists every attempt. Replies of attempts that were superseded are
// closed unread.
//
// The load and membership records members piggy-back on replies are parsed
// from every reply, even failed ones, and handed to the director (a record
// that does not parse is counted in Stats.BadReports and ignored; whether a
// membership record is applied is the director's decision, see
// director.Config.LearnMembers). The headers are left in the response the
// caller gets: they are harmless, and removing them would mean copying the
// header map of every reply.
//
// Streaming: the director's AttemptTimeout bounds the wait for the reply's
// header, not the reading of its body. The winning attempt's context stays
// live while the caller reads the body; closing the body, or reading it to
// EOF, releases the attempt. As with any http.RoundTripper the caller must
// close every response body.
type Transport struct {
	// AffinityCookie, if not empty, names a cookie whose value is used as
	// the session-affinity key when the request has no AffinityHeader.
	// Set it before first use.
	AffinityCookie string

	d    *director.Director
	base http.RoundTripper
	// The director may end an attempt early, and the request must then
	// end too: always with an attempt timeout, for idempotent requests
	// when hedging.
	timeouts, hedging bool

	// targets caches parsed member URLs, copy-on-write so the lookup on
	// every attempt takes no lock and allocates nothing.
	targets   atomic.Pointer[map[string]*target]
	targetsMu sync.Mutex
}

// maxTargets bounds the member URL cache; members come and go with learned
// membership, so the cache is dropped and rebuilt when it grows past this.
const maxTargets = 4096

// NewTransport returns a RoundTripper that sends each request through d to
// one of d's members. base carries the actual requests; nil means a new
// http.Transport with http.DefaultTransport's settings and a pool sized for
// a few busy members (MaxIdleConnsPerHost 64, MaxIdleConns 1024).
func NewTransport(d *director.Director, base http.RoundTripper) *Transport {
	if base == nil {
		base = NewBaseTransport()
	}
	cfg := d.Config()
	return &Transport{d: d, base: base, timeouts: cfg.AttemptTimeout > 0, hedging: cfg.Hedge.Enabled}
}

// NewBaseTransport returns the http.Transport NewTransport uses when given
// none: http.DefaultTransport's settings with a larger idle pool. The
// default pool keeps only 2 idle connections per host, so a smart client
// spreading concurrent load over a few members would keep dialing.
func NewBaseTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Director returns the director the transport sends requests through.
func (t *Transport) Director() *director.Director { return t.d }

// CloseIdleConnections closes the base transport's idle connections, if it
// has a CloseIdleConnections method. http.Client.CloseIdleConnections calls
// it.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// StatusError is the error of an attempt that a member answered with a
// server error (5xx); it appears in a *director.Error's attempts.
type StatusError struct {
	Member     string // the member's URL
	StatusCode int
	Draining   bool // the reply's load record said the member is draining
}

func (e *StatusError) Error() string {
	d := ""
	if e.Draining {
		d = " (draining)"
	}
	return fmt.Sprintf("smarthttp: %s answered %d %s%s", e.Member, e.StatusCode, http.StatusText(e.StatusCode), d)
}

var errNoResponse = errors.New("smarthttp: base RoundTripper returned neither a response nor an error")

// errNoRewind is the cause with which a call stops the director from
// re-applying a request whose body was consumed and cannot be rewound.
var errNoRewind = errors.New("smarthttp: request body was consumed and has no GetBody")

// RoundTrip implements http.RoundTripper; see Transport for what it does.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("smarthttp: nil Request.URL")
	}
	if req.Header == nil {
		closeBody(req)
		return nil, errors.New("smarthttp: nil Request.Header")
	}
	c := &call{t: t, req: req, idem: idempotent(req)}
	c.key, c.hasKey = t.affinity(req)
	ctx := req.Context()
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			// Only this case can need to stop the director early (see
			// Cleanup), so only it pays for a cancellable context.
			c.once = &sharedBody{rc: req.Body}
			c.idem = false
			var cancel context.CancelCauseFunc
			ctx, cancel = context.WithCancelCause(ctx)
			c.stopApply = cancel
		} else {
			c.hasBody = true
		}
	}

	a, err := t.d.Apply(ctx, c)

	c.mu.Lock()
	c.over = true
	kept := c.kept
	c.kept = nil
	c.mu.Unlock()
	if c.once != nil {
		c.once.finish()
	} else if c.hasBody && c.taken.CompareAndSwap(false, true) {
		// No attempt reached the base transport, which would have closed
		// it; a hedge that starts late now takes a body from GetBody.
		req.Body.Close()
	}
	if err == nil {
		if kept != nil {
			kept.close()
		}
		ex := a.Result.(*exchange)
		// The winner's context is a child of Apply's: end both together.
		ex.body.after = c.stopApply
		ex.handOver()
		return ex.resp, nil
	}
	if c.stopApply != nil {
		c.stopApply(nil)
	}
	if kept != nil {
		// Detached in Action: its context hangs off the caller's only.
		kept.handOver()
		return kept.resp, nil
	}
	var de *director.Error
	if c.noRewind.Load() && errors.As(err, &de) && errors.Is(de.Reason, context.Canceled) {
		// The context was cancelled by Cleanup, not by the caller.
		err = &director.Error{Reason: director.ErrNotRetryable, Attempts: de.Attempts}
	}
	return nil, err
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// idempotent reports whether req may be re-sent after a member may have
// acted on it, by the rules net/http's Transport uses for replaying requests.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
		return true
	}
	if _, ok := req.Header[idempotencyKey]; ok {
		return true
	}
	_, ok := req.Header[xIdempotencyKey]
	return ok
}

// affinity returns req's session-affinity key, if it has one.
func (t *Transport) affinity(req *http.Request) (uint64, bool) {
	if v := req.Header[AffinityHeader]; len(v) > 0 && v[0] != "" {
		return policy.KeyOf(v[0]), true
	}
	if t.AffinityCookie != "" {
		if ck, err := req.Cookie(t.AffinityCookie); err == nil && ck.Value != "" {
			return policy.KeyOf(ck.Value), true
		}
	}
	return 0, false
}

// target is a member's parsed URL.
type target struct {
	u   *url.URL
	err error
}

// target returns the parsed URL of the member called raw.
func (t *Transport) target(raw string) *target {
	if m := t.targets.Load(); m != nil {
		if tg := (*m)[raw]; tg != nil {
			return tg
		}
	}
	tg := parseTarget(raw)
	t.targetsMu.Lock()
	defer t.targetsMu.Unlock()
	var next map[string]*target
	if m := t.targets.Load(); m != nil && len(*m) < maxTargets {
		next = make(map[string]*target, len(*m)+1)
		for k, v := range *m {
			next[k] = v
		}
	} else {
		next = make(map[string]*target, 8)
	}
	next[raw] = tg
	t.targets.Store(&next)
	return tg
}

func parseTarget(raw string) *target {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
	case u.Scheme != "http" && u.Scheme != "https":
		err = fmt.Errorf("smarthttp: member %q: scheme must be http or https", raw)
	case u.Host == "":
		err = fmt.Errorf("smarthttp: member %q has no host", raw)
	case u.Opaque != "" || u.User != nil || u.Fragment != "":
		err = fmt.Errorf("smarthttp: member %q: want scheme://host[:port][/prefix][?query]", raw)
	}
	if err != nil {
		return &target{err: err}
	}
	if u.Path == "/" && u.RawPath == "" {
		// "http://h:1/" and "http://h:1" are the same member; without the
		// slash, joining needs no allocation.
		u.Path = ""
	}
	return &target{u: u}
}

// call is one RoundTrip: the director.Request whose Action sends an attempt
// and whose Cleanup disposes of a failed attempt.
type call struct {
	t      *Transport
	req    *http.Request // the caller's; never modified
	idem   bool
	key    uint64
	hasKey bool

	// Body with GetBody: taken is set once an attempt has sent req.Body
	// itself; later attempts use GetBody.
	hasBody bool
	taken   atomic.Bool
	// Body without GetBody: shared by the attempts while none has read it.
	once      *sharedBody
	stopApply context.CancelCauseFunc // cancels Apply's context; only with once
	noRewind  atomic.Bool             // stopApply was called with errNoRewind

	mu   sync.Mutex
	kept *exchange // the latest failed attempt that got a reply
	over bool      // Apply returned: later Cleanups close their replies
}

func (c *call) Idempotent() bool            { return c.idem }
func (c *call) AffinityKey() (uint64, bool) { return c.key, c.hasKey }

// exchange is one attempt's request and reply. It is one allocation for
// the URL, the response body wrapper and the bookkeeping.
type exchange struct {
	url  url.URL
	resp *http.Response
	body respBody
}

// Action sends one attempt to a.Member.
func (c *call) Action(ctx context.Context, a *director.Attempt) error {
	tg := c.t.target(a.Member.URL)
	if tg.err != nil {
		// Nothing was sent: the next member may well be fine.
		return director.WithClass(tg.err, director.NotReached)
	}

	// The request does not run under the attempt's context, which the
	// director ends as soon as an attempt fails, but under the caller's:
	// a failed attempt's reply must outlive the attempt in case it becomes
	// the reply RoundTrip returns. The attempt's context ends early only
	// on a timeout or a lost hedge (see director.Request); when either can
	// happen, a child of the caller's context follows the attempt's until
	// the reply's header arrives. Otherwise the link is pure cost (eight
	// allocations).
	ex := &exchange{url: *c.req.URL}
	rctx := c.req.Context()
	if c.t.timeouts || c.t.hedging && c.idem {
		var cancel context.CancelCauseFunc
		rctx, cancel = context.WithCancelCause(rctx)
		ex.body.cancel = cancel
		ex.body.stop = context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	}
	ex.body.a = a
	out := c.req.WithContext(rctx) // a shallow copy; see Transport
	out.URL = &ex.url
	(&httputil.ProxyRequest{Out: out}).SetURL(tg.u)
	out.Host = tg.u.Host

	switch {
	case c.once != nil:
		body, err := c.once.handle()
		if err != nil {
			ex.body.unlink(err)
			return director.WithClass(err, director.Permanent)
		}
		out.Body = body
	case c.hasBody:
		if !c.taken.CompareAndSwap(false, true) {
			body, err := c.req.GetBody()
			if err != nil {
				ex.body.unlink(err)
				return director.WithClass(fmt.Errorf("smarthttp: GetBody: %w", err), director.Permanent)
			}
			out.Body = body
		}
	}

	resp, err := c.t.base.RoundTrip(out)
	if err == nil && resp == nil {
		err = errNoResponse
	}
	if err != nil {
		if resp != nil && resp.Body != nil {
			resp.Body.Close() // a base transport that broke the contract
		}
		ex.body.unlink(err)
		return err
	}
	if resp.Body == nil {
		resp.Body = http.NoBody // likewise
	}
	// From here on the attempt's fate no longer touches the request: a
	// timeout bounds the wait for the header only, and a reply that loses
	// a hedge or is superseded is closed by Cleanup.
	ex.body.detach()
	ex.resp = resp
	ex.body.rc = resp.Body
	if resp.Body != http.NoBody {
		if rw, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
			resp.Body = &rwBody{&ex.body, rw}
		} else {
			resp.Body = &ex.body
		}
	}
	a.Result = ex

	draining := piggyback(a, resp.Header)
	if resp.StatusCode < 500 {
		return nil
	}
	class := director.MaybeProcessed
	if resp.StatusCode == http.StatusServiceUnavailable && draining {
		class = director.NotReached
	}
	return director.WithClass(&StatusError{Member: a.Member.URL, StatusCode: resp.StatusCode, Draining: draining}, class)
}

// piggyback hands the director the load and membership records on a reply,
// and reports whether the load record says the member is draining.
func piggyback(a *director.Attempt, h http.Header) (draining bool) {
	// The names are in canonical form, so index the map directly.
	if v := h[wire.LoadHeader]; len(v) > 0 {
		if len(v) > 1 {
			a.BadReport(errRepeated)
		} else if l, err := wire.ParseLoad(v[0]); err != nil {
			a.BadReport(err)
		} else {
			a.ReportLoad(l)
			draining = l.State == wire.StateDraining
		}
	}
	if v := h[wire.MembersHeader]; len(v) > 0 {
		if len(v) > 1 {
			a.BadReport(errRepeated)
		} else if m, err := wire.ParseMembers(v[0]); err != nil {
			a.BadReport(err)
		} else {
			a.ReportMembers(m)
		}
	}
	return draining
}

var errRepeated = fmt.Errorf("%w: header repeated", wire.ErrMalformed)

// Cleanup disposes of an attempt that did not become the result.
func (c *call) Cleanup(a *director.Attempt, err error) {
	if ex, _ := a.Result.(*exchange); ex != nil {
		c.keep(ex, err)
	}
	if c.once != nil && !c.once.rewindable() && director.Classify(err) == director.NotReached {
		// The director would send the request again, but the body is gone.
		// Cancelling Apply's context stops it before the next attempt;
		// Cleanup runs before any re-apply and Apply checks its context
		// first thing. The reply, if any, was detached above.
		c.noRewind.Store(true)
		c.stopApply(errNoRewind)
	}
}

// keep holds on to a failed attempt's reply while it may still become the
// reply RoundTrip returns, and closes the one it replaces. The reply was
// detached from the attempt's context, which the director ends as soon as
// Cleanup returns.
func (c *call) keep(ex *exchange, err error) {
	c.mu.Lock()
	if c.over || errors.Is(err, director.ErrHedgeLost) {
		c.mu.Unlock()
		ex.close()
		return
	}
	prev := c.kept
	c.kept = ex
	c.mu.Unlock()
	if prev != nil {
		prev.close()
	}
}

// close discards a reply RoundTrip will not return.
func (ex *exchange) close() {
	ex.body.rc.Close()
	ex.body.finish()
}

// handOver prepares a reply for the caller. A reply without a body is done
// at once.
func (ex *exchange) handOver() {
	if ex.resp.Body == http.NoBody {
		ex.body.finish()
	}
}
