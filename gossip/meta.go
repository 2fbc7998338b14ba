package gossip

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/hashicorp/memberlist"
	"github.com/smartclient/smartclient/wire"
)

// metaVersion is the first byte of every node metadata blob this package
// writes. A peer with another version is counted as malformed and ignored,
// so a future format can be rolled out by running both versions' readers.
const metaVersion = 1

// Limits on the text fields of the metadata. They are tighter than the wire
// limits because the whole blob must fit memberlist.MetaMaxSize (512 bytes)
// next to a load record of up to ~120 bytes.
const (
	maxServiceLen = 64
	maxMetaURLLen = 255
)

// Errors from parseMeta; Stats counts each kind.
var (
	errMetaTooLarge  = errors.New("gossip: node metadata too large")
	errMetaMalformed = errors.New("gossip: malformed node metadata")
)

// meta is the decoded node metadata: who the member is for clients and its
// latest load record (which also carries its drain state and epoch).
type meta struct {
	Service string
	URL     string
	Zone    string
	Load    wire.Load
	// Leaving is set by Node.Leave just before memberlist's leave message,
	// so peers can tell a graceful leave from a failure: memberlist's
	// NotifyLeave does not say which it was.
	Leaving bool
	// Observer marks a node that follows the cluster but serves nothing
	// (Config.Observer); only Service is set then.
	Observer bool
}

const (
	flagLeaving = 1
	// flagObserver marks an observer's metadata. Parsers written before it
	// refuse any flag but flagLeaving as malformed, so older nodes drop an
	// observer too (counting it in BadMeta) and never list it.
	flagObserver = 2
)

// appendMeta encodes m as
//
//	version(1) | flags(1) | len(service) service | len(url) url | len(zone) zone | load record
//
// where each len is one byte and the load record is wire.AppendLoad's text,
// running to the end of the blob. Lengths are checked by Config.Validate.
// An observer's metadata has flagObserver, the service, an empty url and
// zone, and no load record:
//
//	version(1) | flagObserver | len(service) service | 0 | 0
func appendMeta(dst []byte, m meta) []byte {
	if m.Observer {
		dst = append(dst, metaVersion, flagObserver, byte(len(m.Service)))
		dst = append(dst, m.Service...)
		return append(dst, 0, 0)
	}
	var flags byte
	if m.Leaving {
		flags |= flagLeaving
	}
	dst = append(dst, metaVersion, flags)
	for _, s := range []string{m.Service, m.URL, m.Zone} {
		dst = append(dst, byte(len(s)))
		dst = append(dst, s...)
	}
	return wire.AppendLoad(dst, m.Load)
}

// parseMeta decodes a peer's metadata. Nothing in it is trusted: sizes,
// version, text fields and the load record are all checked, and an error
// wraps errMetaTooLarge, errMetaMalformed or a wire error (wire.ErrOutOfRange
// for absurd load values).
func parseMeta(b []byte) (meta, error) {
	if len(b) > memberlist.MetaMaxSize {
		return meta{}, fmt.Errorf("%w: %d bytes, limit %d", errMetaTooLarge, len(b), memberlist.MetaMaxSize)
	}
	if len(b) < 2 || b[0] != metaVersion {
		return meta{}, fmt.Errorf("%w: missing or unknown version", errMetaMalformed)
	}
	if b[1]&^(flagLeaving|flagObserver) != 0 {
		return meta{}, fmt.Errorf("%w: unknown flags %#x", errMetaMalformed, b[1])
	}
	leaving, observer := b[1]&flagLeaving != 0, b[1]&flagObserver != 0
	b = b[2:]
	var fields [3]string
	for i := range fields {
		if len(b) == 0 || int(b[0]) > len(b)-1 {
			return meta{}, fmt.Errorf("%w: field %d overruns the blob", errMetaMalformed, i)
		}
		n := int(b[0])
		fields[i] = string(b[1 : 1+n])
		b = b[1+n:]
	}
	m := meta{Service: fields[0], URL: fields[1], Zone: fields[2], Leaving: leaving}
	if err := checkText("service", m.Service, maxServiceLen, false); err != nil {
		return meta{}, err
	}
	if observer {
		// Exactly what appendMeta writes: an observer has nothing else to say.
		if leaving || m.URL != "" || m.Zone != "" || len(b) != 0 {
			return meta{}, fmt.Errorf("%w: observer metadata with member fields", errMetaMalformed)
		}
		return meta{Service: m.Service, Observer: true}, nil
	}
	if err := checkText("zone", m.Zone, wire.MaxZoneLen, true); err != nil {
		return meta{}, err
	}
	if err := checkURL(m.URL); err != nil {
		return meta{}, fmt.Errorf("%w: %v", errMetaMalformed, err)
	}
	l, err := wire.ParseLoad(string(b))
	if err != nil {
		return meta{}, err
	}
	m.Load = l
	return m, nil
}

// checkText accepts printable ASCII without the wire separators ';' and '#',
// so a value from one peer cannot change the meaning of a record we hand on.
func checkText(what, s string, max int, emptyOK bool) error {
	if len(s) > max || (!emptyOK && s == "") {
		return fmt.Errorf("%w: %s is %d bytes, want %d..%d", errMetaMalformed, what, len(s), map[bool]int{true: 0, false: 1}[emptyOK], max)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ';' || c == '#' {
			return fmt.Errorf("%w: %s has byte %#x at %d", errMetaMalformed, what, c, i)
		}
	}
	return nil
}

// checkURL accepts an absolute URL with a host, within maxMetaURLLen, made
// of bytes the members record can carry unchanged.
func checkURL(s string) error {
	if len(s) == 0 || len(s) > maxMetaURLLen {
		return fmt.Errorf("url is %d bytes, want 1..%d", len(s), maxMetaURLLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ';' || c == '#' {
			return fmt.Errorf("url has byte %#x at %d", c, i)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("url %q is not absolute", s)
	}
	return nil
}
