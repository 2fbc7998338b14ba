package failsuite

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestRecorderConcurrent(t *testing.T) {
	origin := time.Unix(1000, 0)
	const workers, each = 8, 500
	rec := NewRecorder(origin, workers*each-10) // ten too few: they overflow
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				start := origin.Add(time.Duration(w*each+i) * time.Microsecond)
				slot := rec.Begin(start)
				var err error
				member := fmt.Sprintf("m%d", i%3)
				if i%100 == 0 {
					err, member = errors.New("boom"), ""
				}
				rec.End(slot, start.Add(time.Millisecond), member, 1+i%2, err)
			}
		}()
	}
	wg.Wait()

	rs := rec.Records()
	if len(rs) != workers*each-10 || rec.Overflow() != 10 {
		t.Fatalf("kept %d, overflow %d; want %d and 10", len(rs), rec.Overflow(), workers*each-10)
	}
	members := rec.Members()
	if len(members) != 3 {
		t.Fatalf("members %v, want three", members)
	}
	var ok, failed, attempts int
	for _, r := range rs {
		switch r.Outcome {
		case OK:
			ok++
			if r.Member < 0 || members[r.Member][0] != 'm' {
				t.Fatalf("record %+v names no member", r)
			}
		case Failed:
			failed++
			if r.Member != -1 {
				t.Fatalf("failed record %+v names a member", r)
			}
		default:
			t.Fatalf("record %+v still pending", r)
		}
		if r.Latency() != time.Millisecond {
			t.Fatalf("record %+v: latency %v", r, r.Latency())
		}
		attempts += int(r.Attempts)
	}
	if failed < workers*5-1 || failed > workers*5 {
		t.Errorf("failed = %d, want about %d", failed, workers*5)
	}
	if errs := rec.Errors(); len(errs) != maxErrors || errs[0] != "boom" {
		t.Errorf("errors = %v", errs)
	}
	if attempts < len(rs) || attempts > 2*len(rs) {
		t.Errorf("attempts = %d for %d records", attempts, len(rs))
	}
}

func TestRecorderPendingAndClamp(t *testing.T) {
	origin := time.Unix(0, 0)
	rec := NewRecorder(origin, 2)
	a := rec.Begin(origin.Add(time.Second))
	rec.Begin(origin.Add(2 * time.Second)) // never ended
	rec.End(a, origin.Add(1500*time.Millisecond), "h1", 1000, nil)
	rec.End(-1, origin, "h2", 1, nil) // an overflowed request: ignored
	rs := rec.Records()
	if rs[0].Attempts != 255 || rs[0].Start != time.Second || rs[0].End != 1500*time.Millisecond {
		t.Errorf("record 0 = %+v", rs[0])
	}
	if rs[1].Outcome != Pending || rs[1].Member != -1 {
		t.Errorf("record 1 = %+v, want pending", rs[1])
	}
	if m := rec.Members(); len(m) != 1 {
		t.Errorf("members = %v", m)
	}
}

func BenchmarkRecorder(b *testing.B) {
	origin := time.Now()
	rec := NewRecorder(origin, b.N)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := rec.Begin(origin)
			rec.End(i, origin, "http://10.77.0.2:8080", 1, nil)
		}
	})
}
