// Package failsuite is the failure suite: sustained open-loop load through a
// director — the library (director + smarthttp.Transport) and the
// `smartclient proxy` process — against four hosts in network namespaces
// (package testbed), while faults are injected and healed in turn: kill -9,
// a hang (SIGSTOP), a silent black hole (DROP), a fast refusal (REJECT with
// tcp-reset), a slow link, packet loss, a partition, a bandwidth cap and a
// rolling restart.
//
// It owns three things, kept apart so that the measuring can be tested
// without a network:
//
//   - Recorder: every request's scheduled start, end, member, outcome and
//     attempt count, written lock-free into preallocated slots;
//   - Analyze: a pure function from records and the scenario's phases to a
//     Report (failed requests, failover gap, latency quantiles before, during
//     and after the fault, extra load from retries and hedges), with its
//     one-line form (Report.Line) that scripts parse;
//   - Run: the scenarios themselves, the load driver, and the JSON and PNG
//     (Figure 8 of the Smart Clients paper, for this system) they write.
//
// The failover gap is defined on Analyze. The suite itself is the test
// TestFailureSuite, built only with the failsuite tag; as root:
//
//	go test -tags failsuite -run TestFailureSuite -count=1 -v ./failsuite
package failsuite
