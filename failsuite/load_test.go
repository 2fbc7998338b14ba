package failsuite

import (
	"context"
	"encoding/json"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/smarthttp"
)

// TestOfferLoopback drives load through the library client at two loopback
// members, crashes one half-way, and checks the whole measuring chain:
// recorder, analysis, JSON and PNG. The testbed's scenarios reuse it all.
func TestOfferLoopback(t *testing.T) {
	var servers []*httptest.Server
	var members []balance.Member
	for _, name := range []string{"a", "b"} {
		mw := &smarthttp.Middleware{Capacity: 16}
		s := httptest.NewServer(mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(MemberHeader, name)
			w.Write([]byte("ok"))
		})))
		t.Cleanup(s.Close)
		servers = append(servers, s)
		members = append(members, balance.Member{URL: s.URL})
	}
	d, err := director.New(director.Config{Policy: "round-robin", AttemptTimeout: 500 * time.Millisecond}, members)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	client, base := NewLibraryClient(d)
	t.Cleanup(base.CloseIdleConnections)

	origin := time.Now()
	rec := NewRecorder(origin, 1000)
	load := LoadSpec{Rate: 400, Timeout: time.Second}
	done, stop := make(chan time.Time, 1), make(chan struct{})
	go func() {
		done <- Offer(context.Background(), &HTTPTarget{Client: client, URL: "http://service/"}, rec, load, origin, stop)
	}()
	// Crash b once 200 requests have been scheduled (0.5 s).
	waitFor(t, func() bool { return rec.next.Load() >= 200 })
	faultStart := rec.Since(time.Now())
	servers[1].CloseClientConnections()
	servers[1].Close()
	faultEnd := rec.Since(time.Now())
	waitFor(t, func() bool { return rec.next.Load() >= 480 })
	close(stop)
	n := len(rec.Records())
	if end := rec.Since(<-done); end != time.Duration(n)*2500*time.Microsecond {
		t.Errorf("Offer ended at %v after %d requests; want the next one's schedule", end, n)
	}

	if n < 480 {
		t.Errorf("recorded %d requests, want at least 480 (1.2 s at 400/s)", n)
	}
	r, err := Analyze(Input{
		Scenario: "loopback/crash", Records: rec.Records(), Members: rec.Members(), Errors: rec.Errors(),
		Phases: Phases{Begin: 100 * time.Millisecond, FaultStart: faultStart, FaultEnd: faultEnd, End: rec.Since(origin.Add(time.Duration(n) * 2500 * time.Microsecond)), Margin: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r.Line())
	if r.Failed != 0 {
		t.Errorf("%d requests failed: %v", r.Failed, r.Errors)
	}
	if r.Attempts < int64(r.Requests) {
		t.Errorf("attempts %d < requests %d: the counting transport missed some", r.Attempts, r.Requests)
	}
	if r.Before.N == 0 || r.After.N == 0 {
		t.Errorf("phases empty: %+v", r)
	}
	var after MemberCount
	for _, m := range r.Members {
		if m.Name == "b" {
			after = m
		}
	}
	if after.Before == 0 || after.After != 0 {
		t.Errorf("member b: %+v; want requests before the crash and none after", after)
	}

	dir := t.TempDir()
	if d := os.Getenv("FAILSUITE_KEEP"); d != "" {
		dir = d
	}
	if err := WriteJSON(filepath.Join(dir, "results.json"), Results{Reports: []Report{r}}); err != nil {
		t.Fatal(err)
	}
	var back Results
	if b, err := os.ReadFile(filepath.Join(dir, "results.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &back); err != nil || len(back.Reports) != 1 || back.Reports[0].Requests != r.Requests {
		t.Fatalf("results.json round trip: %v, %+v", err, back)
	}
	pngPath := filepath.Join(dir, "fig.png")
	panel := Panel{Title: "loopback crash", Records: rec.Records(), Report: r,
		Phases: Phases{Begin: 100 * time.Millisecond, FaultStart: faultStart, FaultEnd: faultEnd, End: 1200 * time.Millisecond}}
	if err := WritePlot(pngPath, "test", []Panel{panel, panel, panel}, 2); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 300 {
		t.Errorf("plot is %v", b)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("condition not met within 10s")
		}
	}
}
