package sim

import (
	"time"

	"slices"

	"github.com/smartclient/smartclient/balance/policy"
)

// Names of the standard scenarios.
const (
	Healthy       = "healthy"        // (a) 8 identical members
	SlowMember    = "slow-member"    // (b) 8 members, one 10× slower
	HeavyTailed   = "heavy-tail"     // (c) 8 members, 99% exp(1ms) + 1% exp(20ms)
	MemberDown    = "member-down"    // (d) one member down for the middle half of the run
	MemberHang    = "member-hang"    // one member hangs for the middle half; 50ms attempt timeout
	SlowShared    = "slow-member-32" // (e) as (b), with 32 independent directors
	TwoZones      = "two-zones"      // 8 members and 8 directors in 2 zones, 1ms apart; 35% load
	ThousandNodes = "1000-members"   // 1000 identical members, 8 directors
)

// Scenarios returns the standard scenarios in table order, each with
// requests requests (0 means the default 50000). Every one offers 70% of the
// members' combined capacity with members of capacity 4 and exp(1ms) work
// unless its comment says otherwise.
func Scenarios(requests int) []Scenario {
	slow := Homogeneous(8)
	slow[7].Slowdown = 10
	down := Homogeneous(8)
	down[3].Outages = []Outage{{From: 0.25, To: 0.75, Mode: Down}}
	hang := Homogeneous(8)
	hang[3].Outages = []Outage{{From: 0.25, To: 0.75, Mode: Hang}}
	zones := Homogeneous(8)
	for i := range zones {
		zones[i].Zone = []string{"z0", "z1"}[i%2]
	}
	return []Scenario{
		{Name: Healthy, Members: Homogeneous(8), Requests: requests},
		{Name: SlowMember, Members: slow, Requests: requests},
		{Name: HeavyTailed, Members: Homogeneous(8), Service: Dist{Kind: HeavyTail}, Requests: requests},
		{Name: MemberDown, Members: down, Requests: requests},
		{Name: MemberHang, Members: hang, Requests: requests, Director: Config{AttemptTimeout: 50 * time.Millisecond}},
		{Name: SlowShared, Members: slow, Directors: 32, Requests: requests},
		{Name: TwoZones, Members: zones, Directors: 8, DirectorZones: []string{"z0", "z1"}, Load: 0.35, Requests: requests},
	}
}

// Thousand is the 1000-member scenario: 8 directors over 1000 identical
// members at 70% load; it shows how picks scale with the member count.
func Thousand(requests int) Scenario {
	return Scenario{Name: ThousandNodes, Members: Homogeneous(1000), Directors: 8, Requests: requests}
}

// Policies lists the policies the comparison table covers: every name
// policy.New accepts, with locality wrapping the default inner policy.
func Policies() []string {
	ns := policy.Names()
	order := []string{"random", "random-biased", "round-robin", "weighted", "least-loaded", "p2c", "hash", "locality"}
	slices.SortStableFunc(ns, func(a, b string) int {
		ia, ib := slices.Index(order, a), slices.Index(order, b)
		if ia < 0 {
			ia = len(order)
		}
		if ib < 0 {
			ib = len(order)
		}
		return ia - ib
	})
	return ns
}
