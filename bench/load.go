package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sample is one request's outcome. Latency runs from the request's
// scheduled start (not from when the generator got round to it), so a
// stalled generator or client cannot hide queueing: no coordinated
// omission.
type sample struct {
	lat time.Duration
	err error
}

// doFunc sends one request with client c and reports its error; nil only
// for a complete 200 reply.
type doFunc func(ctx context.Context, c int) error

// getter returns a doFunc that GETs url with the target's clients.
func getter(clients []*http.Client, url string) doFunc {
	return func(ctx context.Context, c int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := clients[c].Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return err
	}
}

// openLoopPlan is one open-loop run: requests at a fixed arrival rate
// (evenly spaced) for warm+window; the first warm's worth are not counted.
type openLoopPlan struct {
	rate          float64
	warm, window  time.Duration
	timeout       time.Duration // a request not done this long after its scheduled start failed
	clients       int           // request i goes to client i % clients
	onWindowStart func()        // called once the first counted request is due
	events        []event       // run at offsets into the window
}

type event struct {
	at time.Duration
	fn func()
}

// openLoop runs the plan and returns the counted samples. It returns
// early, with what it has, if ctx ends.
func openLoop(ctx context.Context, p openLoopPlan, do doFunc) []sample {
	nwarm := int(p.rate * p.warm.Seconds())
	n := nwarm + int(p.rate*p.window.Seconds())
	interval := time.Duration(float64(time.Second) / p.rate)
	out := make([]sample, n)
	var wg sync.WaitGroup
	start := time.Now()
	windowStart := start.Add(time.Duration(nwarm) * interval)
	evs := slices.Clone(p.events)
	slices.SortFunc(evs, func(a, b event) int { return int(a.at - b.at) })
	sent := 0
loop:
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				break loop
			case <-t.C:
			}
		}
		if i == nwarm && p.onWindowStart != nil {
			p.onWindowStart()
		}
		for len(evs) > 0 && !windowStart.Add(evs[0].at).After(time.Now()) {
			go evs[0].fn()
			evs = evs[1:]
		}
		wg.Add(1)
		sent++
		go func(i int, at time.Time) {
			defer wg.Done()
			rctx, cancel := context.WithDeadline(ctx, at.Add(p.timeout))
			err := do(rctx, i%p.clients)
			lat := time.Since(at)
			if err == nil && lat > p.timeout {
				err = errTimeout // finished, but too late to count
			} else if err != nil && rctx.Err() != nil && ctx.Err() == nil {
				err = errTimeout
			}
			cancel()
			out[i] = sample{lat: lat, err: err}
		}(i, at)
	}
	wg.Wait()
	if sent < nwarm {
		return nil
	}
	return out[nwarm:sent]
}

var errTimeout = errors.New("timeout")

// closedLoopPlan is a closed-loop run: workers each send a request as soon
// as the previous one finished, for warm+window; only requests started in
// the window count.
type closedLoopPlan struct {
	workers       int
	warm, window  time.Duration
	timeout       time.Duration
	clients       int
	onWindowStart func()
}

func closedLoop(ctx context.Context, p closedLoopPlan, do doFunc) (samples []sample, elapsed time.Duration) {
	start := time.Now()
	winStart := start.Add(p.warm)
	end := winStart.Add(p.window)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var started atomic.Bool
	for w := 0; w < p.workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var mine []sample
			for ctx.Err() == nil {
				now := time.Now()
				if !now.Before(end) {
					break
				}
				counted := !now.Before(winStart)
				if counted && started.CompareAndSwap(false, true) && p.onWindowStart != nil {
					p.onWindowStart()
				}
				rctx, cancel := context.WithTimeout(ctx, p.timeout)
				err := do(rctx, w%p.clients)
				cancel()
				if counted {
					mine = append(mine, sample{lat: time.Since(now), err: err})
				}
			}
			mu.Lock()
			samples = append(samples, mine...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	return samples, time.Since(winStart)
}

// summary condenses samples.
type summary struct {
	offered, ok, failed int
	// quantiles of the time to a successful reply, a failed request
	// counting as never: +Inf when more than 1-q of requests failed.
	p50, p99, p999 time.Duration
	okP99          time.Duration // p99 over successful requests only
	errs           map[string]int
	curve          []quantilePoint // for plots
}

type quantilePoint struct {
	Q  float64 `json:"q"`
	Ms float64 `json:"ms"` // +Inf encoded as -1
}

const never = time.Duration(math.MaxInt64)

func summarize(s []sample) summary {
	sum := summary{offered: len(s), errs: map[string]int{}}
	var lats []time.Duration
	for _, x := range s {
		if x.err == nil {
			sum.ok++
			lats = append(lats, x.lat)
		} else {
			sum.failed++
			sum.errs[errKind(x.err)]++
		}
	}
	slices.Sort(lats)
	q := func(q float64, n int) time.Duration {
		if n == 0 {
			return never
		}
		k := int(math.Ceil(q*float64(n))) - 1
		k = max(k, 0)
		if k >= len(lats) {
			return never
		}
		return lats[k]
	}
	sum.p50, sum.p99, sum.p999 = q(0.5, len(s)), q(0.99, len(s)), q(0.999, len(s))
	sum.okP99 = q(0.99, len(lats))
	for _, qq := range []float64{0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999} {
		v := q(qq, len(s))
		ms := -1.0
		if v != never {
			ms = float64(v) / 1e6
		}
		sum.curve = append(sum.curve, quantilePoint{Q: qq, Ms: ms})
	}
	return sum
}

// errKind shortens an error for counting: the innermost message, without
// addresses that differ per request.
func errKind(err error) string {
	if errors.Is(err, errTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	s := err.Error()
	for _, k := range []string{"connection refused", "connection reset", "EOF", "status 5", "status 4", "no such host", "i/o timeout", "broken pipe"} {
		if i := strings.Index(s, k); i >= 0 {
			if strings.HasPrefix(k, "status") {
				return s[i:min(len(s), i+10)]
			}
			return k
		}
	}
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}
