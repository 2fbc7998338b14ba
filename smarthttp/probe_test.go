package smarthttp

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

func probeClient(t *testing.T) *http.Client {
	tr := NewBaseTransport()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestProber(t *testing.T) {
	var draining bool
	mw := &Middleware{Capacity: 4, Draining: func() bool { return draining }}
	var gotPath atomic.Value
	srv := httptest.NewServer(mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath.Store(r.URL.Path)
		switch r.URL.Path {
		case "/api/broken":
			http.Error(w, "down", http.StatusInternalServerError)
		case "/api/missing":
			http.NotFound(w, r)
		default:
			w.Write([]byte(strings.Repeat("x", 1<<20))) // longer than maxProbeBody
		}
	})))
	defer srv.Close()
	m := balance.Member{URL: srv.URL + "/api"}
	ctx := context.Background()
	c := probeClient(t)

	for _, tc := range []struct {
		path     string
		draining bool
		wantErr  string
	}{
		{"/healthz", false, ""},
		{"/missing", false, ""}, // the member answered: alive, whatever the path
		{"/broken", false, "status 500"},
		{"/healthz", true, "draining"},
	} {
		draining = tc.draining
		err := (&Prober{Client: c, Path: tc.path}).Probe(ctx, m)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("probe %s draining=%v: %v, want %q", tc.path, tc.draining, err, tc.wantErr)
		}
		if gotPath.Load() != "/api"+tc.path {
			t.Errorf("probe went to %q, want the member's prefix joined with %q", gotPath, tc.path)
		}
	}
	srv.Close()
	if err := (&Prober{Client: c}).Probe(ctx, m); err == nil {
		t.Error("probe of a closed server succeeded")
	}
}

func TestLoadPoller(t *testing.T) {
	mw := &Middleware{Capacity: 8}
	srv := httptest.NewServer(mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	defer srv.Close()
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.Header().Set(wire.LoadHeader, "v=1;t=1;q=-5")
		}
		if r.URL.Path == "/two" {
			w.Header().Add(wire.LoadHeader, "v=1;t=1")
			w.Header().Add(wire.LoadHeader, "v=1;t=2")
		}
	}))
	defer bare.Close()
	c := probeClient(t)
	ctx := context.Background()

	l, err := (&LoadPoller{Client: c, Path: "/load"}).PollLoad(ctx, balance.Member{URL: srv.URL})
	if err != nil || l.Capacity != 8 || l.InFlight != 1 || l.TimeMillis <= 0 {
		t.Fatalf("PollLoad = %+v, %v; want capacity 8, the poll itself in flight", l, err)
	}
	if _, err := (&LoadPoller{Client: c}).PollLoad(ctx, balance.Member{URL: bare.URL}); !errors.Is(err, ErrNoLoad) {
		t.Errorf("no header: %v, want ErrNoLoad", err)
	}
	if _, err := (&LoadPoller{Client: c, Path: "/bad"}).PollLoad(ctx, balance.Member{URL: bare.URL}); !errors.Is(err, wire.ErrOutOfRange) {
		t.Errorf("hostile header: %v, want wire.ErrOutOfRange", err)
	}
	if _, err := (&LoadPoller{Client: c, Path: "/two"}).PollLoad(ctx, balance.Member{URL: bare.URL}); err == nil {
		t.Error("two load headers accepted")
	}
}

// TestPollingDirector: a director with a LoadPoller learns every member's
// load without sending any request, and counts a member that cannot be
// polled.
func TestPollingDirector(t *testing.T) {
	mw := &Middleware{Capacity: 3}
	srv := httptest.NewServer(mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	defer srv.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	d, err := director.New(director.Config{
		Poller:       &LoadPoller{Client: probeClient(t)},
		PollInterval: time.Hour, // polled by hand below
		ProbeTimeout: 2 * time.Second,
	}, []balance.Member{{URL: srv.URL}, {URL: deadURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Poll()
	st := d.Stats()
	if st.Polls != 2 || st.PollErrors != 1 {
		t.Fatalf("polls %d errors %d, want 2 and 1", st.Polls, st.PollErrors)
	}
	for _, m := range st.Members {
		switch m.Member.URL {
		case srv.URL:
			if m.LastLoad.Capacity != 3 || m.Picks != 0 {
				t.Errorf("polled member: last load %+v picks %d", m.LastLoad, m.Picks)
			}
		case deadURL:
			if m.Failures != 1 {
				t.Errorf("unreachable member: %d failures, want 1", m.Failures)
			}
		}
	}
}
