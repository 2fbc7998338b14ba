package director_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
)

// hedgeConfig hedges after 1ms once a single latency has been seen.
func hedgeConfig() director.Config {
	return director.Config{
		PolicyImpl: inOrder{},
		Hedge:      director.HedgeConfig{Enabled: true, MinSamples: 1, Quantile: 0.5, MinDelay: 1e6},
	}
}

// warm gives the director one latency sample, so that hedging starts.
func warm(t *testing.T, d *director.Director) {
	t.Helper()
	if err := d.Do(context.Background(), &director.Call{Idem: true, Do: func(context.Context, *director.Attempt) error { return nil }}); err != nil {
		t.Fatal(err)
	}
}

// TestHedgeWins: a slow idempotent attempt is hedged on another member; the
// hedge's success is returned, and the slow attempt is cancelled and
// cleaned up with ErrHedgeLost, without blaming its member.
func TestHedgeWins(t *testing.T) {
	d := newDirector(t, hedgeConfig(), members(3))
	warm(t, d)
	cleaned := make(chan event, 4)
	c := &director.Call{
		Idem: true,
		Do: func(ctx context.Context, a *director.Attempt) error {
			if !a.Hedge {
				<-ctx.Done() // slow: only the hedge race ends it
				return ctx.Err()
			}
			a.Result = "hedge"
			return nil
		},
		OnCleanup: func(a *director.Attempt, err error) {
			if context.Cause(a.Context()) != director.ErrHedgeLost {
				t.Errorf("loser's context cause %v", context.Cause(a.Context()))
			}
			cleaned <- event{cleanup: true, member: a.Member.URL, number: a.Number, hedge: a.Hedge, err: err}
		},
	}
	a, err := d.Apply(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Hedge || a.Number != 2 || a.Result != "hedge" || a.Member.URL != "http://m1:80" {
		t.Fatalf("winner %+v", a)
	}
	if a.Context().Err() != nil {
		t.Fatal("winner's context ended")
	}
	a.Release()
	ev := recv(t, cleaned, "the loser's cleanup")
	if ev.number != 1 || ev.hedge || ev.member != "http://m0:80" || !errors.Is(ev.err, director.ErrHedgeLost) {
		t.Fatalf("loser cleanup %v", ev)
	}
	st := d.Stats()
	if st.Hedges != 1 || st.Retries != 0 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
	waitFor(t, "the loser to finish", func() bool { return memberStats(d, "http://m0:80").InFlight == 0 })
	if m0 := memberStats(d, "http://m0:80"); m0.Failures != 0 || m0.State != balance.Healthy {
		t.Fatalf("loser's member blamed: %+v", m0)
	}
	select {
	case ev := <-cleaned:
		t.Fatalf("second cleanup %v", ev)
	default:
	}
}

// TestHedgeOriginalWins: when the first attempt answers after the hedge was
// sent, it wins and the hedge is the one cancelled.
func TestHedgeOriginalWins(t *testing.T) {
	d := newDirector(t, hedgeConfig(), members(3))
	warm(t, d)
	hedged := make(chan struct{})
	cleaned := make(chan event, 4)
	c := &director.Call{
		Idem: true,
		Do: func(ctx context.Context, a *director.Attempt) error {
			if a.Hedge {
				close(hedged)
				<-ctx.Done()
				return ctx.Err()
			}
			<-hedged
			return nil
		},
		OnCleanup: func(a *director.Attempt, err error) {
			cleaned <- event{cleanup: true, member: a.Member.URL, number: a.Number, hedge: a.Hedge, err: err}
		},
	}
	a, err := d.Apply(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	a.Release()
	if a.Hedge || a.Number != 1 {
		t.Fatalf("winner %+v", a)
	}
	ev := recv(t, cleaned, "the hedge's cleanup")
	if !ev.hedge || ev.number != 2 || !errors.Is(ev.err, director.ErrHedgeLost) {
		t.Fatalf("hedge cleanup %v", ev)
	}
}

// TestHedgeBothFail: when the attempt and its hedge both fail, both are
// cleaned up before the request moves on, and both are in the error.
func TestHedgeBothFail(t *testing.T) {
	cfg := hedgeConfig()
	cfg.MaxAttempts = 2
	d := newDirector(t, cfg, members(3))
	warm(t, d)
	hedged := make(chan struct{})
	s := &script{idem: true, fn: func(ctx context.Context, a *director.Attempt) error {
		if a.Hedge {
			close(hedged)
			return refused
		}
		<-hedged
		return errors.New("reset")
	}}
	_, err := d.Apply(context.Background(), s)
	var de *director.Error
	if !errors.As(err, &de) || !errors.Is(err, director.ErrExhausted) || len(de.Attempts) != 2 {
		t.Fatalf("Apply = %v", err)
	}
	cleanups := 0
	for _, ev := range s.events() {
		if ev.cleanup {
			cleanups++
		}
	}
	if cleanups != 2 {
		t.Fatalf("%d cleanups: %v", cleanups, s.events())
	}
}

// TestHedgeBudget: hedges draw on the retry budget; with none left the slow
// attempt runs alone.
func TestHedgeBudget(t *testing.T) {
	cfg := hedgeConfig()
	cfg.Budget = balance.BudgetConfig{Ratio: 1e-6, Burst: 0.5, MinPerSecond: 1e-9}
	d := newDirector(t, cfg, members(3))
	warm(t, d)
	c := &director.Call{Idem: true, Do: func(ctx context.Context, a *director.Attempt) error {
		if a.Hedge {
			t.Error("hedge sent without budget")
			return nil
		}
		// Finish once the director has tried to hedge and been refused.
		waitFor(t, "a refused hedge", func() bool { return d.Stats().BudgetDenied > 0 })
		return nil
	}}
	a, err := d.Apply(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	a.Release()
	if st := d.Stats(); st.Hedges != 0 || a.Hedge {
		t.Fatalf("stats %+v", st)
	}
}

// TestHedgeNotIdempotent: a request that is not idempotent is never hedged;
// an idempotent one is, in the same conditions.
func TestHedgeNotIdempotent(t *testing.T) {
	for _, idem := range []bool{false, true} {
		cfg := hedgeConfig()
		d, clk := fakeDirector(t, cfg, members(3))
		warm(t, d)
		started := make(chan bool, 2)
		release := make(chan struct{})
		c := &director.Call{Idem: idem, Do: func(ctx context.Context, a *director.Attempt) error {
			started <- a.Hedge
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}}
		errc := make(chan error, 1)
		go func() { errc <- d.Do(context.Background(), c) }()
		recv(t, started, "the attempt")
		if idem {
			waitFor(t, "the hedge timer", func() bool { return clk.Pending() == 2 })
		} else if clk.Pending() != 1 { // the director's tick only
			t.Fatalf("a timer armed for a non-idempotent attempt")
		}
		clk.Advance(time.Second)
		if idem {
			if h := recv(t, started, "the hedge"); !h {
				t.Fatal("second attempt is not a hedge")
			}
		} else {
			// No timer was armed, so nothing can start another attempt.
			select {
			case <-started:
				t.Fatal("a non-idempotent request was hedged")
			default:
			}
		}
		close(release)
		if err := recv(t, errc, "Do"); err != nil {
			t.Fatal(err)
		}
		if st := d.Stats(); st.Hedges != map[bool]uint64{false: 0, true: 1}[idem] {
			t.Fatalf("idempotent=%v: %d hedges", idem, st.Hedges)
		}
	}
}

// TestHedgeCancel: the caller cancelling a hedged request ends it at once;
// both attempts are cleaned up with the caller's error.
func TestHedgeCancel(t *testing.T) {
	d := newDirector(t, hedgeConfig(), members(3))
	warm(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hedged := make(chan struct{})
	cleaned := make(chan error, 4)
	c := &director.Call{
		Idem: true,
		Do: func(actx context.Context, a *director.Attempt) error {
			if a.Hedge {
				close(hedged)
			}
			<-actx.Done()
			return actx.Err()
		},
		OnCleanup: func(a *director.Attempt, err error) { cleaned <- err },
	}
	errc := make(chan error, 1)
	go func() { _, err := d.Apply(ctx, c); errc <- err }()
	recv(t, hedged, "the hedge")
	cancel()
	err := recv(t, errc, "Apply")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply = %v", err)
	}
	for range 2 {
		if err := recv(t, cleaned, "cleanup"); !errors.Is(err, context.Canceled) {
			t.Fatalf("cleanup with %v, want the caller's cancel", err)
		}
	}
	waitFor(t, "attempts to finish", func() bool {
		for _, m := range d.Stats().Members {
			if m.InFlight != 0 {
				return false
			}
		}
		return true
	})
}
