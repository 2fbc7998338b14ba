package demo

import (
	"math"
	"slices"
	"sync"
	"time"
)

// recorder keeps every request's outcome. Latencies are kept as raw samples
// and sorted for quantiles: a 20 s demo at 300 req/s is 6000 samples, so
// exact quantiles cost nothing worth approximating away.
type recorder struct {
	mu        sync.Mutex
	requests  uint64
	failed    uint64
	errs      []string // the first few failures, for the report
	all       []time.Duration
	perMember map[string]*memberRecord
}

type memberRecord struct {
	served      uint64
	samples     []time.Duration
	first, last time.Duration // offsets from the demo start of the first and last reply
}

const keepErrors = 5

func newRecorder() *recorder {
	return &recorder{perMember: make(map[string]*memberRecord)}
}

// ok records a successful request served by member, which took lat and
// completed at offset at.
func (r *recorder) ok(member string, lat, at time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.all = append(r.all, lat)
	m := r.perMember[member]
	if m == nil {
		m = &memberRecord{first: at}
		r.perMember[member] = m
	}
	m.served++
	m.samples = append(m.samples, lat)
	m.last = at
}

// fail records a failed request.
func (r *recorder) fail(err string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.failed++
	if len(r.errs) < keepErrors {
		r.errs = append(r.errs, err)
	}
}

// memberView is a copy of one member's record with its quantiles.
type memberView struct {
	served      uint64
	p50, p99    time.Duration
	first, last time.Duration
}

// view returns a copy of the totals and of every member's record.
func (r *recorder) view() (requests, failed uint64, p50, p99 time.Duration, members map[string]memberView) {
	r.mu.Lock()
	requests, failed = r.requests, r.failed
	all := slices.Clone(r.all)
	members = make(map[string]memberView, len(r.perMember))
	samples := make(map[string][]time.Duration, len(r.perMember))
	for u, m := range r.perMember {
		members[u] = memberView{served: m.served, first: m.first, last: m.last}
		samples[u] = slices.Clone(m.samples)
	}
	r.mu.Unlock()

	// Sort outside the lock so that the request path never waits on it.
	p50, p99 = quantiles(all)
	for u, s := range samples {
		v := members[u]
		v.p50, v.p99 = quantiles(s)
		members[u] = v
	}
	return
}

func (r *recorder) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

// quantiles sorts s in place and returns its median and 99th percentile by
// the nearest-rank method; zero for no samples.
func quantiles(s []time.Duration) (p50, p99 time.Duration) {
	if len(s) == 0 {
		return 0, 0
	}
	slices.Sort(s)
	return nearestRank(s, 0.50), nearestRank(s, 0.99)
}

// nearestRank returns the smallest sample with at least q of the samples at
// or below it. s must be sorted and non-empty.
func nearestRank(s []time.Duration, q float64) time.Duration {
	// The epsilon keeps 0.99*100 = 99.00000000000001 at rank 99.
	i := int(math.Ceil(q*float64(len(s))-1e-9)) - 1
	return s[min(max(i, 0), len(s)-1)]
}
