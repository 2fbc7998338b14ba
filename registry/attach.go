package registry

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

// Feed applies a Source's updates to a director. Make it with Attach.
type Feed struct {
	Learned  atomic.Uint64 // updates applied
	Resets   atomic.Uint64 // of Learned, applied whatever the director's epoch (Update.Reset)
	Stale    atomic.Uint64 // updates not newer than the director's epoch
	Rejected atomic.Uint64 // updates refused by Config.AcceptMembers or by the balancer
	Empty    atomic.Uint64 // updates with no member: the director keeps its list

	d   *director.Director
	src Source

	mu sync.Mutex
	// resetPending carries a Reset that could not be applied (empty or
	// refused) to the next update: the registry's new sequence of epochs
	// may stay below the director's epoch, so its updates would otherwise be
	// ignored as stale until it overtook the old one.
	resetPending bool
}

// Attach makes a Feed that applies src's updates to d, vetted as
// directors vet every membership record: an update is applied only if its
// epoch is above the director's, and only if d's Config.AcceptMembers, when
// set, accepts it (for example a service certificate's rules). An update
// with Reset set skips the epoch check only, and replaces the list through
// balance.Balancer.ReplaceMembers, as a newer certificate does. An update
// with no member is never applied: a balancer needs at least one member, so
// the director keeps its last list and counts it in Empty.
//
// Attaching is the opt-in to the registry, so Config.LearnMembers is not
// consulted (it governs records piggy-backed on replies by members). Call
// Run to start feeding.
func Attach(d *director.Director, src Source) *Feed {
	return &Feed{d: d, src: src}
}

// Run watches the source and applies each update until ctx ends; it
// returns the source's error (ctx's error once ctx ends).
func (f *Feed) Run(ctx context.Context) error {
	return f.src.Watch(ctx, f.Apply)
}

// Apply applies one update, as Run does with each update the source emits.
func (f *Feed) Apply(u Update) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reset := u.Reset || f.resetPending
	if len(u.Members.Members) == 0 {
		f.Empty.Add(1)
		f.resetPending = reset
		return
	}
	bal := f.d.Balancer()
	if !reset && u.Members.Epoch <= bal.Epoch() {
		f.Stale.Add(1)
		return
	}
	if accept := f.d.Config().AcceptMembers; accept != nil {
		if err := accept(u.Members); err != nil {
			f.Rejected.Add(1)
			f.resetPending = reset
			return
		}
	}
	ms := BalanceMembers(u.Members)
	if reset {
		if err := bal.ReplaceMembers(u.Members.Epoch, ms); err != nil {
			f.Rejected.Add(1)
			f.resetPending = true
			return
		}
		f.resetPending = false
		f.Resets.Add(1)
		f.Learned.Add(1)
		return
	}
	ok, err := bal.SetMembers(u.Members.Epoch, ms)
	switch {
	case err != nil:
		f.Rejected.Add(1)
	case ok:
		f.Learned.Add(1)
	default:
		f.Stale.Add(1) // a newer epoch arrived meanwhile from elsewhere
	}
}

// BalanceMembers converts a member list for director.New and the balancer.
func BalanceMembers(m wire.Members) []balance.Member {
	out := make([]balance.Member, len(m.Members))
	for i, x := range m.Members {
		out[i] = balance.Member{URL: x.URL, Weight: x.Weight, Zone: x.Zone}
	}
	return out
}

// errFound stops the Watch of First.
var errFound = errors.New("registry: found")

// First watches src until it emits an update with at least one member and
// returns that list, for the members and Config.Epoch of director.New. It
// returns ctx's error if ctx ends first, or the source's error.
func First(ctx context.Context, src Source) (wire.Members, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var got wire.Members
	err := src.Watch(ctx, func(u Update) {
		if len(u.Members.Members) > 0 && got.Members == nil {
			got = u.Members
			cancel(errFound)
		}
	})
	if got.Members != nil {
		return got, nil
	}
	return wire.Members{}, err
}
