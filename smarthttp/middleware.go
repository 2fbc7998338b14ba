package smarthttp

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/wire"
)

// Middleware makes a server one of the paper's modified servers: every
// reply carries the member's load record (wire.LoadHeader) and, if Members
// is set, the membership record (wire.MembersHeader), which Transport hands
// to its director. Set the fields before Wrap and leave them alone after;
// the zero value reports load with an unknown capacity.
//
// The load record is measured when the reply's header is written (or, for
// a handler that writes nothing, when it returns): q is the number of
// requests in the wrapped handler at that moment, this one included, so a
// client can subtract its own outstanding requests to learn about the
// others'. l is the member's own service time: a time-weighted moving
// average of how long the wrapped handler took to return, over the
// requests that finished before this reply (LatencyDecay). A director uses it
// as the first cost guess for a member it has not measured itself, so a
// member it just learned of is neither flooded nor starved.
type Middleware struct {
	// Capacity is how many requests the member serves at once; 0 means
	// unknown. Util is reported as in-flight/Capacity, or 0 when Capacity
	// is unknown. Range 0..wire.MaxInFlight (see Validate).
	Capacity int
	// Members, if set, returns the membership record to piggy-back, or
	// false to send none on this reply. It is called for every reply, from
	// many goroutines, and must be cheap. Its epoch is also sent in the
	// load record, so clients can tell they are behind.
	Members func() (wire.Members, bool)
	// Draining, if set, reports whether the member is draining: it finishes
	// its work but wants no new work. Called for every reply. Middleware
	// only reports the state; a handler that refuses new work while
	// draining should answer 503, which Transport then re-sends elsewhere
	// as not processed.
	Draining func() bool
	// Clock returns the time stamped on load records and used to time
	// handlers. Default time.Now.
	Clock func() time.Time
	// LatencyDecay is the time constant of the service-time average: a
	// sample's weight is 1-exp(-Δt/LatencyDecay), Δt being the time since
	// the previous sample, so the average follows the last few seconds
	// whatever the request rate. Default 5s.
	LatencyDecay time.Duration

	inflight atomic.Int64
	latency  serviceTime
}

// serviceTime is a time-weighted moving average of handler durations.
type serviceTime struct {
	mu    sync.Mutex
	avgNs float64
	last  time.Time // time of the last sample; zero before the first
}

// add folds in one handler duration d that ended at now.
func (s *serviceTime) add(now time.Time, d, tau time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last.IsZero() {
		s.avgNs, s.last = float64(d), now
		return
	}
	dt := now.Sub(s.last)
	if dt < 0 {
		dt = 0 // samples from handlers that overlap end out of order
	} else {
		s.last = now
	}
	w := 1 - math.Exp(-float64(dt)/float64(tau))
	s.avgNs += (float64(d) - s.avgNs) * w
}

// micros returns the average in microseconds, 0 before the first sample,
// and at least 1 after it, since 0 means unknown on the wire.
func (s *serviceTime) micros() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last.IsZero() {
		return 0
	}
	us := int64(s.avgNs / 1e3)
	return min(max(us, 1), wire.MaxLatencyMicros)
}

// ServiceTime returns the member's recent service time as reported in l=,
// 0 before any request has finished.
func (m *Middleware) ServiceTime() time.Duration {
	return time.Duration(m.latency.micros()) * time.Microsecond
}

func (m *Middleware) now() time.Time {
	if m.Clock != nil {
		return m.Clock()
	}
	return time.Now()
}

// Validate reports a field outside its range. Wrap does not check: a bad
// value is sent as it is and refused by the receiving clients.
func (m *Middleware) Validate() error {
	if m.Capacity < 0 || m.Capacity > wire.MaxInFlight {
		return fmt.Errorf("smarthttp: Middleware.Capacity %d must be in 0..%d", m.Capacity, wire.MaxInFlight)
	}
	if m.LatencyDecay < 0 {
		return fmt.Errorf("smarthttp: Middleware.LatencyDecay %v must be >= 0", m.LatencyDecay)
	}
	return nil
}

// InFlight returns the number of requests in the wrapped handlers now.
func (m *Middleware) InFlight() int { return int(m.inflight.Load()) }

// Wrap returns a handler that runs h and adds the records to its replies.
// The ResponseWriter h sees still offers http.Flusher, http.Hijacker and
// io.ReaderFrom, and unwraps for http.ResponseController.
func (m *Middleware) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.inflight.Add(1)
		start := m.now()
		defer func() {
			end := m.now()
			tau := m.LatencyDecay
			if tau <= 0 {
				tau = 5 * time.Second
			}
			m.latency.add(end, end.Sub(start), tau)
			m.inflight.Add(-1)
		}()
		lw := &loadWriter{ResponseWriter: w, m: m}
		h.ServeHTTP(lw, r)
		// net/http writes the header of a handler that wrote nothing after
		// it returns; the records must be in the map by then.
		lw.stamp()
	})
}

// load returns the member's load record now.
func (m *Middleware) load() wire.Load {
	q := min(int(m.inflight.Load()), wire.MaxInFlight)
	l := wire.Load{TimeMillis: m.now().UnixMilli(), InFlight: q, Capacity: m.Capacity,
		LatencyMicros: m.latency.micros()}
	if m.Capacity > 0 {
		// Beyond MaxUtil a report would be refused; "a thousand times
		// over capacity" says enough.
		l.Util = min(float64(q)/float64(m.Capacity), wire.MaxUtil)
	}
	if m.Draining != nil && m.Draining() {
		l.State = wire.StateDraining
	}
	return l
}

// stampHeader puts the records in h. The header names are canonical, so
// the map is written directly.
func (m *Middleware) stampHeader(h http.Header) {
	l := m.load()
	if m.Members != nil {
		if ms, ok := m.Members(); ok {
			l.Epoch = ms.Epoch
			h[wire.MembersHeader] = []string{ms.String()}
		}
	}
	var buf [128]byte
	h[wire.LoadHeader] = []string{string(wire.AppendLoad(buf[:0], l))}
}

// loadWriter adds the records to the header just before it is written.
type loadWriter struct {
	http.ResponseWriter
	m       *Middleware
	stamped bool
}

func (w *loadWriter) stamp() {
	if !w.stamped {
		w.stamped = true
		w.m.stampHeader(w.ResponseWriter.Header())
	}
}

func (w *loadWriter) WriteHeader(code int) {
	// Informational replies come before the real one; 101 is final.
	if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
		w.stamp()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *loadWriter) Write(p []byte) (int, error) {
	w.stamp()
	return w.ResponseWriter.Write(p)
}

// Flush implements http.Flusher; it does nothing if the underlying writer
// cannot flush.
func (w *loadWriter) Flush() {
	w.stamp()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker; it fails with http.ErrNotSupported if the
// underlying writer cannot hijack (HTTP/2).
func (w *loadWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.stamped = true // no header will be written
	}
	return c, rw, err
}

// ReadFrom implements io.ReaderFrom, keeping net/http's sendfile path.
func (w *loadWriter) ReadFrom(r io.Reader) (int64, error) {
	w.stamp()
	return io.Copy(w.ResponseWriter, r)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *loadWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
