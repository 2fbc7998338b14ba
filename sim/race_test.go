//go:build race

package sim

// raceEnabled shrinks the policy table under the race detector, which slows
// the core's atomics about tenfold.
const raceEnabled = true
