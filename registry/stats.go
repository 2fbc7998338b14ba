package registry

// Stats counts what a Source did, over all its Watch calls. Entry counts
// are per reading: an entry that stays malformed is counted each time the
// source reads it (every Consul answer, every etcd re-list or event).
type Stats struct {
	Updates  uint64 // updates emitted
	Resets   uint64 // of Updates, those with Reset set (the first of each Watch included)
	Reads    uint64 // answers read from the registry: lists, watch responses, blocking queries
	Skipped  uint64 // entries refused as malformed, oversized or out of range
	Excluded uint64 // entries left out as not serving: draining, down, failing health checks
	Dropped  uint64 // valid entries over the bounds: a repeated URL, more than wire.MaxMembers, wire.MaxMembersLen
	Errors   uint64 // failed requests and broken watches, each retried after a backoff

	LastError string // the last of Errors, "" if none
	Epoch     uint64 // epoch of the last update
	Members   int    // members in the last update
}
