package balance

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Latency tracks the distribution of recent attempt latencies in log-scale
// buckets (about 9% wide), over two rotating windows so that old latencies
// fade. It sets hedging delays. Record is lock-free; time is passed in.
type Latency struct {
	window int64
	start  atomic.Int64
	cur    atomic.Pointer[latBuckets]
	prev   atomic.Pointer[latBuckets]
}

// Buckets cover 1µs·2^(i/8); 8 per doubling, 36 doublings (1µs to ~19h).
const (
	latSub   = 8
	latCount = latSub * 36
)

type latBuckets struct {
	n [latCount]atomic.Uint64
}

// NewLatency returns a tracker whose windows last window (default 10s if 0).
func NewLatency(window time.Duration, now int64) *Latency {
	if window <= 0 {
		window = 10 * time.Second
	}
	l := &Latency{window: int64(window)}
	l.start.Store(now)
	l.cur.Store(new(latBuckets))
	l.prev.Store(new(latBuckets))
	return l
}

func latIndex(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if us < 1 {
		return 0
	}
	// floor(log2(us)) doublings, then 8 linear-in-log sub-steps.
	exp := bits.Len64(us) - 1
	frac := float64(us)/float64(uint64(1)<<exp) - 1 // [0,1)
	i := exp*latSub + int(math.Log2(1+frac)*latSub)
	return min(i, latCount-1)
}

func latValue(i int) time.Duration {
	// upper edge of bucket i
	return time.Duration(math.Exp2(float64(i+1)/latSub) * float64(time.Microsecond))
}

// Record adds one latency sample taken at now.
func (l *Latency) Record(now int64, d time.Duration) {
	l.rotate(now)
	l.cur.Load().n[latIndex(d)].Add(1)
}

func (l *Latency) rotate(now int64) {
	s := l.start.Load()
	if now-s < l.window || !l.start.CompareAndSwap(s, now) {
		return
	}
	old := l.cur.Swap(new(latBuckets))
	if now-s >= 2*l.window {
		old = new(latBuckets) // nothing recent enough to keep
	}
	l.prev.Store(old)
}

// Quantile returns the q-quantile (0 < q < 1) of the samples in the current
// and previous windows, and the number of samples it is based on.
func (l *Latency) Quantile(now int64, q float64) (time.Duration, uint64) {
	l.rotate(now)
	cur, prev := l.cur.Load(), l.prev.Load()
	var counts [latCount]uint64
	var total uint64
	for i := range counts {
		c := cur.n[i].Load() + prev.n[i].Load()
		counts[i] = c
		total += c
	}
	if total == 0 {
		return 0, 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return latValue(i), total
		}
	}
	return latValue(latCount - 1), total
}
