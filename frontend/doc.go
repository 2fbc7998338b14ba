// Package frontend is the Smart Clients paper's telnet front-end (section
// 4.1) for unmodified login servers: it opens a session on the least-loaded
// member of a cluster of sshd servers.
//
// Open turns one session into a director request. Its Action first dials
// the member's SSH port and reads the server's identification banner
// ("SSH-2.0-…", bounded in size and time), which proves that a live sshd
// answers there — a TCP connect alone does not: a hung sshd still completes
// the handshake in the kernel. A refused, timed-out or garbled connection is
// NotReached, so the director moves on to the next least-loaded member.
// Then the Session (the system ssh client, SSH) runs against the member; a
// session that failed before it started (ssh's exit status 255 before
// authentication completed) is NotReached too, and one that started is the
// result, whatever its exit status.
//
// The package owns the banner parser (pure, fuzzed), the probe and the
// session adapter; the member's load comes from the director's poller
// (agent.Poller beside each sshd) and the choice from its policy.
package frontend
