package director

import (
	"context"
	"sync"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/wire"
)

// LoadPoller fetches a member's load on demand: the eager alternative to
// load piggy-backed on replies, for members that are not otherwise asked
// (the paper's telnet front-end polling load averages). PollLoad may block
// until ctx ends.
type LoadPoller interface {
	PollLoad(ctx context.Context, m balance.Member) (wire.Load, error)
}

// armPoll schedules the next polling round.
func (d *Director) armPoll() {
	d.cfg.Clock.AfterFunc(d.cfg.PollInterval, func() {
		select {
		case <-d.closed:
			return
		default:
		}
		d.Poll()
		d.armPoll()
	})
}

// Poll asks every member for its load once, in parallel, and applies the
// answers; it returns when every poll has finished or timed out. A failed
// poll is counted, and, since an unreachable member will fail real requests
// too, counts as a failure towards ejection. The director calls it every
// PollInterval when a Poller is configured.
func (d *Director) Poll() {
	if d.cfg.Poller == nil {
		return
	}
	var wg sync.WaitGroup
	for _, e := range d.bal.Endpoints() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			t := d.cfg.Clock.AfterFunc(d.cfg.ProbeTimeout, cancel)
			defer t.Stop()
			go func() {
				select {
				case <-d.closed:
					cancel()
				case <-ctx.Done():
				}
			}()
			l, err := d.cfg.Poller.PollLoad(ctx, e.Member)
			now := d.Now()
			d.polls.Add(1)
			if err != nil {
				d.pollErrors.Add(1)
				d.bal.Acquire(e)
				d.bal.Done(e, now, 0, balance.Failure)
				return
			}
			d.bal.Report(e, now, l)
		}()
	}
	wg.Wait()
}
