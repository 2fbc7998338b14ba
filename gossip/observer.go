package gossip

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/smartclient/smartclient/wire"
)

// An observer (Config.Observer) is a full memberlist node that advertises
// itself as serving nothing. It is a full node rather than a passive reader
// because memberlist spreads changes by pushing them to the nodes it knows:
// a node the others refuse (memberlist's AliveDelegate) or never learn of
// would only hear of changes through its own periodic push/pull, every
// PushPullInterval (30s on a LAN). serf and Consul do the same for their
// non-serving nodes: Consul's client agents are ordinary gossip members
// told apart from servers by a role tag, and consumers filter on the tag.
// Here the tag is flagObserver in the metadata, and the filter is in every
// node's observe, so no node's Members or Views ever lists an observer.
// Nodes built before observers existed refuse the flag as malformed
// metadata, which also keeps the observer out of their lists.
//
// The cost of being a full node: members probe the observer and relay
// gossip through it, so they must reach its gossip address (UDP and TCP),
// and an observer that vanishes without Leave is suspected and declared
// dead like any node (which changes no member list).

// observerName is an observer's default node name: memberlist needs names
// to be unique, and an observer has no URL to be named after.
func observerName() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("gossip: observer name: %w", err)
	}
	return "observer-" + hex.EncodeToString(b[:]), nil
}

// Watch returns the clients' view, as Members does, and a channel that is
// closed once a different view (with a higher epoch) replaces it. It never
// blocks. To follow the membership, receive from the channel and call Watch
// again; a change between two calls is never missed, because the channel
// of a replaced view is already closed. After Shutdown or Leave the channel
// is never closed.
func (n *Node) Watch() (wire.Members, <-chan struct{}) {
	s := n.snap.Load()
	return wire.Members{Epoch: s.members.Epoch, Members: append([]wire.Member(nil), s.members.Members...)}, s.next
}
