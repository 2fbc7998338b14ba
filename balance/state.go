package balance

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// StateVersion is the version of the saved-state format Save writes.
const StateVersion = 1

// MaxStateSize bounds the saved state Restore accepts.
const MaxStateSize = 4 << 20

// maxSavedCost is the largest latency estimate saved state may hold.
const maxSavedCost = float64(time.Hour)

// ErrBadState wraps every reason Restore refuses saved state.
var ErrBadState = errors.New("balance: invalid saved state")

// SavedState is what a director remembers between runs: the member list, its
// epoch, and each member's latency estimate, so that the next start makes
// good picks before any network traffic.
type SavedState struct {
	Version int           `json:"version"`
	Epoch   uint64        `json:"epoch"`
	Members []SavedMember `json:"members"`
}

// SavedMember is one member in SavedState.
type SavedMember struct {
	URL       string  `json:"url"`
	Weight    float64 `json:"weight,omitempty"`
	Zone      string  `json:"zone,omitempty"`
	CostNanos float64 `json:"cost_ns"`
}

// Save returns the balancer's learned state as JSON.
func (b *Balancer) Save(now int64) ([]byte, error) {
	b.mu.Lock()
	s := SavedState{Version: StateVersion, Epoch: b.epoch}
	for _, e := range b.all {
		s.Members = append(s.Members, SavedMember{
			URL: e.Member.URL, Weight: e.Member.Weight, Zone: e.Member.Zone,
			// Clamped to what ParseState accepts: a balancer must be able
			// to restore whatever it saved, even after a very slow attempt.
			CostNanos: min(e.Cost(now, b.env.Tau), maxSavedCost),
		})
	}
	b.mu.Unlock()
	return json.Marshal(s)
}

// ParseState decodes and validates saved state without applying it.
func ParseState(data []byte) (SavedState, error) {
	var s SavedState
	if len(data) > MaxStateSize {
		return s, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrBadState, len(data), MaxStateSize)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	if s.Version != StateVersion {
		return s, fmt.Errorf("%w: version %d, want %d", ErrBadState, s.Version, StateVersion)
	}
	ms := make([]Member, len(s.Members))
	for i, m := range s.Members {
		if m.CostNanos < 0 || math.IsNaN(m.CostNanos) || m.CostNanos > maxSavedCost {
			return s, fmt.Errorf("%w: member %q has cost %v ns; want 0..1h", ErrBadState, m.URL, m.CostNanos)
		}
		ms[i] = Member{URL: m.URL, Weight: m.Weight, Zone: m.Zone}
	}
	if err := ValidateMembers(ms); err != nil {
		return s, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	return s, nil
}

// Restore applies saved state: its members replace the current ones (whatever
// the epochs, since a restore happens before anything newer was learned)
// and each member's latency estimate is restored as of now. Invalid state is
// refused whole with an error wrapping ErrBadState; nothing is changed then.
func (b *Balancer) Restore(data []byte, now int64) error {
	s, err := ParseState(data)
	if err != nil {
		return err
	}
	ms := make([]Member, len(s.Members))
	for i, m := range s.Members {
		ms[i] = Member{URL: m.URL, Weight: m.Weight, Zone: m.Zone}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.setMembersLocked(ms); err != nil {
		return fmt.Errorf("%w: %v", ErrBadState, err)
	}
	b.epoch = s.Epoch
	for i, m := range s.Members {
		e := b.all[i]
		e.mu.Lock()
		e.costBits.Store(math.Float64bits(m.CostNanos))
		e.measured = true
		e.costStamp.Store(now)
		e.mu.Unlock()
	}
	return nil
}
