package failsuite

import (
	"sync"
	"sync/atomic"
	"time"
)

// Outcome is how a request ended.
type Outcome uint8

const (
	// Pending: begun, not ended. A finished run has none; Analyze counts
	// any left as failed.
	Pending Outcome = iota
	// OK: a reply the service meant (status below 500).
	OK
	// Failed: an error, a timeout, or a 5xx reply.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	}
	return "pending"
}

// Record is one request. Times are offsets from the Recorder's origin.
type Record struct {
	// Start is when the load driver scheduled the request, not when it got
	// round to sending it: a driver that falls behind adds its lateness to
	// the latency instead of hiding it (no coordinated omission).
	Start time.Duration
	End   time.Duration
	// Member indexes Recorder.Members: who answered; -1 if nobody did.
	Member int16
	// Attempts sent for this request, hedges included; 0 when the client
	// cannot tell (through the proxy, which counts them itself).
	Attempts uint8
	Outcome  Outcome
}

// Latency is End-Start.
func (r Record) Latency() time.Duration { return r.End - r.Start }

// Recorder keeps every request of one run. Begin and End are safe for
// concurrent use and cheap: one atomic add, and a write into the request's
// own preallocated slot; only naming a member seen for the first time and
// keeping an error sample take a lock. Records must be read only after
// every End has returned (the load driver waits for that).
type Recorder struct {
	origin   time.Time
	slots    []Record
	next     atomic.Int64
	overflow atomic.Int64

	mu      sync.RWMutex
	members []string
	index   map[string]int16
	errs    []string
}

// maxErrors bounds the error samples a Recorder keeps.
const maxErrors = 8

// NewRecorder returns a Recorder with room for capacity requests, whose
// times are measured from origin. Requests beyond capacity are counted
// (Overflow) but not kept.
func NewRecorder(origin time.Time, capacity int) *Recorder {
	return &Recorder{origin: origin, slots: make([]Record, capacity), index: map[string]int16{}}
}

// Origin is the time records are measured from.
func (r *Recorder) Origin() time.Time { return r.origin }

// Since returns t as an offset from the origin.
func (r *Recorder) Since(t time.Time) time.Duration { return t.Sub(r.origin) }

// Begin claims a slot for a request scheduled at start and returns its
// number, or -1 when the Recorder is full.
func (r *Recorder) Begin(start time.Time) int {
	i := r.next.Add(1) - 1
	if i >= int64(len(r.slots)) {
		r.overflow.Add(1)
		return -1
	}
	r.slots[i] = Record{Start: start.Sub(r.origin), Member: -1}
	return int(i)
}

// End completes slot i: the request ended at end, answered by member ("" if
// nobody answered), after attempts attempts (0: unknown), with err nil on
// success. A slot of -1 is ignored.
func (r *Recorder) End(i int, end time.Time, member string, attempts int, err error) {
	if i < 0 {
		return
	}
	s := &r.slots[i]
	s.End = end.Sub(r.origin)
	s.Member = r.memberIndex(member)
	s.Attempts = uint8(min(max(attempts, 0), 255))
	s.Outcome = OK
	if err != nil {
		s.Outcome = Failed
		r.mu.Lock()
		if len(r.errs) < maxErrors {
			r.errs = append(r.errs, err.Error())
		}
		r.mu.Unlock()
	}
}

func (r *Recorder) memberIndex(name string) int16 {
	if name == "" {
		return -1
	}
	r.mu.RLock()
	i, ok := r.index[name]
	r.mu.RUnlock()
	if ok {
		return i
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.index[name]; ok {
		return i
	}
	if len(r.members) >= 1<<15-1 {
		return -1
	}
	i = int16(len(r.members))
	r.members = append(r.members, name)
	r.index[name] = i
	return i
}

// Records returns the requests begun, in the order they were begun. Call it
// only once every End has returned.
func (r *Recorder) Records() []Record {
	n := min(r.next.Load(), int64(len(r.slots)))
	return r.slots[:n:n]
}

// Members returns the member names Record.Member indexes.
func (r *Recorder) Members() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]string(nil), r.members...)
}

// Errors returns the first few errors recorded.
func (r *Recorder) Errors() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]string(nil), r.errs...)
}

// Overflow is how many requests found the Recorder full.
func (r *Recorder) Overflow() int64 { return r.overflow.Load() }
