// Package gossip keeps the membership of one service by gossip, with
// hashicorp/memberlist, so that agents and servers can hand clients the
// current member list (and each member's load, zone and state) without a
// central registry.
//
// # What is gossiped
//
// Each node advertises a small versioned metadata blob (memberlist's
// NodeMeta, at most memberlist.MetaMaxSize = 512 bytes): the service name,
// the member's own service URL, its zone, a "leaving" flag, and its latest
// load record in the wire format (wire.AppendLoad), which also carries the
// drain state (s=draining) and the node's membership epoch (e=). Peers
// parse it with the same limits as any other network input: oversized,
// malformed or out-of-range metadata (wire.ParseLoad rejects absurd load)
// makes the peer invisible and is counted in Stats, never trusted.
//
// Load updates reuse memberlist's own alive-message path (UpdateNode)
// rather than a separate broadcast queue: the metadata is the single source
// of a member's state, a newer incarnation always replaces an older one,
// and push/pull anti-entropy repairs lost updates for free. The cost is one
// gossip broadcast per node per Config.LoadInterval (retransmitted about
// RetransmitMult*log(N) times), so the interval bounds the rate; urgent
// changes (drain, epoch bumps) are sent at once.
//
// # Member states
//
// A member is alive, draining (alive but asking for no new work), dead
// (failed, found by memberlist's probes) or left (said goodbye through
// Node.Leave). memberlist reports no event when it merely suspects a node,
// and its node list cannot be read without racing its internal state, so
// suspect members are reported as alive until they are declared dead.
// Members (the clients' view) lists only alive members of this service;
// Views lists all, keeping dead and left members for Config.DeadRetention.
//
// # Observers
//
// A node started with Config.Observer follows the cluster without serving:
// a client-side proxy joins this way to learn the members first-hand. It
// advertises observer metadata (the service name and a flag, no URL), so
// no node lists it; its own Members lists the serving nodes, and Watch
// tells it when that list changes. Its epoch follows the same rule as a
// member's, but it publishes none, so members' epochs do not follow it.
//
// # The membership epoch
//
// wire.Members carries an epoch, and clients accept a member list only if
// its epoch is greater than the one they hold. A client talks to different
// members whose views may differ while gossip converges, so the epoch must
// order views across nodes without coordination. The design is a hybrid
// logical clock bumped only on a local view change:
//
//	when this node's view (the alive member URLs and zones) changes:
//	    epoch = max(epoch+1, now in Unix microseconds, maxPeerEpoch+1)
//
// where maxPeerEpoch is the largest epoch seen in any peer's metadata. The
// epoch is published in the node's metadata so that other nodes raise
// maxPeerEpoch. Properties:
//
//   - Per node the epoch strictly grows, so a client talking to one member
//     never sees it go back.
//   - A node never adopts a peer's epoch without a view change of its own:
//     adopting would let a node whose view is still stale hand out a high
//     epoch with an old list, which clients would then prefer.
//   - After gossip quiesces all views are equal, and each node's last bump
//     happened after it saw the final view, so whatever epoch a client ends
//     up holding comes with the final view: clients converge.
//   - The maxPeerEpoch term makes a change observed after seeing a peer's
//     epoch sort after it (causality, independent of clocks); the wall
//     clock term keeps epochs growing across a restart of the whole
//     cluster, which a pure Lamport counter (restarting at 1) would not.
//
// The clock term is in microseconds, not milliseconds: a node that bumps
// after a change it could not yet have heard of through a peer's epoch
// still sorts after the lists published before the change began, unless
// both fall in the same microsecond (in milliseconds a test caught a node
// handing out a post-drain list with the same epoch as a pre-drain one).
//
// The trade-off: epochs are large numbers (microseconds since 1970), and
// two concurrent changes seen by different nodes in different orders are
// ordered arbitrarily until both nodes have seen both (no algorithm without
// consensus avoids that). A node whose clock runs far ahead pushes everyone's
// epochs forward, which is harmless because only the order matters; a clock
// far behind is outvoted by maxPeerEpoch.
package gossip
