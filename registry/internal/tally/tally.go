// Package tally keeps the counters behind registry.Stats for the registry
// adapters, safe for concurrent Watch calls and Stats readers.
package tally

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/registry"
)

// Tally is the counters of one source. The zero value is ready.
type Tally struct {
	Updates, Resets, Reads, Skipped, Excluded, Dropped, Errors atomic.Uint64

	mu      sync.Mutex
	lastErr string
	epoch   uint64
	members int
}

// Error counts a failure.
func (t *Tally) Error(err error) {
	t.Errors.Add(1)
	t.mu.Lock()
	t.lastErr = err.Error()
	t.mu.Unlock()
}

// Emitted counts an update that was handed to the consumer.
func (t *Tally) Emitted(u registry.Update) {
	t.Updates.Add(1)
	if u.Reset {
		t.Resets.Add(1)
	}
	t.mu.Lock()
	t.epoch, t.members = u.Members.Epoch, len(u.Members.Members)
	t.mu.Unlock()
}

// Stats returns the counters now.
func (t *Tally) Stats() registry.Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return registry.Stats{
		Updates: t.Updates.Load(), Resets: t.Resets.Load(), Reads: t.Reads.Load(),
		Skipped: t.Skipped.Load(), Excluded: t.Excluded.Load(), Dropped: t.Dropped.Load(),
		Errors: t.Errors.Load(), LastError: t.lastErr, Epoch: t.epoch, Members: t.members,
	}
}

// Sleep waits d on clk, or until ctx ends; it reports whether the full
// pause elapsed.
func Sleep(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	done := make(chan struct{})
	t := clk.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return true
	case <-ctx.Done():
		t.Stop()
		return false
	}
}
