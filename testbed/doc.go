// Package testbed owns a multi-host network for end-to-end tests: Linux
// network namespaces ("hosts") joined by a bridge in the root namespace,
// real processes started inside them, and the faults a failure suite
// injects into them (a crash, a hang, a black hole, a refusal, packet loss,
// a partition, a bandwidth cap, a slow link), each with a heal.
//
// The root namespace is the client host: the bridge carries the gateway
// address, so the test process reaches every host directly. A host is a
// namespace with one veth into the bridge and its own address.
//
// Everything a Bed creates is named "<prefix>-<id>-…" (id: four hex digits
// per run) and recorded, with its owner's pid, under RunDir before it is
// created. New removes what beds of dead owners left behind, so a test
// binary that was killed half-way costs nothing but a sweep on the next run.
// Processes are started with a parent-death signal, so they die with the
// test binary even when it is killed.
//
// Faults live inside the host namespaces (iptables rules in the host's own
// netfilter tables, tc qdiscs on its veth), so deleting a namespace deletes
// its faults; the only rule in the root namespace is one ACCEPT in FORWARD
// for bridged traffic, tagged with the bed's name.
package testbed
