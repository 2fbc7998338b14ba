package bench

import "time"

// Scenario is one experiment: members with controlled behaviour and a load
// driven through every contender in turn, each against a fresh member
// process so that no contender inherits another's queues.
type Scenario struct {
	// Name identifies the scenario in tables, files and --scenarios.
	Name string
	// Title says what it is, in one line.
	Title string
	// Members are the members' behaviours. Member 0 is healthy and fast:
	// the direct contender uses it alone.
	Members []MemberSpec
	// Clients is how many independent clients (each with its own director,
	// connection pool or proxy) share the load.
	Clients int
	// Rate is the offered load in requests per second, open loop. 0 means
	// closed loop with Workers.
	Rate float64
	// Workers is the closed loop's concurrency (Rate 0).
	Workers int
	// Warm is load sent before the window and not counted, so every
	// contender is measured warm (connections open, statistics learned).
	Warm time.Duration
	// Window is how long counted requests are offered.
	Window time.Duration
	// Timeout is how long after its scheduled start a request may finish
	// and still count as completed.
	Timeout time.Duration
	// CrashAt, if positive, crashes member Crash this far into the window
	// (its listener and connections close, as in a process crash).
	CrashAt time.Duration
	Crash   int
}

// Capacity is the members' combined capacity in requests per second, or 0
// if some member is uncapped.
func (s Scenario) Capacity() float64 {
	var c float64
	for _, m := range s.Members {
		mc := m.Capacity()
		if mc == 0 {
			return 0
		}
		c += mc
	}
	return c
}

// The members: concurrency 4, exponential service time of mean
// 10 ms; "slow" is 10× slower.
var (
	fastMember = MemberSpec{Concurrency: 4, Service: Dist{Mean: 10 * time.Millisecond}}
	slowMember = MemberSpec{Concurrency: 4, Service: Dist{Mean: 100 * time.Millisecond}}
	// tailMember: mostly exponential 10 ms, but 1 request in 100 takes
	// 500 ms (a GC pause, a cold cache, a lock).
	tailMember = MemberSpec{Concurrency: 4, Service: Dist{Mean: 10 * time.Millisecond, SlowProb: 0.01, Slow: 500 * time.Millisecond}}
	// instantMember replies at once with no cap: only the path costs.
	instantMember = MemberSpec{}
)

// Scenario names.
const (
	ScenarioSlow      = "slow-member"
	ScenarioSlow32    = "slow-member-32"
	ScenarioSaturated = "saturated"
	ScenarioTail      = "rare-slow"
	ScenarioCrash     = "crash"
	ScenarioFast      = "fast-replies"
	ScenarioFigure6   = "figure6"
)

// Scenarios returns the suite's scenarios, with windows for quick or full
// runs.
func Scenarios(quick bool) []Scenario {
	pick := func(full, q time.Duration) time.Duration {
		if quick {
			return q
		}
		return full
	}
	warm := pick(500*time.Millisecond, 200*time.Millisecond)
	timeout := time.Second
	slow4 := []MemberSpec{fastMember, fastMember, fastMember, slowMember}
	fast4 := []MemberSpec{fastMember, fastMember, fastMember, fastMember}
	tail4 := []MemberSpec{tailMember, tailMember, tailMember, tailMember}
	inst4 := []MemberSpec{instantMember, instantMember, instantMember, instantMember}
	ss := []Scenario{
		{
			Name:    ScenarioSlow,
			Title:   "4 members (concurrency 4, exp. 10 ms), one 10× slower; 800 req/s open loop; one client",
			Members: slow4, Clients: 1, Rate: 800,
			Warm: warm, Window: pick(20*time.Second, time.Second), Timeout: timeout,
		},
		{
			Name:    ScenarioSlow32,
			Title:   "as " + ScenarioSlow + ", the load shared by 32 independent clients",
			Members: slow4, Clients: 32, Rate: 800,
			Warm: warm, Window: pick(3*time.Second, 500*time.Millisecond), Timeout: timeout,
		},
		{
			Name:    ScenarioSaturated,
			Title:   "as " + ScenarioSlow + ", offered load = combined capacity (1240 req/s)",
			Members: slow4, Clients: 1,
			Warm: warm, Window: pick(3*time.Second, 500*time.Millisecond), Timeout: timeout,
		},
		{
			Name:    ScenarioTail,
			Title:   "4 members (concurrency 4, exp. 10 ms but 1% take 500 ms); 800 req/s; one client",
			Members: tail4, Clients: 1, Rate: 800,
			Warm: warm, Window: pick(3*time.Second, 500*time.Millisecond), Timeout: timeout,
		},
		{
			Name:    ScenarioCrash,
			Title:   "4 members (concurrency 4, exp. 10 ms); member 1 crashes 1/3 into the window; 800 req/s; one client",
			Members: fast4, Clients: 1, Rate: 800,
			Warm: warm, Window: pick(3600*time.Millisecond, 750*time.Millisecond), Timeout: timeout,
			Crash: 1,
		},
		{
			Name:    ScenarioFast,
			Title:   "4 members replying at once, no cap; closed loop, 50 concurrent requests; one client",
			Members: inst4, Clients: 1, Workers: 50,
			Warm: pick(300*time.Millisecond, 200*time.Millisecond), Window: pick(1200*time.Millisecond, 300*time.Millisecond), Timeout: timeout,
		},
	}
	for i := range ss {
		if ss[i].Name == ScenarioSaturated {
			ss[i].Rate = ss[i].Capacity()
		}
		if ss[i].Name == ScenarioCrash {
			ss[i].CrashAt = ss[i].Window / 3
		}
	}
	return ss
}
