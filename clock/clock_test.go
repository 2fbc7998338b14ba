package clock_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/smartclient/smartclient/clock"
)

var start = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// recorder notes which timers ran, and at what fake time.
type recorder struct {
	c    *clock.Fake
	mu   sync.Mutex
	runs []string
	at   []time.Duration
}

func (r *recorder) fn(name string) func() {
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.runs = append(r.runs, name)
		r.at = append(r.at, r.c.Now().Sub(start))
	}
}

func TestFakeOrdering(t *testing.T) {
	c := clock.NewFake(start)
	r := &recorder{c: c}
	c.AfterFunc(30*time.Millisecond, r.fn("c30"))
	c.AfterFunc(10*time.Millisecond, r.fn("a10"))
	c.AfterFunc(20*time.Millisecond, r.fn("b20-first"))
	c.AfterFunc(20*time.Millisecond, r.fn("b20-second")) // same time: scheduling order
	c.AfterFunc(50*time.Millisecond, r.fn("e50"))
	if c.Pending() != 5 {
		t.Fatalf("Pending = %d", c.Pending())
	}
	c.Advance(9 * time.Millisecond)
	if len(r.runs) != 0 || c.Now() != start.Add(9*time.Millisecond) {
		t.Fatalf("ran %v early, now %v", r.runs, c.Now())
	}
	c.Advance(21 * time.Millisecond) // to 30ms: the due time is inclusive
	want := []string{"a10", "b20-first", "b20-second", "c30"}
	if !slices.Equal(r.runs, want) {
		t.Fatalf("ran %v, want %v", r.runs, want)
	}
	// Each ran with the clock at its own due time, not at the end.
	if wantAt := []time.Duration{10e6, 20e6, 20e6, 30e6}; !slices.Equal(r.at, wantAt) {
		t.Fatalf("ran at %v, want %v", r.at, wantAt)
	}
	if c.Now() != start.Add(30*time.Millisecond) || c.Pending() != 1 {
		t.Fatalf("now %v pending %d", c.Now(), c.Pending())
	}
	c.Advance(time.Hour)
	if r.runs[len(r.runs)-1] != "e50" || c.Pending() != 0 || c.Now() != start.Add(30*time.Millisecond+time.Hour) {
		t.Fatalf("ran %v, now %v", r.runs, c.Now())
	}
}

func TestFakeStop(t *testing.T) {
	c := clock.NewFake(start)
	r := &recorder{c: c}
	a := c.AfterFunc(10*time.Millisecond, r.fn("a"))
	b := c.AfterFunc(20*time.Millisecond, r.fn("b"))
	d := c.AfterFunc(30*time.Millisecond, r.fn("d"))
	if !b.Stop() {
		t.Fatal("Stop of a pending timer = false")
	}
	if b.Stop() {
		t.Fatal("second Stop = true")
	}
	if c.Pending() != 2 {
		t.Fatalf("Pending = %d", c.Pending())
	}
	c.Advance(time.Second)
	if !slices.Equal(r.runs, []string{"a", "d"}) {
		t.Fatalf("ran %v", r.runs)
	}
	if a.Stop() || d.Stop() {
		t.Fatal("Stop after the call = true")
	}
	// Stopping one timer from inside another that falls due first.
	var late clock.Timer
	c.AfterFunc(time.Millisecond, func() {
		if !late.Stop() {
			t.Error("Stop from a callback = false")
		}
	})
	late = c.AfterFunc(2*time.Millisecond, r.fn("late"))
	c.Advance(time.Second)
	if slices.Contains(r.runs, "late") {
		t.Fatal("a timer stopped by an earlier callback ran")
	}
}

// TestFakeChained: a function that schedules another (as a ticker that
// re-arms itself does) has it run in the same Advance if it falls due
// before the end, in time order with the timers already pending.
func TestFakeChained(t *testing.T) {
	c := clock.NewFake(start)
	r := &recorder{c: c}
	var tick func()
	n := 0
	tick = func() {
		n++
		r.fn("tick")()
		c.AfterFunc(10*time.Millisecond, tick)
	}
	c.AfterFunc(10*time.Millisecond, tick)
	c.AfterFunc(25*time.Millisecond, r.fn("other"))
	// A callback that schedules with no delay runs within the same Advance.
	c.AfterFunc(15*time.Millisecond, func() { c.AfterFunc(0, r.fn("now")) })
	c.Advance(45 * time.Millisecond)
	want := []string{"tick", "now", "tick", "other", "tick", "tick"}
	if !slices.Equal(r.runs, want) {
		t.Fatalf("ran %v, want %v", r.runs, want)
	}
	if wantAt := []time.Duration{10e6, 15e6, 20e6, 25e6, 30e6, 40e6}; !slices.Equal(r.at, wantAt) {
		t.Fatalf("ran at %v, want %v", r.at, wantAt)
	}
	if c.Pending() != 1 { // the tick at 50ms
		t.Fatalf("Pending = %d", c.Pending())
	}
}

// TestFakeConcurrent: AfterFunc, Stop and Now from other goroutines while
// Advance runs, for -race.
func TestFakeConcurrent(t *testing.T) {
	c := clock.NewFake(start)
	var mu sync.Mutex
	ran, stopped := 0, 0
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				tm := c.AfterFunc(time.Duration(i%7)*time.Millisecond, func() {
					mu.Lock()
					ran++
					mu.Unlock()
				})
				if i%3 == 0 && tm.Stop() {
					mu.Lock()
					stopped++
					mu.Unlock()
				}
				c.Now()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 500 {
			c.Advance(time.Millisecond)
		}
	}()
	wg.Wait()
	c.Advance(time.Second)
	if c.Pending() != 0 {
		t.Fatalf("Pending = %d after advancing past everything", c.Pending())
	}
	mu.Lock()
	defer mu.Unlock()
	// Every timer either ran once or was stopped.
	if ran+stopped != 4*500 || stopped == 0 {
		t.Fatalf("ran %d, stopped %d, want 2000 in all", ran, stopped)
	}
}

// TestReal checks that Real is the system clock and its AfterFunc fires.
func TestReal(t *testing.T) {
	var c clock.Clock = clock.Real{}
	before := time.Now()
	if now := c.Now(); now.Before(before) {
		t.Fatal("Real.Now before time.Now")
	}
	done := make(chan struct{})
	c.AfterFunc(time.Millisecond, func() { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Real.AfterFunc did not fire")
	}
	stopped := c.AfterFunc(time.Hour, func() { t.Error("stopped timer ran") })
	if !stopped.Stop() {
		t.Fatal("Stop of a pending real timer = false")
	}
}
