package director

import (
	"context"
	"sync"
	"time"

	"github.com/smartclient/smartclient/balance"
)

// hedgeDelay is how long an attempt may run before a hedge is sent: the
// configured quantile of recent latency, once enough samples exist.
func (d *Director) hedgeDelay() (time.Duration, bool) {
	q, n := d.lat.Quantile(d.Now(), d.cfg.Hedge.Quantile)
	if n < uint64(d.cfg.Hedge.MinSamples) {
		return 0, false
	}
	return max(q, d.cfg.Hedge.MinDelay), true
}

type raceResult struct {
	a   *Attempt
	err error
}

// race runs an idempotent attempt on first and, each time it is slower than
// the hedge delay, a hedge on another untried member, up to MaxHedges in
// flight. The first success wins and the others are cancelled; their
// Cleanup runs with ErrHedgeLost when they finish. It returns when an
// attempt wins, when every attempt started has failed, or when ctx ends.
func (d *Director) race(ctx context.Context, r Request, first *balance.Endpoint, number int,
	tried []*balance.Endpoint, in *balance.PickInput) (*Attempt, []AttemptError, int, []*balance.Endpoint) {
	var (
		mu      sync.Mutex // guards over and won; held while a result is sent
		over    bool
		won     bool // the race ended with a winner
		results = make(chan raceResult, 1+d.cfg.Hedge.MaxHedges)
		running []*Attempt
		fails   []AttemptError
		hedgeC  = make(chan struct{}, 1)
		timer   interface{ Stop() bool }
	)
	launch := func(e *balance.Endpoint, n int, hedge bool) {
		tried = append(tried, e)
		a := d.newAttempt(ctx, e, n, hedge, true)
		running = append(running, a)
		a.start = d.Now()
		go func() {
			_, err := d.run(a, r)
			mu.Lock()
			if over {
				lost := won
				mu.Unlock()
				// Another attempt won and cancelled this one: say so, rather
				// than pass on the context error the action returned. (The
				// context's cause cannot tell: finish may cancel it with
				// ErrHedgeLost before the caller's cancel reaches it.)
				if err == nil || lost {
					err = ErrHedgeLost
				}
				r.Cleanup(a, err)
				a.Release()
				return
			}
			results <- raceResult{a, err}
			mu.Unlock()
		}()
	}
	arm := func() {
		if delay, ok := d.hedgeDelay(); ok {
			timer = d.cfg.Clock.AfterFunc(delay, func() {
				select {
				case hedgeC <- struct{}{}:
				default:
				}
			})
		}
	}
	// finish ends the race: later finishers clean up after themselves, and
	// results already sent but not read are cleaned up here.
	finish := func(win *Attempt) {
		if timer != nil {
			timer.Stop()
		}
		mu.Lock()
		over, won = true, win != nil
		mu.Unlock()
		for _, a := range running {
			if a != win {
				a.cancel(ErrHedgeLost)
			}
		}
		for {
			select {
			case res := <-results:
				err := res.err
				if err == nil {
					err = ErrHedgeLost
				}
				r.Cleanup(res.a, err)
				res.a.Release()
			default:
				return
			}
		}
	}

	launch(first, number, false)
	arm()
	outstanding, hedges := 1, 0
	for outstanding > 0 {
		select {
		case res := <-results:
			outstanding--
			if res.err == nil {
				finish(res.a)
				return res.a, fails, number, tried
			}
			fails = append(fails, d.attemptError(res.a, res.err))
			r.Cleanup(res.a, res.err)
			res.a.Release()
		case <-hedgeC:
			if hedges >= d.cfg.Hedge.MaxHedges || number >= d.cfg.MaxAttempts {
				continue
			}
			if !d.budget.Withdraw(d.Now()) {
				d.budgetDenied.Add(1)
				continue
			}
			in.Now, in.Tried = d.Now(), tried
			e := d.bal.Pick(in)
			if e == nil {
				continue
			}
			hedges++
			number++
			outstanding++
			d.hedges.Add(1)
			launch(e, number, true)
			arm()
		case <-ctx.Done():
			finish(nil)
			return nil, fails, number, tried
		}
	}
	finish(nil)
	return nil, fails, number, tried
}
