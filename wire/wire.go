// Package wire owns the compact, versioned format in which members tell
// directors about their load and about the service's membership.
//
// The same two records travel on every transport: as HTTP response headers
// (LoadHeader, MembersHeader) today, and inside gRPC trailers and the TCP
// adapter's frames later. Parsers accept only bounded input, tolerate keys
// they do not know (a newer minor version), and refuse an unknown major
// version with ErrVersion, so a hostile or broken member can make a report be
// ignored but never crash or wedge a director.
//
// Load record, one line of ';'-separated key=value pairs, version first:
//
//	v=1;t=1732770000123;q=3;c=4;u=0.75;s=ok;e=17;l=8200
//
//	v  major version, must be 1
//	t  measurement time, Unix milliseconds (required, > 0)
//	q  requests in flight at the member (0..MaxInFlight, default 0)
//	c  concurrency capacity, 0 = unknown (0..MaxInFlight)
//	u  utilisation, 1.0 = fully busy (0..MaxUtil, finite, default 0)
//	s  state: ok or draining (default ok)
//	e  membership epoch the member knows (optional, 0 = none)
//	l  the member's own recent service time, microseconds: how long its
//	   handler took, without the network (0..MaxLatencyMicros, 0 = unknown).
//	   Added in minor version 1.1; older readers skip it.
//
// Members record:
//
//	v=1;e=17;m=http://10.0.0.1:8080#w=2#z=eu-1;m=http://10.0.0.2:8080
//
//	e  membership epoch; a director never lets a lower epoch replace a higher one
//	m  one member: its URL, then optional #w=WEIGHT (0 < w <= MaxWeight) and
//	   #z=ZONE attributes. URLs must have a scheme and host and contain none of
//	   ';', '#', ',' or white space.
//
// Numbers are plain decimals (no sign other than a leading '-', no hex, no
// '_'); values are visible ASCII without ',' (URLs percent-encode the rest);
// schemes are lower case; e=0 is allowed in a members record. A value that
// is not a number is ErrMalformed, a number outside its range ErrOutOfRange,
// and a record or URL over its limit ErrTooLarge. In practice MaxMembersLen
// binds before MaxMembers × MaxURLLen does.
package wire

import "errors"

// Header names used by the HTTP adapter and middleware.
const (
	LoadHeader    = "Smartclient-Load"
	MembersHeader = "Smartclient-Members"
)

// Version is the major version this package writes and the only one it reads.
const Version = 1

// Bounds applied by the parsers. Anything larger is refused, not clamped.
const (
	MaxLoadLen    = 512      // bytes in a load record
	MaxMembersLen = 64 << 10 // bytes in a members record
	MaxMembers    = 1024     // members in one record
	MaxInFlight   = 1 << 20  // q and c
	MaxUtil       = 1000.0   // u
	MaxWeight     = 1e6      // member weight
	MaxZoneLen    = 64       // bytes in a zone name
	MaxURLLen     = 512      // bytes in a member URL

	MaxLatencyMicros = 3_600_000_000 // l: one hour
)

// Sentinel errors; every parse error wraps exactly one of them and names the
// offending key or value.
var (
	ErrMalformed  = errors.New("wire: malformed record")
	ErrVersion    = errors.New("wire: unsupported version")
	ErrTooLarge   = errors.New("wire: record too large")
	ErrOutOfRange = errors.New("wire: value out of range")
)

// State is a member's self-declared lifecycle state.
type State uint8

const (
	// StateOK means the member accepts new work.
	StateOK State = iota
	// StateDraining means the member finishes in-flight work but wants no new work.
	StateDraining
)

// Load is one member's report of its own load.
type Load struct {
	TimeMillis int64   // measurement time, Unix milliseconds
	InFlight   int     // requests in flight at the member
	Capacity   int     // concurrency capacity, 0 = unknown
	Util       float64 // utilisation, 1.0 = fully busy
	State      State
	Epoch      uint64 // membership epoch known to the member, 0 = none
	// LatencyMicros is the member's own recent service time in
	// microseconds (an average it keeps itself), 0 = unknown.
	LatencyMicros int64
}

// Member is one entry of a membership record.
type Member struct {
	URL    string
	Weight float64 // 0 means the default weight of 1
	Zone   string
}

// Members is a membership record: the full member list at an epoch.
type Members struct {
	Epoch   uint64
	Members []Member
}
