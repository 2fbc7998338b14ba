package dnsrr

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ErrBadZone: the zone name is not a valid domain name.
var ErrBadZone = errors.New("dnsrr: invalid zone name")

// View is an immutable set of addresses to answer with. A new View replaces
// the old one whenever health changes; nobody modifies a published View.
type View struct {
	// V4 and V6 are the addresses answered for A and AAAA queries, in
	// member order; answers rotate through them.
	V4, V6 []netip.Addr
	// Panic is set when no member was healthy and every member is answered.
	Panic bool
}

// Zone is the static part of every answer: the name served, the TTL and
// the bound on answers. Build it with NewZone; it is safe for concurrent
// use.
type Zone struct {
	name       string // canonical: lower case, fully qualified
	ttl        uint32
	maxAnswers int
	soa        *dns.SOA
	srv        *dns.SRV // nil: no SRV record (see WithSRV)
}

// NewZone returns the zone for name (a trailing dot is added if missing).
// ttl is rounded down to whole seconds (at least 0); maxAnswers <= 0 means
// every address.
func NewZone(name string, ttl time.Duration, maxAnswers int) (*Zone, error) {
	name = strings.ToLower(dns.Fqdn(name))
	if _, ok := dns.IsDomainName(name); !ok || name == "." {
		return nil, fmt.Errorf("%w: %q", ErrBadZone, name)
	}
	secs := uint32(max(ttl, 0) / time.Second)
	return &Zone{
		name:       name,
		ttl:        secs,
		maxAnswers: maxAnswers,
		soa: &dns.SOA{
			Hdr:     dns.RR_Header{Name: name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: secs},
			Ns:      name,
			Mbox:    "hostmaster." + name,
			Serial:  1,
			Refresh: 3600,
			Retry:   600,
			Expire:  86400,
			// Negative answers are cached no longer than positive ones.
			Minttl: secs,
		},
	}, nil
}

// Name returns the zone's canonical name.
func (z *Zone) Name() string { return z.name }

// WithSRV returns a copy of z that also answers SRV queries for
// _SERVICE._tcp.NAME (e.g. _http._tcp.web.example.) with one record
// pointing at NAME itself on port, the address records following in the
// additional section. One record suffices because members share a name
// only if they share a port; the record tells clients that port.
func (z *Zone) WithSRV(service string, port uint16) (*Zone, error) {
	owner := "_" + strings.ToLower(service) + "._tcp." + z.name
	if _, ok := dns.IsDomainName(owner); !ok || service == "" || strings.ContainsAny(service, ". ") {
		return nil, fmt.Errorf("dnsrr: invalid SRV service name %q", service)
	}
	c := *z
	c.srv = &dns.SRV{
		Hdr:    dns.RR_Header{Name: owner, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: z.ttl},
		Port:   port,
		Target: z.name,
	}
	return &c, nil
}

// Our UDP payload size, advertised in EDNS0 replies: the DNS flag day 2020
// value, which avoids IP fragmentation on ordinary paths.
const ednsUDPSize = 1232

// Answer returns the reply to req. v is the current view (nil means no
// members); turn picks where the rotation starts (the caller counts
// queries); udp says whether the reply goes over UDP, where it is truncated
// to the size the client accepts (512 bytes, or its EDNS0 size capped at
// 1232) with the TC bit set so that the client retries over TCP.
//
// Answer is pure and never panics on any message that miekg/dns unpacked.
func (z *Zone) Answer(req *dns.Msg, v *View, turn uint64, udp bool) *dns.Msg {
	m := new(dns.Msg)
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	if len(req.Question) > 0 {
		m.Question = []dns.Question{req.Question[0]}
	}
	size := dns.MaxMsgSize
	if udp {
		size = dns.MinMsgSize
	}
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(ednsUDPSize, opt.Do())
		if opt.Version() != 0 {
			// RFC 6891 6.1.3: only version 0 exists.
			m.Rcode = dns.RcodeBadVers
			return m
		}
		if udp {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), ednsUDPSize)
		}
	}
	switch {
	case req.Response:
		m.Rcode = dns.RcodeFormatError
		return m
	case req.Opcode != dns.OpcodeQuery:
		m.Rcode = dns.RcodeNotImplemented
		return m
	case len(req.Question) != 1:
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	switch {
	case q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY:
		m.Rcode = dns.RcodeRefused
		return m
	case name != z.name && !dns.IsSubDomain(z.name, name):
		// Not ours, and we do not recurse.
		m.Rcode = dns.RcodeRefused
		return m
	}
	m.Authoritative = true
	if v == nil {
		v = &View{}
	}
	switch {
	case z.srv != nil && name == z.srv.Hdr.Name:
		if q.Qtype == dns.TypeSRV || q.Qtype == dns.TypeANY {
			srv := *z.srv
			srv.Hdr.Name = q.Name
			m.Answer = []dns.RR{&srv}
			// The OPT record, if any, stays last.
			m.Extra = append(append(z.addrs(z.name, v.V4, turn), z.addrs(z.name, v.V6, turn)...), m.Extra...)
		} else {
			m.Ns = []dns.RR{z.soa}
		}
		return z.fit(m, size)
	case z.srv != nil && name == z.srv.Hdr.Name[strings.IndexByte(z.srv.Hdr.Name, '.')+1:]:
		// _tcp.NAME exists, with nothing of its own (RFC 8020): NODATA.
		m.Ns = []dns.RR{z.soa}
		return m
	case name != z.name:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{z.soa}
		return m
	}
	switch q.Qtype {
	case dns.TypeA:
		m.Answer = z.addrs(q.Name, v.V4, turn)
	case dns.TypeAAAA:
		m.Answer = z.addrs(q.Name, v.V6, turn)
	case dns.TypeANY:
		m.Answer = append(z.addrs(q.Name, v.V4, turn), z.addrs(q.Name, v.V6, turn)...)
	case dns.TypeSOA:
		m.Answer = []dns.RR{z.soa}
	}
	if len(m.Answer) == 0 {
		// NODATA: the name exists, the type does not (RFC 2308 2.2).
		m.Ns = []dns.RR{z.soa}
	}
	return z.fit(m, size)
}

// fit truncates m to size, setting TC if records were left out: over UDP
// the client's size, over TCP the protocol's limit (thousands of members).
func (z *Zone) fit(m *dns.Msg, size int) *dns.Msg {
	m.Truncate(size)
	return m
}

// addrs returns address records for as, starting at turn mod len(as) and
// wrapping, at most maxAnswers of them. The owner name echoes the
// question's spelling, as resolvers expect.
func (z *Zone) addrs(owner string, as []netip.Addr, turn uint64) []dns.RR {
	n := len(as)
	if n == 0 {
		return nil
	}
	k := n
	if z.maxAnswers > 0 && z.maxAnswers < n {
		k = z.maxAnswers
	}
	start := int(turn % uint64(n))
	out := make([]dns.RR, 0, k)
	for i := range k {
		a := as[(start+i)%n]
		hdr := dns.RR_Header{Name: owner, Class: dns.ClassINET, Ttl: z.ttl}
		if a.Is4() {
			hdr.Rrtype = dns.TypeA
			out = append(out, &dns.A{Hdr: hdr, A: a.AsSlice()})
		} else {
			hdr.Rrtype = dns.TypeAAAA
			out = append(out, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	return out
}
