package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"mime"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/wire"
)

// Backoff is the pause between reconnections. The zero value of each field
// means the default beside it.
type Backoff struct {
	// Initial is the pause after the first failure. Default 100ms.
	Initial time.Duration
	// Max caps the pause. Default 30s.
	Max time.Duration
	// Jitter spreads each pause uniformly over ±Jitter of itself, so that
	// clients cut off together do not come back together. Default 0.2;
	// range 0..1 (negative means none).
	Jitter float64
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	if b.Jitter == 0 {
		b.Jitter = 0.2
	}
	b.Jitter = min(max(b.Jitter, 0), 1)
	return b
}

// Delay returns the pause after failures consecutive failures (1 for the
// first), given r uniform in [0, 1): Initial doubled per failure, capped at
// Max, then jittered.
func (b Backoff) Delay(failures int, r float64) time.Duration {
	b = b.withDefaults()
	d := b.Initial
	for i := 1; i < failures && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return time.Duration(float64(d) * (1 - b.Jitter + 2*b.Jitter*r))
}

// WatcherStats counts what a Watcher did.
type WatcherStats struct {
	Connects  uint64 // connection attempts
	Streams   uint64 // attempts answered with a stream
	Errors    uint64 // connections that failed or ended with an error
	Garbage   uint64 // of Errors, streams refused as malformed or oversized
	Idle      uint64 // of Errors, streams cut for lack of heartbeats
	Events    uint64 // events accepted: delivered, or of a kind this version skips
	LastID    string // id of the last event delivered
	Connected bool
}

// Watcher follows one Hub's stream, reconnecting with backoff and resuming
// from the last event it delivered. Set the fields before Run.
type Watcher struct {
	// URL of the hub, e.g. "http://10.0.0.1:8080" + Path.
	URL string
	// Client sends the requests. It must not have a Timeout, which would
	// cut every stream. Default: a client on http.DefaultTransport.
	Client *http.Client
	// OnMembers and OnLoad receive events, one at a time, on Run's
	// goroutine; they should not block for long. url is "" for the serving
	// member's own load. Either may be nil.
	OnMembers func(wire.Members)
	OnLoad    func(url string, l wire.Load)
	// OnRetry, if set, is called (on Run's goroutine) once the pause
	// before reconnecting is scheduled, with the error that ended the
	// previous connection: for logging, and for tests.
	OnRetry func(failures int, pause time.Duration, err error)
	// Backoff paces reconnections. The pause is reset once a stream has
	// delivered an event or a heartbeat.
	Backoff Backoff
	// IdleTimeout cuts a stream on which nothing, not even a heartbeat,
	// arrived for this long. Default 45s, three default heartbeats.
	IdleTimeout time.Duration
	// MaxLine bounds one line and one event's data. Default
	// wire.MaxMembersLen + 1024.
	MaxLine int
	// Clock paces backoff and idle detection. Default clock.Real.
	Clock clock.Clock
	// Rand returns uniform numbers in [0, 1) for jitter. Default
	// math/rand/v2.Float64.
	Rand func() float64

	connects, streams, errs, garbage, idle, events atomic.Uint64
	connected                                      atomic.Bool
	lastID                                         atomic.Pointer[string]
}

// Stats returns the watcher's counters.
func (w *Watcher) Stats() WatcherStats {
	return WatcherStats{
		Connects: w.connects.Load(), Streams: w.streams.Load(), Errors: w.errs.Load(),
		Garbage: w.garbage.Load(), Idle: w.idle.Load(), Events: w.events.Load(),
		LastID: w.lastIDString(), Connected: w.connected.Load(),
	}
}

func (w *Watcher) lastIDString() string {
	if p := w.lastID.Load(); p != nil {
		return *p
	}
	return ""
}

// errIdle ends a stream on which nothing arrived for IdleTimeout.
var errIdle = errors.New("watch: stream idle")

// Run follows the stream until ctx ends and returns ctx's error. It keeps
// no goroutine behind once it returns.
func (w *Watcher) Run(ctx context.Context) error {
	clk := w.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	rnd := w.Rand
	if rnd == nil {
		rnd = rand.Float64
	}
	failures := 0
	for {
		alive, err := w.stream(ctx, clk)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.errs.Add(1)
		if errors.Is(err, ErrGarbage) || errors.Is(err, ErrLineTooLong) {
			w.garbage.Add(1)
		}
		if errors.Is(err, errIdle) {
			w.idle.Add(1)
		}
		if alive {
			failures = 0
		}
		failures++
		pause := w.Backoff.Delay(failures, rnd())
		wake := make(chan struct{})
		t := clk.AfterFunc(pause, func() { close(wake) })
		if w.OnRetry != nil {
			w.OnRetry(failures, pause, err)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// stream runs one connection. alive reports whether anything arrived.
func (w *Watcher) stream(ctx context.Context, clk clock.Clock) (alive bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// Idle detection: every line stamps lastSeen; the timer re-arms itself
	// for the rest of the window and cancels once a full window passed.
	idleFor := w.IdleTimeout
	if idleFor <= 0 {
		idleFor = 45 * time.Second
	}
	var mu sync.Mutex
	lastSeen := clk.Now()
	var timer clock.Timer
	stopped := false
	var check func()
	check = func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if rest := idleFor - clk.Now().Sub(lastSeen); rest > 0 {
			timer = clk.AfterFunc(rest, check)
			return
		}
		cancel(errIdle)
	}
	mu.Lock()
	timer = clk.AfterFunc(idleFor, check)
	mu.Unlock()
	defer func() {
		mu.Lock()
		stopped = true
		timer.Stop()
		mu.Unlock()
	}()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.URL, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if id := w.lastIDString(); id != "" {
		req.Header.Set("Last-Event-ID", id)
	}
	hc := w.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	w.connects.Add(1)
	resp, err := hc.Do(req)
	if err != nil {
		return false, causeOr(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("watch: %s answered %s", w.URL, resp.Status)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return false, fmt.Errorf("%w: content type %q", ErrGarbage, resp.Header.Get("Content-Type"))
	}
	w.streams.Add(1)
	w.connected.Store(true)
	defer w.connected.Store(false)

	maxLine := w.MaxLine
	if maxLine <= 0 {
		maxLine = wire.MaxMembersLen + 1024
	}
	p := newParser(resp.Body, maxLine)
	p.onLine = func() {
		alive = true
		now := clk.Now()
		mu.Lock()
		lastSeen = now
		mu.Unlock()
	}
	for {
		ev, err := p.next()
		if err != nil {
			return alive, causeOr(ctx, err)
		}
		if err := w.dispatch(ev); err != nil {
			return alive, err
		}
	}
}

// causeOr returns why ctx was cancelled if it was (idle), else err.
func causeOr(ctx context.Context, err error) error {
	if c := context.Cause(ctx); errors.Is(c, errIdle) {
		return errIdle
	}
	return err
}

// dispatch decodes one event and hands it on. A record that does not
// parse ends the stream: a hub that sends one is broken or hostile.
func (w *Watcher) dispatch(ev event) error {
	switch ev.kind {
	case "members":
		m, err := wire.ParseMembers(string(ev.data))
		if err != nil {
			return fmt.Errorf("%w: members: %w", ErrGarbage, err)
		}
		if w.OnMembers != nil {
			w.OnMembers(m)
		}
	case "load":
		var url string
		rec := ev.data
		if i := bytes.IndexByte(rec, ' '); i >= 0 {
			url, rec = string(rec[:i]), rec[i+1:]
			if url == "" || len(url) > wire.MaxURLLen {
				return fmt.Errorf("%w: load url %q", ErrGarbage, clip(ev.data[:i]))
			}
		}
		l, err := wire.ParseLoad(string(rec))
		if err != nil {
			return fmt.Errorf("%w: load: %w", ErrGarbage, err)
		}
		if w.OnLoad != nil {
			w.OnLoad(url, l)
		}
	default:
		// A newer hub's event kind: skip it, but still resume after it.
	}
	if ev.id != "" {
		w.lastID.Store(&ev.id)
	}
	w.events.Add(1)
	return nil
}
