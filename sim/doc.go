// Package sim is a deterministic discrete-event simulator of a cluster of
// members and the directors that balance requests over them. It drives the
// real decision core — a balance.Balancer with a policy from
// balance/policy, a balance.Budget, outlier ejection — in virtual time, the
// way package director does: Pick, send the attempt, Report the load the
// reply piggy-backs, Done; after a failure that is safe to retry, re-apply
// the request on a member not yet tried, within MaxAttempts and the retry
// budget, with a backoff before a new round. It starts no goroutines, never
// reads the wall clock and draws every random number from math/rand/v2 PCG
// streams seeded from the run's seed, so a (Scenario, policy, seed) triple
// always gives the same Result, and within a scenario every policy faces
// exactly the same arrivals and request sizes.
//
// # Model
//
// Directors are open-loop clients: each issues requests as its own Poisson
// process, at a share of a total rate set as a fraction (Scenario.Load) of
// the members' combined capacity, so a slow system cannot hide behind a
// closed loop that waits for it. Each director has its own Balancer, Budget
// and random streams and learns about other directors' traffic only from the
// load members piggy-back on its own replies.
//
// A request's work (its service time on a normal member) is drawn when it
// arrives from Scenario.Service: exponential, constant, a heavy-tailed mix
// of two exponentials, or exponential with rare fixed-length slow requests;
// with Dist.PerAttempt each attempt instead draws its own from its member's
// random stream, so that slowness belongs to the member, not the request.
// A member serves up to Capacity requests at once,
// each for work × Slowdown, and queues the rest FIFO: overload makes queues,
// not lost requests. Every reply carries a wire.Load with InFlight = requests
// at the member (in service and queued, the one answered included),
// Capacity, and Util = in service / Capacity. Messages take NetDelay each
// way, plus CrossZoneDelay between zones.
//
// A member can fail for a part of the run. Down: arriving attempts are
// refused after one round trip (NotReached, always retried), and the ones it
// held when it went down are reset (MaybeProcessed, retried only when
// requests are idempotent, the default). Hang: it swallows every attempt it
// holds or receives, which end at the attempt timeout (MaybeProcessed). The
// member comes back empty.
//
// Each director calls Balancer.Tick every TickInterval, so ejected members
// are readmitted on probation as in the director (no active probes).
//
// With Config.Hedge.Enabled an idempotent request's attempt that is slower
// than the director's Hedge.Quantile of recent latency (once it has
// MinSamples) gets a hedge on another untried member, within MaxHedges,
// MaxAttempts and the retry budget, as director.Config.Hedge does; the first
// success wins and the others are abandoned (Done with Abandoned). A
// failure while another attempt of the request is outstanding waits for
// it; the next attempt starts only when none is left.
//
// # Results
//
// A Result has nearest-rank latency quantiles over the requests that
// succeeded (unfinished ones count as infinitely slow, failed ones are
// counted apart), the share of requests that succeeded within the arrival
// window, failures and their reasons, retries, and each member's share of
// attempts. Compare runs scenarios × policies into a Table that renders as
// markdown; TestPolicyTable writes RESULTS.md with it.
//
// # Limits
//
// The simulator is a model, and these are the things it leaves out:
//
//   - The network is a fixed delay: no jitter, bandwidth, loss, connection
//     set-up or head-of-line blocking. Directors cost nothing and pick
//     instantly; in the real director concurrent picks race on atomics, here
//     they are sequential.
//   - Members have no CPU or memory model beyond capacity slots, do no work
//     for retries' cleanup, and never notice that a director gave up on an
//     attempt: abandoned work is finished and its reply dropped.
//   - A hung member's held attempts are lost rather than finished late; a
//     member that recovers has an empty queue.
//   - No active probes, membership changes, draining or epochs; requests
//     all carry an affinity key, which only the hash policy reads. Hedge
//     timers fire exactly; the director's fire on the wall clock.
//   - Load is reported exactly and only on replies; refused and reset
//     attempts carry none.
//   - Every director starts cold at time 0, with InitialCost for every
//     member, and the quantiles include that warm-up; a real fleet starts
//     staggered.
//   - The arrival window is short in virtual time (2.2–2.5s for 50000
//     requests at 70% of 8 members of capacity 4 with 1ms work, 18ms for
//     1000 members), much shorter than the 10s cost decay (CostDecay), so slow
//     adaptation to changes is under-represented.
package sim
