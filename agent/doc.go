// Package agent is `smartclient agent`: a load reporter that runs beside an
// unmodified server (nginx, sshd, vsftpd, anything on a TCP port) and tells
// directors what the server cannot tell them itself.
//
// It owns three things, kept apart:
//
//   - The pure core (core.go): Build turns raw readings — two successive
//     machine samples, the latest health check, the latest user-command
//     value, the drain flag and the gossip member list — into a Report. It
//     derives rates from counters, clamps or drops absurd readings (negative,
//     NaN, infinite, enormous, counters going backwards) and computes the
//     utilisation. It does no I/O and reads no clock: time comes in the
//     inputs, so it is table-tested without a machine.
//   - The adapters (sample.go, conns*.go, check.go, command.go): Sampler
//     reads the machine through gopsutil (load average, CPU times,
//     interface byte counters) and counts the established TCP connections
//     on the target's port with a netlink sock_diag dump (conns_linux.go),
//     falling back to /proc/net/tcp{,6} where netlink is refused; the
//     parsers of both replies are pure (conns.go). Checker health-checks
//     the target (TCP connect or HTTP GET) and Command runs the user's
//     load command with a timeout and a bounded output.
//   - The Agent (agent.go): runs each adapter in the background on its own
//     interval, publishes every new Report as an immutable snapshot, and
//     serves it over HTTP, so GET /load never waits for the target: a
//     target that hangs delays only its own health check, which times out
//     and marks it unhealthy.
//
// # The load record
//
// GET /load answers 200 with a JSON Report (see Report for every field) and
// the same load in the wire format in the Smartclient-Load header, which is
// what smarthttp.LoadPoller reads. In the wire record q is the number of
// established connections to the target's port, c the configured capacity,
// u the utilisation below, and s=draining when the target is unhealthy or
// the agent is draining: the wire format has no "unhealthy" state, and
// draining ("finish what you have, send nothing new") is what a director
// must do with a member whose health check fails. The JSON keeps the two
// apart: "healthy" is the check, "draining" the drain request, "state" the
// state sent on the wire. An unhealthy target still answers 200, because
// the agent itself answered; the load record says what to do.
//
// # Utilisation
//
// u (1.0 = fully busy) comes from one source, chosen by Config.UtilFrom:
//
//	conns  connections / capacity              (the default when Capacity > 0)
//	cpu    busy CPU time / all CPU time over the last interval, all CPUs
//	       (the default otherwise; until two samples exist, load below)
//	load   1-minute load average / number of logical CPUs
//	cmd    the user command's value, taken as a utilisation
//
// A source that has no valid reading gives u=0 and an "util" entry in the
// report's errors. u is clamped to 0..wire.MaxUtil.
package agent
