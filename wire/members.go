package wire

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
)

// AppendMembers appends the members record of m to dst and returns the
// extended buffer. A zero Weight and an empty Zone are left out.
//
// AppendMembers does not validate m; call Validate first on a Members that
// ParseMembers did not produce. An invalid field is written as it is, except
// that a byte which could split the record or the header line (';', '#',
// white space, control or non-ASCII) is written as ','. No valid URL or zone
// contains one, and ',' makes the receiver refuse the record instead of
// reading a different member list out of it.
func AppendMembers(dst []byte, m Members) []byte {
	dst = append(dst, "v="...)
	dst = strconv.AppendInt(dst, Version, 10)
	dst = append(dst, ";e="...)
	dst = strconv.AppendUint(dst, m.Epoch, 10)
	for _, mb := range m.Members {
		dst = append(dst, ";m="...)
		dst = appendText(dst, mb.URL)
		if mb.Weight != 0 {
			dst = append(dst, "#w="...)
			dst = strconv.AppendFloat(dst, mb.Weight, 'g', -1, 64)
		}
		if mb.Zone != "" {
			dst = append(dst, "#z="...)
			dst = appendText(dst, mb.Zone)
		}
	}
	return dst
}

// appendText appends s, replacing each byte that could break the framing
// with ','.
func appendText(dst []byte, s string) []byte {
	start := len(dst)
	dst = append(dst, s...)
	for i, c := range dst[start:] {
		if c <= ' ' || c >= 0x7f || c == ';' || c == '#' {
			dst[start+i] = ','
		}
	}
	return dst
}

// String returns the members record of m, as AppendMembers writes it.
func (m Members) String() string {
	n := 32
	for _, mb := range m.Members {
		n += len(";m=#w=#z=") + len(mb.URL) + len(mb.Zone) + 24
	}
	return string(AppendMembers(make([]byte, 0, n), m))
}

// encodedLen returns len(AppendMembers(nil, m)) without building it.
func (m Members) encodedLen() int {
	var buf [32]byte
	n := len("v=1;e=") + len(strconv.AppendUint(buf[:0], m.Epoch, 10))
	for _, mb := range m.Members {
		n += len(";m=") + len(mb.URL)
		if mb.Weight != 0 {
			n += len("#w=") + len(strconv.AppendFloat(buf[:0], mb.Weight, 'g', -1, 64))
		}
		if mb.Zone != "" {
			n += len("#z=") + len(mb.Zone)
		}
	}
	return n
}

// Validate reports whether m is within the bounds ParseMembers enforces, so
// that ParseMembers(m.String()) returns m. That includes the encoded length:
// MaxMembers long URLs do not fit in MaxMembersLen bytes.
func (m Members) Validate() error {
	if len(m.Members) > MaxMembers {
		return fmt.Errorf("%w: members record has %d members, limit %d", ErrTooLarge, len(m.Members), MaxMembers)
	}
	for i, mb := range m.Members {
		if err := checkURL(i, mb.URL); err != nil {
			return err
		}
		if mb.Weight != 0 && !validWeight(mb.Weight) {
			return fmt.Errorf("%w: members m[%d] w=%g, want 0 < w <= %g", ErrOutOfRange, i, mb.Weight, float64(MaxWeight))
		}
		if mb.Zone != "" {
			if err := checkZone(i, mb.Zone); err != nil {
				return err
			}
		}
	}
	if err := checkDuplicates(m.Members); err != nil {
		return err
	}
	if n := m.encodedLen(); n > MaxMembersLen {
		return fmt.Errorf("%w: members record encodes to %d bytes, limit %d", ErrTooLarge, n, MaxMembersLen)
	}
	return nil
}

// ParseMembers parses a members record. It refuses a record longer than
// MaxMembersLen or with more than MaxMembers members (ErrTooLarge), one whose
// first pair is not an integer v (ErrMalformed) or is an integer other than 1
// (ErrVersion), a weight or zone outside its range (ErrOutOfRange), and
// anything else off the grammar (ErrMalformed): a missing e, a repeated key
// or attribute, a repeated member URL, or a URL without a scheme and host.
// Keys and attributes it does not know are skipped. White space is allowed
// around each pair only.
//
// The URL and Zone strings of the result share memory with s.
func ParseMembers(s string) (Members, error) {
	if len(s) > MaxMembersLen {
		return Members{}, fmt.Errorf("%w: members record is %d bytes, limit %d", ErrTooLarge, len(s), MaxMembersLen)
	}
	rest, more, err := parseVersion("members", s)
	if err != nil {
		return Members{}, err
	}
	var m Members
	if n := strings.Count(rest, "m="); n > 0 {
		m.Members = make([]Member, 0, min(n, MaxMembers))
	}
	var (
		seenE   bool
		unknown map[string]struct{} // keys of a newer minor version
		attrs   map[string]struct{} // reused for each member's unknown attributes
	)
	for more {
		var pair string
		pair, rest, more = cutPair(rest)
		key, val, err := splitPair("members", pair)
		if err != nil {
			return Members{}, err
		}
		switch key {
		case "v":
			return Members{}, fmt.Errorf("%w: members key \"v\" repeated", ErrMalformed)
		case "e":
			if seenE {
				return Members{}, fmt.Errorf("%w: members key \"e\" repeated", ErrMalformed)
			}
			seenE = true
			n, kind := parseUint(val)
			switch kind {
			case numOK:
			case numSyntax:
				return Members{}, fmt.Errorf("%w: members e=%q is not an integer", ErrMalformed, clip(val))
			default:
				return Members{}, fmt.Errorf("%w: members e=%q, want 0..%d", ErrOutOfRange, clip(val), uint64(math.MaxUint64))
			}
			m.Epoch = n
		case "m":
			if len(m.Members) == MaxMembers {
				return Members{}, fmt.Errorf("%w: members record has more than %d members", ErrTooLarge, MaxMembers)
			}
			mb, err := parseMember(len(m.Members), val, &attrs)
			if err != nil {
				return Members{}, err
			}
			m.Members = append(m.Members, mb)
		default:
			if unknown == nil {
				unknown = make(map[string]struct{})
			}
			if _, ok := unknown[key]; ok {
				return Members{}, fmt.Errorf("%w: members key %q repeated", ErrMalformed, clip(key))
			}
			unknown[key] = struct{}{}
		}
	}
	if !seenE {
		return Members{}, fmt.Errorf("%w: members record has no e", ErrMalformed)
	}
	if len(m.Members) == 0 {
		m.Members = nil
	}
	if err := checkDuplicates(m.Members); err != nil {
		return Members{}, err
	}
	// A weight may re-encode longer than it was written ("1e5" becomes
	// "100000"); refuse what would not survive a round trip.
	if n := m.encodedLen(); n > MaxMembersLen {
		return Members{}, fmt.Errorf("%w: members record re-encodes to %d bytes, limit %d", ErrTooLarge, n, MaxMembersLen)
	}
	return m, nil
}

// parseMember parses the value of the i'th m pair, which splitPair has
// checked. *unknown is scratch space for attribute names, made on first use
// and cleared for each member.
func parseMember(i int, val string, unknown *map[string]struct{}) (Member, error) {
	u, rest, more := strings.Cut(val, "#")
	if err := checkURL(i, u); err != nil {
		return Member{}, err
	}
	mb := Member{URL: u}
	var seenW, seenZ bool
	clear(*unknown)
	for more {
		var attr string
		attr, rest, more = strings.Cut(rest, "#")
		key, v, ok := strings.Cut(attr, "=")
		switch {
		case !ok || !isToken(key):
			return Member{}, fmt.Errorf("%w: members m[%d] attribute %q is not #key=value", ErrMalformed, i, clip(attr))
		case v == "":
			return Member{}, fmt.Errorf("%w: members m[%d] attribute %q has an empty value", ErrMalformed, i, clip(key))
		}
		switch key {
		case "w":
			if seenW {
				return Member{}, fmt.Errorf("%w: members m[%d] attribute \"w\" repeated", ErrMalformed, i)
			}
			seenW = true
			f, kind := parseFloat(v)
			switch {
			case kind == numSyntax:
				return Member{}, fmt.Errorf("%w: members m[%d] w=%q is not a decimal number", ErrMalformed, i, clip(v))
			case kind != numOK || !validWeight(f):
				return Member{}, fmt.Errorf("%w: members m[%d] w=%q, want 0 < w <= %g", ErrOutOfRange, i, clip(v), float64(MaxWeight))
			}
			mb.Weight = f
		case "z":
			if seenZ {
				return Member{}, fmt.Errorf("%w: members m[%d] attribute \"z\" repeated", ErrMalformed, i)
			}
			seenZ = true
			if err := checkZone(i, v); err != nil {
				return Member{}, err
			}
			mb.Zone = v
		default:
			if *unknown == nil {
				*unknown = make(map[string]struct{})
			}
			if _, ok := (*unknown)[key]; ok {
				return Member{}, fmt.Errorf("%w: members m[%d] attribute %q repeated", ErrMalformed, i, clip(key))
			}
			(*unknown)[key] = struct{}{}
		}
	}
	return mb, nil
}

// validWeight reports whether w is an explicit weight a record may carry.
func validWeight(w float64) bool {
	return isFinite(w) && w > 0 && w <= MaxWeight
}

// checkZone checks a non-empty zone name.
func checkZone(i int, z string) error {
	switch {
	case len(z) > MaxZoneLen:
		return fmt.Errorf("%w: members m[%d] zone %q is %d bytes, want 1..%d", ErrOutOfRange, i, clip(z), len(z), MaxZoneLen)
	case !isToken(z):
		return fmt.Errorf("%w: members m[%d] zone %q is not a token of [A-Za-z0-9._-]", ErrMalformed, i, clip(z))
	}
	return nil
}

// checkURL checks the URL of member i: at most MaxURLLen bytes of visible
// ASCII without ';', '#' or ',', a lower-case scheme followed by "//", and a
// host that net/url accepts.
func checkURL(i int, u string) error {
	if len(u) > MaxURLLen {
		return fmt.Errorf("%w: members m[%d] URL %q is %d bytes, limit %d", ErrTooLarge, i, clip(u), len(u), MaxURLLen)
	}
	if u == "" {
		return fmt.Errorf("%w: members m[%d] URL is empty", ErrMalformed, i)
	}
	for j := 0; j < len(u); j++ {
		if c := u[j]; c <= ' ' || c >= 0x7f || c == ';' || c == '#' || c == ',' {
			return fmt.Errorf("%w: members m[%d] URL %q has white space, ';', '#', ',' or a byte outside visible ASCII", ErrMalformed, i, clip(u))
		}
	}
	// RFC 3986 scheme, lower case only, and an authority.
	n := 0
	for n < len(u) && ('a' <= u[n] && u[n] <= 'z' || n > 0 && ('0' <= u[n] && u[n] <= '9' || u[n] == '+' || u[n] == '-' || u[n] == '.')) {
		n++
	}
	if n == 0 || !strings.HasPrefix(u[n:], "://") {
		return fmt.Errorf("%w: members m[%d] URL %q does not start with a lower-case scheme and \"://\"", ErrMalformed, i, clip(u))
	}
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return fmt.Errorf("%w: members m[%d] URL %q does not parse", ErrMalformed, i, clip(u))
	case p.Hostname() == "" || strings.HasSuffix(p.Host, ":"):
		return fmt.Errorf("%w: members m[%d] URL %q has no host, or an empty port", ErrMalformed, i, clip(u))
	}
	return nil
}

// checkDuplicates refuses a URL listed twice.
func checkDuplicates(ms []Member) error {
	// Pairwise is cheaper than a map for the usual handful of members.
	if len(ms) <= 16 {
		for i := range ms {
			for j := range i {
				if ms[i].URL == ms[j].URL {
					return fmt.Errorf("%w: members m[%d] and m[%d] are both %q", ErrMalformed, j, i, clip(ms[i].URL))
				}
			}
		}
		return nil
	}
	first := make(map[string]int, len(ms))
	for i, mb := range ms {
		if j, ok := first[mb.URL]; ok {
			return fmt.Errorf("%w: members m[%d] and m[%d] are both %q", ErrMalformed, j, i, clip(mb.URL))
		}
		first[mb.URL] = i
	}
	return nil
}
