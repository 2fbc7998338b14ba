package smarthttp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of DrainConfig.
const (
	DefaultAnnounce = time.Second
	DefaultRefuse   = 250 * time.Millisecond
	DefaultNewConn  = time.Second
)

// DrainConfig times a graceful drain (see Server.Drain). The zero value of
// each field means the default beside it.
type DrainConfig struct {
	// Announce is how long a draining member goes on serving new requests
	// normally while every reply says it is draining, so that directors
	// learn it lazily from replies (or from their load polls) and stop
	// sending it work before it refuses any. Make it longer than the
	// directors' PollInterval if some of them learn only by polling.
	// Default DefaultAnnounce (1s); negative means no announce period.
	Announce time.Duration
	// Refuse is how long the member answers new requests with 503 and a
	// draining load record before it closes its listeners and idle
	// connections: a director that had not yet learned gets a reply that
	// Transport re-sends elsewhere as not processed (even a POST), rather
	// than a connection closed under it. Default DefaultRefuse (250ms);
	// negative means none.
	Refuse time.Duration
	// NewConn bounds the wait, once shutdown has begun, for a connection
	// that was accepted but has not sent its first request: a client's
	// spare connection that it may never use. net/http's Shutdown waits 5s
	// for such connections; the drain closes them when they are older than
	// NewConn. Default DefaultNewConn (1s), which leaves room for a slow
	// TLS handshake.
	NewConn time.Duration
	// After returns a channel that delivers once d has passed; the drain
	// waits on it for each period. Default: a time.Timer. Tests replace it
	// to end the periods on their own events.
	After func(d time.Duration) <-chan time.Time
}

// Phases of a Server.
const (
	phaseServing int32 = iota
	phaseAnnouncing
	phaseRefusing
)

// Server is an HTTP member that can drain gracefully: it wraps an
// http.Server whose handler runs under a Middleware, so every reply
// carries the member's load record, and Drain stops it without losing
// requests (see Drain for the sequence).
//
// Use NewServer, then serve with Serve or ListenAndServe (or with the
// http.Server's own methods), and call Drain instead of Shutdown.
type Server struct {
	// HTTP is the wrapped server; its Handler is the wrapped handler.
	HTTP *http.Server

	mw    *Middleware
	cfg   DrainConfig
	phase atomic.Int32

	once     sync.Once
	started  chan struct{} // closed when Drain begins
	refusing chan struct{} // closed when new requests start being refused
	drained  chan struct{} // closed when Drain's sequence has ended

	connMu   sync.Mutex
	newConns map[net.Conn]time.Time // accepted, no request yet: when accepted
	err      error                  // Drain's result; set before drained is closed
}

// NewServer makes hs a drainable member: hs.Handler (http.DefaultServeMux
// if nil) is wrapped so that it runs under mw (a new Middleware if nil),
// and refuses new requests in the last phase of a drain. NewServer sets
// mw.Draining, keeping a Draining function already there (the member then
// reports draining when either says so), so mw must not have been used to
// Wrap anything yet, nor be given to another Server.
func NewServer(hs *http.Server, mw *Middleware, cfg DrainConfig) (*Server, error) {
	if hs == nil {
		return nil, errors.New("smarthttp: NewServer: nil http.Server")
	}
	if mw == nil {
		mw = &Middleware{}
	}
	if err := mw.Validate(); err != nil {
		return nil, err
	}
	if cfg.Announce == 0 {
		cfg.Announce = DefaultAnnounce
	}
	if cfg.Refuse == 0 {
		cfg.Refuse = DefaultRefuse
	}
	if cfg.NewConn <= 0 {
		cfg.NewConn = DefaultNewConn
	}
	s := &Server{
		HTTP: hs, mw: mw, cfg: cfg,
		started: make(chan struct{}), refusing: make(chan struct{}), drained: make(chan struct{}),
		newConns: make(map[net.Conn]time.Time),
	}
	userState := hs.ConnState
	hs.ConnState = func(c net.Conn, st http.ConnState) {
		s.connMu.Lock()
		if st == http.StateNew {
			s.newConns[c] = time.Now()
		} else {
			delete(s.newConns, c)
		}
		s.connMu.Unlock()
		if userState != nil {
			userState(c, st)
		}
	}
	prev := mw.Draining
	mw.Draining = func() bool {
		return s.phase.Load() != phaseServing || prev != nil && prev()
	}
	h := hs.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	hs.Handler = mw.Wrap(s.gate(h))
	return s, nil
}

// Middleware returns the middleware the handler runs under.
func (s *Server) Middleware() *Middleware { return s.mw }

// Serve serves on l until the server is drained or closed; like
// http.Server.Serve it then returns http.ErrServerClosed.
func (s *Server) Serve(l net.Listener) error { return s.HTTP.Serve(l) }

// ListenAndServe listens on s.HTTP.Addr and serves; see Serve.
func (s *Server) ListenAndServe() error { return s.HTTP.ListenAndServe() }

// Close closes the server at once, cutting off requests in flight: the
// last resort when Drain's context ended before the work did.
func (s *Server) Close() error { return s.HTTP.Close() }

// Draining reports whether Drain has begun.
func (s *Server) Draining() bool { return s.phase.Load() != phaseServing }

// DrainStarted is closed when Drain begins: replies say draining from then
// on.
func (s *Server) DrainStarted() <-chan struct{} { return s.started }

// Refusing is closed when the announce period has ended and new requests
// are answered with 503.
func (s *Server) Refusing() <-chan struct{} { return s.refusing }

// Drained is closed when Drain's sequence has ended, whether or not the
// work in flight finished in time.
func (s *Server) Drained() <-chan struct{} { return s.drained }

// Drain stops the member without losing requests:
//
//  1. From the moment it is called, every reply carries State=draining in
//     its load record (wire.LoadHeader), including replies to requests
//     already in flight whose header is not yet written, and asks the
//     client to close the connection (Connection: close), so clients stop
//     reusing connections to this member. Directors that receive such a
//     reply, or poll the load, stop picking the member.
//  2. For the Announce period new requests are still served normally, so
//     directors that have not heard yet are not punished for it.
//  3. For the Refuse period new requests (those whose handler has not
//     started) are answered 503 with the draining load record, a
//     Retry-After and Connection: close, without running the handler.
//     Transport treats that reply as not processed and re-sends the
//     request to another member, whatever its method.
//  4. Then http.Server.Shutdown(ctx): listeners and idle connections are
//     closed and Drain waits for every request in flight, served or
//     refused, to finish. Connections that were accepted but have sent no
//     request for NewConn are closed too (Shutdown alone would wait 5s).
//
// Drain returns nil once all work has finished. If ctx ends first, the
// remaining periods are skipped and Drain returns Shutdown's error (ctx's)
// with requests possibly still running; call Close to cut them off. A
// second call waits for the first one's sequence (or for its own ctx) and
// returns the same result.
//
// One race remains that no server can close: a keep-alive connection that
// stayed idle throughout the drain is closed by Shutdown, and a client
// that sends on it at that instant sees the connection close. net/http's
// Transport re-sends such a request by itself if it is idempotent (GET,
// PUT, ..., or one with an Idempotency-Key), and smarthttp.Transport
// re-sends idempotent requests that fail so; a non-idempotent request
// without a key is the only kind that can fail, and only on a connection
// that carried no request during Announce and Refuse.
func (s *Server) Drain(ctx context.Context) error {
	first := false
	s.once.Do(func() { first = true })
	if !first {
		select {
		case <-s.drained:
			return s.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.phase.Store(phaseAnnouncing)
	close(s.started)
	s.wait(ctx, s.cfg.Announce)
	s.phase.Store(phaseRefusing)
	close(s.refusing)
	s.wait(ctx, s.cfg.Refuse)
	stop := make(chan struct{})
	reaped := make(chan struct{})
	go s.reapNewConns(stop, reaped)
	s.err = s.HTTP.Shutdown(ctx)
	close(stop)
	<-reaped
	close(s.drained)
	return s.err
}

// wait waits for d to pass or ctx to end.
func (s *Server) wait(ctx context.Context, d time.Duration) {
	if d <= 0 || ctx.Err() != nil {
		return
	}
	if s.cfg.After != nil {
		select {
		case <-s.cfg.After(d):
		case <-ctx.Done():
		}
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// reapNewConns closes, until stop is closed, the connections that have
// sent no request for NewConn since they were accepted, which Shutdown
// would otherwise wait 5s for. Shutdown has closed the listeners, so no
// connection is added meanwhile.
func (s *Server) reapNewConns(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(max(s.cfg.NewConn/4, time.Millisecond))
	defer tick.Stop()
	for {
		var old []net.Conn
		now := time.Now()
		s.connMu.Lock()
		for c, at := range s.newConns {
			if now.Sub(at) >= s.cfg.NewConn {
				old = append(old, c)
				delete(s.newConns, c)
			}
		}
		s.connMu.Unlock()
		for _, c := range old {
			c.Close()
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// gate runs h, or refuses the request in the last phase of a drain. It runs
// inside the Middleware, which stamps the draining load record on both.
func (s *Server) gate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch s.phase.Load() {
		case phaseServing:
			h.ServeHTTP(w, r)
		case phaseAnnouncing:
			// Set before the handler writes the header. HTTP/1 closes the
			// connection after this reply; HTTP/2 sends GOAWAY.
			w.Header().Set("Connection", "close")
			h.ServeHTTP(w, r)
		default:
			hd := w.Header()
			hd.Set("Connection", "close")
			hd.Set("Retry-After", "1")
			hd.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "draining\n")
		}
	})
}
