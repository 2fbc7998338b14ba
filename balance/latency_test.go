package balance_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
)

// bucketRatio is the width of a latency bucket: 2^(1/8), about 9%.
var bucketRatio = math.Exp2(1.0 / 8)

// TestLatencyQuantiles compares Quantile with the exact nearest-rank
// quantile of the same samples: the answer is the upper edge of the
// bucket holding the exact one, so it is at least the exact value and less
// than one bucket above it.
func TestLatencyQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, dist := range []struct {
		name string
		gen  func() time.Duration
	}{
		{"lognormal around 5ms", func() time.Duration {
			return time.Duration(math.Exp(r.NormFloat64()+math.Log(5000))) * time.Microsecond
		}},
		{"uniform 1µs..1s", func() time.Duration { return time.Duration(1+r.IntN(1e6)) * time.Microsecond }},
		{"bimodal", func() time.Duration {
			if r.IntN(20) == 0 {
				return time.Duration(200+r.IntN(100)) * time.Millisecond
			}
			return time.Duration(1000+r.IntN(500)) * time.Microsecond
		}},
		{"constant", func() time.Duration { return 1234 * time.Microsecond }},
	} {
		for _, n := range []int{1, 7, 100, 10000} {
			l := balance.NewLatency(time.Second, 0)
			samples := make([]time.Duration, n)
			for i := range samples {
				samples[i] = dist.gen()
				l.Record(int64(i), samples[i])
			}
			slices.Sort(samples)
			for _, q := range []float64{0.01, 0.5, 0.9, 0.95, 0.99, 0.999} {
				got, count := l.Quantile(int64(n), q)
				if count != uint64(n) {
					t.Fatalf("%s n=%d: count %d", dist.name, n, count)
				}
				want := samples[int(math.Ceil(q*float64(n)))-1]
				if float64(got) < float64(want) || float64(got) > float64(want)*bucketRatio*(1+1e-9) {
					t.Errorf("%s n=%d q=%v: got %v, exact %v", dist.name, n, q, got, want)
				}
			}
		}
	}
}

func TestLatencyEdges(t *testing.T) {
	l := balance.NewLatency(0, 0) // default window
	if q, n := l.Quantile(0, 0.5); q != 0 || n != 0 {
		t.Fatalf("empty tracker: %v, %d", q, n)
	}
	// Below a microsecond everything shares the first bucket.
	l.Record(0, 0)
	l.Record(0, 300*time.Nanosecond)
	if q, _ := l.Quantile(0, 0.99); q < time.Microsecond || q > 2*time.Microsecond {
		t.Fatalf("sub-µs samples: %v", q)
	}
	// Beyond the last bucket samples are clamped, not lost.
	l = balance.NewLatency(time.Second, 0)
	l.Record(0, 1000*time.Hour)
	if q, n := l.Quantile(0, 0.5); n != 1 || q < 18*time.Hour {
		t.Fatalf("huge sample: %v, %d", q, n)
	}
}

// TestLatencyWindows: a sample counts for at least one window and at most
// two, so old latencies fade out.
func TestLatencyWindows(t *testing.T) {
	const w = int64(10 * time.Second)
	l := balance.NewLatency(time.Duration(w), 0)
	l.Record(1*sec, 100*time.Millisecond)
	check := func(now int64, wantN uint64, wantMax time.Duration) {
		t.Helper()
		q, n := l.Quantile(now, 0.999)
		if n != wantN || (n > 0 && (q < wantMax || float64(q) > float64(wantMax)*bucketRatio)) {
			t.Fatalf("at %v: %v over %d samples, want %v over %d", time.Duration(now), q, n, wantMax, wantN)
		}
	}
	check(9*sec, 1, 100*time.Millisecond)
	// Window 1 ends at 10s; the sample moves to the previous window.
	l.Record(12*sec, time.Millisecond)
	check(12*sec, 2, 100*time.Millisecond)
	check(19*sec, 2, 100*time.Millisecond)
	// The second rotation (at 22s, a window after the first) drops it.
	check(22*sec, 1, time.Millisecond)
	// A long idle gap drops everything at once.
	check(60*sec, 0, 0)
	l.Record(61*sec, 5*time.Millisecond)
	check(61*sec, 1, 5*time.Millisecond)
}

func TestLatencyConcurrent(t *testing.T) {
	l := balance.NewLatency(time.Millisecond, 0)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5000 {
				now := int64(i * 1000)
				l.Record(now, time.Duration(g+1)*time.Millisecond)
				if i%100 == 0 {
					if q, n := l.Quantile(now, 0.5); n > 0 && (q < time.Millisecond || q > 5*time.Millisecond) {
						t.Errorf("quantile %v out of the recorded range", q)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkLatencyRecord(b *testing.B) {
	l := balance.NewLatency(time.Second, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int64(0)
		for pb.Next() {
			i++
			l.Record(i, time.Duration(i%10000)*time.Microsecond)
		}
	})
}
