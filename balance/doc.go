// Package balance is the pure, deterministic decision core of a director.
//
// It owns the member table, the live statistics kept per member (requests in
// flight, an EWMA of latency, the last load the member reported), the failure
// detector that ejects and readmits members, the retry budget, the latency
// tracker that sets hedging delays, and the merge rule for membership
// updates. It starts no goroutines, never reads the wall clock and does no
// I/O: time arrives as an argument (nanoseconds on the caller's clock) and
// randomness through an injected Rand, so a simulator can drive it in virtual
// time and tests are exact.
//
// Concurrency follows grpc-go's balancer: every change to the member set or
// to a member's eligibility builds a new immutable Snapshot, published through
// an atomic pointer; Pick reads the current snapshot and per-member atomics
// only, so it never locks, allocates or blocks. Updates (membership, results,
// load reports) are serialised by small mutexes off the pick path.
package balance

// Rand is the source of randomness a Balancer and its pickers use. Uint64
// must be safe for concurrent use when the Balancer is shared between
// goroutines; a seeded *math/rand/v2.Rand is fine for single-goroutine
// simulations.
type Rand interface {
	Uint64() uint64
}

// intn returns a uniform integer in [0, n) for n > 0 without modulo bias
// worth caring about at our sizes (Lemire's multiply-shift).
func intn(r Rand, n int) int {
	hi, _ := mul64(r.Uint64(), uint64(n))
	return int(hi)
}

// float01 returns a uniform float64 in [0, 1).
func float01(r Rand) float64 {
	return float64(r.Uint64()>>11) / (1 << 53)
}
