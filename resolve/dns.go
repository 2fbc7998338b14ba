package resolve

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/smartclient/smartclient/balance"
)

// DNS publication: the certificate envelope, base64 (standard alphabet,
// padded), split into character-strings of at most 255 bytes, in a single
// TXT record at _smartclient.SERVICE.ZONE. Members may also be published
// as SRV records at _smartclient._tcp.SERVICE.ZONE (see LookupMembers).
const (
	txtLabel = "_smartclient"
	srvLabel = "_smartclient._tcp"
	// ednsSize is the UDP answer size we advertise; a bigger answer comes
	// back truncated and is fetched again over TCP.
	ednsSize = 4096
	// maxTXTData leaves room in a 64 KiB DNS message for the header,
	// question and owner name around the TXT data.
	maxTXTData = 65535 - 1024
)

// TXTName is the owner name of service's certificate TXT record in zone.
func TXTName(service, zone string) string {
	return txtLabel + "." + service + "." + dns.Fqdn(zone)
}

// SRVName is the owner name of service's member SRV records in zone.
func SRVName(service, zone string) string {
	return srvLabel + "." + service + "." + dns.Fqdn(zone)
}

// DNSRoot fetches certificates from TXT records, asking one DNS server
// directly (an authoritative server or a resolver): UDP first with EDNS0,
// then TCP when the answer is truncated, as certificates rarely fit in 512
// bytes. DNS messages are at most 64 KiB, which bounds every read; the
// decoded certificate is further bounded by MaxSize.
type DNSRoot struct {
	// Server is HOST:PORT of the DNS server to ask.
	Server string
	// Zone is the zone the records live under, e.g. "example.com".
	Zone string
	// Net is "" (UDP, then TCP on truncation) or "tcp" (TCP only).
	Net string
	// MaxSize bounds the decoded certificate; 0 means MaxCertSize.
	MaxSize int
	// Timeout bounds each DNS exchange (dial, write, read); 0 means
	// DefaultDNSTimeout. Cancelling Fetch's context ends it sooner.
	Timeout time.Duration
}

// DefaultDNSTimeout bounds one DNS exchange when DNSRoot.Timeout is 0.
const DefaultDNSTimeout = 5 * time.Second

func (d *DNSRoot) String() string {
	return (&url.URL{Scheme: "dns", Host: d.Server, Path: "/" + strings.TrimSuffix(d.Zone, ".")}).String()
}

func parseDNSRoot(s string, u *url.URL) (Root, error) {
	if u.Hostname() == "" {
		return nil, fmt.Errorf("resolve: root %q: missing DNS server (want dns://SERVER[:PORT]/ZONE)", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("resolve: root %q: bad port %q", s, p)
		}
	}
	zone := strings.TrimSuffix(strings.TrimPrefix(u.Path, "/"), ".")
	if zone == "" {
		return nil, fmt.Errorf("resolve: root %q: missing zone (want dns://SERVER[:PORT]/ZONE)", s)
	}
	if _, ok := dns.IsDomainName(zone); !ok || strings.ContainsAny(zone, "/\\ ") || strings.Contains(zone, "..") {
		return nil, fmt.Errorf("resolve: root %q: zone %q is not a domain name", s, zone)
	}
	return &DNSRoot{Server: hostPort(u, "53"), Zone: strings.ToLower(zone)}, nil
}

// Fetch looks up the TXT record and decodes it. Exactly one TXT record
// must be published at the name: two would leave it ambiguous which one
// the publisher meant.
func (d *DNSRoot) Fetch(ctx context.Context, service string) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, &RootError{Root: d.String(), Err: err} }
	if err := CheckService(service); err != nil {
		return fail(err)
	}
	name := TXTName(service, d.Zone)
	rrs, err := d.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return fail(err)
	}
	switch len(rrs) {
	case 0:
		return fail(fmt.Errorf("%w (no TXT record at %s)", ErrNotFound, name))
	case 1:
	default:
		return fail(fmt.Errorf("%d TXT records at %s, want exactly one", len(rrs), name))
	}
	data, err := DecodeTXT(rrs[0].(*dns.TXT).Txt, limitOf(d.MaxSize))
	if err != nil {
		return fail(fmt.Errorf("TXT record at %s: %w", name, err))
	}
	return data, nil
}

// SRV is one SRV record of a service's members.
type SRV struct {
	Target                 string // host name, without the trailing dot
	Port, Priority, Weight uint16
}

// LookupSRV returns the SRV records at _smartclient._tcp.SERVICE.ZONE,
// ordered by priority, then target and port.
func (d *DNSRoot) LookupSRV(ctx context.Context, service string) ([]SRV, error) {
	fail := func(err error) ([]SRV, error) { return nil, &RootError{Root: d.String(), Err: err} }
	if err := CheckService(service); err != nil {
		return fail(err)
	}
	name := SRVName(service, d.Zone)
	rrs, err := d.lookup(ctx, name, dns.TypeSRV)
	if err != nil {
		return fail(err)
	}
	var out []SRV
	for _, rr := range rrs {
		s := rr.(*dns.SRV)
		out = append(out, SRV{Target: strings.TrimSuffix(s.Target, "."), Port: s.Port, Priority: s.Priority, Weight: s.Weight})
	}
	if len(out) == 1 && out[0].Target == "" {
		// RFC 2782: a lone "." target means the service is decidedly
		// not available at this domain.
		return fail(fmt.Errorf("%w (SRV at %s says the service is not available)", ErrNotFound, name))
	}
	if len(out) == 0 {
		return fail(fmt.Errorf("%w (no SRV record at %s)", ErrNotFound, name))
	}
	slices.SortFunc(out, func(a, b SRV) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), strings.Compare(a.Target, b.Target), cmp.Compare(a.Port, b.Port))
	})
	return out, nil
}

// LookupMembers returns member hints from the SRV records at
// _smartclient._tcp.SERVICE.ZONE on server: the records of the lowest
// (most preferred) priority, as http://TARGET:PORT members weighted by the
// SRV weight (0 counts as 1, as in balance.Member). Higher-priority-number
// records are backups in RFC 2782 and are left out so clients do not load
// them. The hints are unsigned: use them to reach a service whose
// certificate is not at hand, never to widen a certificate's members.
func LookupMembers(ctx context.Context, server, zone, service string) ([]balance.Member, error) {
	return (&DNSRoot{Server: server, Zone: zone}).LookupMembers(ctx, service)
}

// LookupMembers is the package-level LookupMembers on d's server and zone.
func (d *DNSRoot) LookupMembers(ctx context.Context, service string) ([]balance.Member, error) {
	srvs, err := d.LookupSRV(ctx, service)
	if err != nil {
		return nil, err
	}
	var ms []balance.Member
	for _, s := range srvs {
		if s.Priority != srvs[0].Priority || s.Target == "" {
			continue
		}
		ms = append(ms, balance.Member{
			URL:    "http://" + net.JoinHostPort(s.Target, strconv.Itoa(int(s.Port))),
			Weight: float64(s.Weight),
		})
	}
	return ms, nil
}

// lookup asks the server for name/qtype and returns the answer records of
// that type at name, following CNAMEs inside the answer.
func (d *DNSRoot) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, fmt.Errorf("%q is not a valid domain name", name)
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(ednsSize, false)
	var r *dns.Msg
	var err error
	switch d.Net {
	case "", "udp":
		r, err = exchange(ctx, "udp", d.Server, m, d.Timeout)
		if err == nil && r.Truncated {
			r, err = exchange(ctx, "tcp", d.Server, m, d.Timeout)
		}
	case "tcp":
		r, err = exchange(ctx, "tcp", d.Server, m, d.Timeout)
	default:
		return nil, fmt.Errorf("unsupported DNS transport %q (want udp or tcp)", d.Net)
	}
	if err != nil {
		return nil, err
	}
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, name) || r.Question[0].Qtype != qtype {
		return nil, fmt.Errorf("DNS answer does not match the question for %s", name)
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, fmt.Errorf("%w (%s: NXDOMAIN)", ErrNotFound, name)
	default:
		return nil, fmt.Errorf("DNS answer for %s: %s", name, dns.RcodeToString[r.Rcode])
	}
	if r.Truncated {
		return nil, fmt.Errorf("DNS answer for %s truncated over TCP", name)
	}
	return answersFor(r, name, qtype), nil
}

// answersFor returns r's answer records of type qtype owned by name or by
// the end of a CNAME chain starting at name (at most 8 links).
func answersFor(r *dns.Msg, name string, qtype uint16) []dns.RR {
	target := name
	for range 8 {
		var out []dns.RR
		next := ""
		for _, rr := range r.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, target) || h.Class != dns.ClassINET {
				continue
			}
			if h.Rrtype == qtype {
				out = append(out, rr)
			} else if c, ok := rr.(*dns.CNAME); ok {
				next = c.Target
			}
		}
		if len(out) > 0 || next == "" {
			return out
		}
		target = next
	}
	return nil
}

// exchange sends m to server over network and returns the answer. miekg/dns
// only honours context deadlines, so the connection is closed when ctx
// ends to make cancellation prompt.
func exchange(ctx context.Context, network, server string, m *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	if timeout <= 0 {
		timeout = DefaultDNSTimeout
	}
	c := &dns.Client{Net: network, Timeout: timeout}
	conn, err := c.DialContext(ctx, server)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	defer conn.Close()
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		conn.Close()
		close(closed)
	})
	// If the closer already started, wait for it so that no goroutine
	// of ours outlives the call.
	defer func() {
		if !stop() {
			<-closed
		}
	}()
	r, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("DNS query over %s: %w", network, err)
	}
	return r, nil
}

// DecodeTXT reassembles a certificate from a TXT record's strings: they
// are concatenated, ASCII white space is dropped (some publishing tools
// wrap long values) and the result is decoded as padded standard base64.
// It never decodes more than limit bytes (0 means MaxCertSize): a longer
// value is ErrTooLarge before any decoding.
func DecodeTXT(parts []string, limit int) ([]byte, error) {
	limit = limitOf(limit)
	maxEnc := base64.StdEncoding.EncodedLen(limit)
	total := 0
	for _, p := range parts {
		total += len(p)
	}
	enc := make([]byte, 0, min(total, maxEnc))
	for _, p := range parts {
		if !strings.ContainsAny(p, " \t\n\r") { // the usual case, in one copy
			if len(enc)+len(p) > maxEnc {
				return nil, fmt.Errorf("%w: more than %d base64 characters (limit %d bytes)", ErrTooLarge, maxEnc, limit)
			}
			enc = append(enc, p...)
			continue
		}
		for i := 0; i < len(p); i++ {
			switch c := p[i]; c {
			case ' ', '\t', '\n', '\r':
			default:
				if len(enc) == maxEnc {
					return nil, fmt.Errorf("%w: more than %d base64 characters (limit %d bytes)", ErrTooLarge, maxEnc, limit)
				}
				enc = append(enc, c)
			}
		}
	}
	if len(enc) == 0 {
		return nil, errors.New("empty TXT record")
	}
	strict := base64.StdEncoding.Strict()
	data := make([]byte, strict.DecodedLen(len(enc)))
	n, err := strict.Decode(data, enc)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	if n > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, limit)
	}
	return data[:n], nil
}

// TXTStrings encodes a certificate for a TXT record: padded standard
// base64 split into 255-byte character-strings.
func TXTStrings(data []byte) []string {
	enc := base64.StdEncoding.EncodeToString(data)
	parts := make([]string, 0, len(enc)/255+1)
	for len(enc) > 255 {
		parts = append(parts, enc[:255])
		enc = enc[255:]
	}
	return append(parts, enc)
}

// TXTRecord builds the TXT record that publishes data as service's
// certificate in zone; its String() is a zone-file line. It fails when the
// certificate is too big for a DNS message (about 48 KiB): publish such
// certificates over HTTP or in a directory instead.
func TXTRecord(service, zone string, ttl uint32, data []byte) (*dns.TXT, error) {
	if err := CheckService(service); err != nil {
		return nil, err
	}
	name := TXTName(service, zone)
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, fmt.Errorf("resolve: %q is not a valid domain name", name)
	}
	if len(data) == 0 {
		return nil, errors.New("resolve: empty certificate")
	}
	parts := TXTStrings(data)
	size := 0
	for _, p := range parts {
		size += 1 + len(p)
	}
	if size > maxTXTData {
		return nil, fmt.Errorf("resolve: a %d-byte certificate needs %d bytes of TXT data, more than a DNS message holds (%d): publish it over HTTP or in a directory", len(data), size, maxTXTData)
	}
	return &dns.TXT{
		Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl},
		Txt: parts,
	}, nil
}
