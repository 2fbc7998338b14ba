package director

import "github.com/smartclient/smartclient/balance"

// Stats is a point-in-time copy of a director's counters and members.
type Stats struct {
	Policy          string
	Requests        uint64 // Apply calls
	Failed          uint64 // Apply calls that returned an error
	Retries         uint64 // attempts after the first, hedges excluded
	Hedges          uint64 // hedged attempts
	BudgetDenied    uint64 // retries or hedges refused by the budget
	BadReports      uint64 // unparseable load or membership records
	RejectedMembers uint64 // membership records refused
	LearnedMembers  uint64 // membership records applied
	Polls           uint64 // load polls sent
	PollErrors      uint64 // load polls that failed
	BudgetTokens    float64
	Epoch           uint64
	Panic           bool
	Members         []balance.EndpointStats
}

// Stats returns the director's statistics now.
func (d *Director) Stats() Stats {
	now := d.Now()
	return Stats{
		Policy:          d.pol,
		Requests:        d.requests.Load(),
		Failed:          d.failed.Load(),
		Retries:         d.retries.Load(),
		Hedges:          d.hedges.Load(),
		BudgetDenied:    d.budgetDenied.Load(),
		BadReports:      d.badReports.Load(),
		RejectedMembers: d.rejectedMembers.Load(),
		LearnedMembers:  d.learned.Load(),
		Polls:           d.polls.Load(),
		PollErrors:      d.pollErrors.Load(),
		BudgetTokens:    d.budget.Tokens(),
		Epoch:           d.bal.Epoch(),
		Panic:           d.bal.Snapshot().Panic,
		Members:         d.bal.Stats(now),
	}
}

// SaveState returns the director's learned state (members, epoch, latency
// estimates) for an on-disk cache.
func (d *Director) SaveState() ([]byte, error) { return d.bal.Save(d.Now()) }

// RestoreState applies state saved by SaveState; invalid state is refused
// whole with an error wrapping balance.ErrBadState.
func (d *Director) RestoreState(b []byte) error { return d.bal.Restore(b, d.Now()) }
