// Package registry owns the contract between a director and a service
// registry (etcd, Consul's catalog, anything else that lists the members of
// a service): the Source interface, the vetting every registry entry goes
// through before it may become a member, and Attach, which feeds a director
// from a Source with the same checks as every other membership record.
//
// The registries themselves are adapters in subpackages, so that a program
// that needs one does not link the other's client: registry/etcdreg and
// registry/consulreg.
//
// # Epochs
//
// A director never lets a member list with a lower epoch replace a higher
// one (balance.Balancer.SetMembers). A registry has its own monotonic
// counter that orders its views — etcd's store revision, Consul's
// X-Consul-Index — and a Source uses it as the epoch. Such a counter can go
// backwards: a Consul snapshot restore, an etcd cluster rebuilt or restored
// from a backup. A Source reports that with Update.Reset, and Attach then
// replaces the director's list whatever its epoch, as a newer signed
// certificate does; otherwise the director would ignore the registry until
// the new counter overtook the old one.
//
// A director should take its membership from one authority. Epochs of
// different sources (a registry index, a certificate version, gossip's
// millisecond clock) are not comparable, so mixing them makes the newer-epoch
// rule arbitrary; leave Config.LearnMembers off on a director fed by a
// registry, so that members cannot override it with their own records.
package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/smartclient/smartclient/wire"
)

// Update is one view of a service's membership from a registry.
type Update struct {
	// Members is the full member list, not a delta: vetted (Check), sorted
	// by URL, without duplicate URLs, and within wire's bounds, so
	// Members.Validate() returns nil. It may be empty: the registry lists no
	// serving member. Epoch is the registry's own counter.
	Members wire.Members
	// Reset says this update starts a new sequence of epochs and must be
	// applied even if its epoch is not above the consumer's: it is set on the
	// first update of each Watch call (the source cannot know which epoch
	// the consumer holds) and whenever the registry's counter went
	// backwards.
	Reset bool
}

// Source watches a registry for the members of one service.
//
// Watch reads the registry's current view, calls emit with it, then calls
// emit again each time the view changes, until ctx ends; then it returns
// ctx's error. emit is called on Watch's goroutine, one update at a time,
// and must not block for long (Attach's emit applies the update to a
// director and returns). Within one Watch call the epochs of updates
// strictly increase, except on an update with Reset set. An update whose
// members equal the previous update's is not emitted, unless it is a Reset.
//
// Failures to reach the registry are retried with backoff and counted, not
// returned: a source is meant to outlive registry outages, and the director
// keeps its last list meanwhile. Watch returns another error only if it
// cannot start at all. A Source may be watched by several goroutines at
// once; each Watch call keeps its own state.
type Source interface {
	Watch(ctx context.Context, emit func(Update)) error
}

// Member states as registries write them. Only a serving member (an empty
// state or StateUp) is listed; the others are left out, and counted in
// Stats.Excluded rather than Stats.Skipped because they are not errors.
const (
	StateUp       = "up"       // serving
	StateDraining = "draining" // finishing its work, wants no new work
	StateDown     = "down"     // registered but not serving
)

// Entry is one member as a registry lists it, before vetting.
type Entry struct {
	// Key is where the registry keeps the entry (an etcd key, a Consul
	// service ID); among entries with the same URL the smallest Key wins.
	Key    string
	URL    string
	Weight float64 // 0 means the default, 1
	Zone   string  // empty means unknown
	State  string  // "", StateUp, StateDraining or StateDown
}

// ErrBadEntry wraps every error Check returns.
var ErrBadEntry = errors.New("registry: bad entry")

// Check vets one entry with the limits the wire format puts on a member:
// a URL with a lower-case scheme and a host, at most wire.MaxURLLen bytes; a
// weight of 0 or in (0, wire.MaxWeight], not NaN; a zone token of at most
// wire.MaxZoneLen bytes; and a known state.
func Check(e Entry) error {
	switch e.State {
	case "", StateUp, StateDraining, StateDown:
	default:
		return fmt.Errorf("%w: %s: unknown state %q", ErrBadEntry, clip(e.Key), clip(e.State))
	}
	m := wire.Members{Members: []wire.Member{{URL: e.URL, Weight: e.Weight, Zone: e.Zone}}}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadEntry, clip(e.Key), err)
	}
	return nil
}

// Serving reports whether a checked entry should be listed.
func Serving(e Entry) bool { return e.State == "" || e.State == StateUp }

// Build turns serving, checked entries into the member list of an update:
// sorted by URL, one entry per URL (the one with the smallest Key), cut to
// wire.MaxMembers members and to what encodes within wire.MaxMembersLen
// (keeping the smallest URLs, so the cut is the same on every client).
// dropped counts the entries left out. Build does not modify entries.
func Build(epoch uint64, entries []Entry) (m wire.Members, dropped int) {
	es := slices.Clone(entries)
	slices.SortFunc(es, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.URL, b.URL), cmp.Compare(a.Key, b.Key))
	})
	m.Epoch = epoch
	m.Members = make([]wire.Member, 0, min(len(es), wire.MaxMembers))
	size := len("v=1;e=") + 20 // the longest epoch
	for i, e := range es {
		if i > 0 && es[i-1].URL == e.URL {
			dropped++
			continue
		}
		mb := wire.Member{URL: e.URL, Weight: e.Weight, Zone: e.Zone}
		n := memberLen(mb)
		if len(m.Members) == wire.MaxMembers || size+n > wire.MaxMembersLen {
			dropped++
			continue
		}
		size += n
		m.Members = append(m.Members, mb)
	}
	if len(m.Members) == 0 {
		m.Members = nil
	}
	return m, dropped
}

// memberLen bounds the bytes mb takes in a members record: wire writes a
// weight with strconv's shortest form, at most 24 bytes.
func memberLen(mb wire.Member) int {
	n := len(";m=") + len(mb.URL)
	if mb.Weight != 0 {
		n += len("#w=") + 24
	}
	if mb.Zone != "" {
		n += len("#z=") + len(mb.Zone)
	}
	return n
}

// Equal reports whether two member lists are the same, epochs aside.
func Equal(a, b wire.Members) bool { return slices.Equal(a.Members, b.Members) }

// clip shortens s for an error message, so a huge hostile value cannot
// make a huge log line.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
