package download

import (
	"errors"
	"strconv"
	"strings"
)

// ContentRange is a parsed Content-Range header of a single-range reply
// (RFC 9110 §14.4): bytes First-Last/Total, or bytes */Total for an
// unsatisfied range (then First and Last are -1). Total is -1 when the
// server wrote "*" (length unknown).
type ContentRange struct {
	First, Last, Total int64
}

// Unsatisfied reports whether the header was "bytes */TOTAL".
func (c ContentRange) Unsatisfied() bool { return c.First < 0 }

// String formats c as a Content-Range value.
func (c ContentRange) String() string {
	total := "*"
	if c.Total >= 0 {
		total = strconv.FormatInt(c.Total, 10)
	}
	if c.Unsatisfied() {
		return "bytes */" + total
	}
	return "bytes " + strconv.FormatInt(c.First, 10) + "-" + strconv.FormatInt(c.Last, 10) + "/" + total
}

var errContentRange = errors.New("malformed Content-Range")

// ParseContentRange parses a Content-Range value. It accepts only the
// "bytes" unit (case-insensitive), decimal numbers without signs that fit
// an int64, First <= Last, and Last < Total when Total is known; "*/*" is
// refused. Surrounding white space is ignored. The error quotes at most 80
// bytes of s.
func ParseContentRange(s string) (ContentRange, error) {
	bad := func(why string) (ContentRange, error) {
		return ContentRange{}, errors.New(errContentRange.Error() + " " + quote(s) + ": " + why)
	}
	s = strings.Trim(s, " \t")
	unit, rest, ok := strings.Cut(s, " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return bad(`want "bytes FIRST-LAST/TOTAL"`)
	}
	rest = strings.TrimLeft(rest, " ")
	rng, total, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no /TOTAL")
	}
	c := ContentRange{First: -1, Last: -1, Total: -1}
	if total != "*" {
		n, ok := parseUint(total)
		if !ok {
			return bad("TOTAL is not a decimal number")
		}
		c.Total = n
	}
	if rng == "*" {
		if c.Total < 0 {
			return bad("neither range nor total")
		}
		return c, nil
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return bad("no FIRST-LAST")
	}
	var ok1, ok2 bool
	c.First, ok1 = parseUint(first)
	c.Last, ok2 = parseUint(last)
	switch {
	case !ok1 || !ok2:
		return bad("FIRST or LAST is not a decimal number")
	case c.First > c.Last:
		return bad("FIRST after LAST")
	case c.Total >= 0 && c.Last >= c.Total:
		return bad("LAST not below TOTAL")
	}
	return c, nil
}

// parseUint parses a non-empty string of ASCII digits that fits an int64.
// strconv alone would accept a sign and underscores are refused by both.
func parseUint(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// quote quotes network input for an error message, at most about 80
// bytes of it whatever it holds.
func quote(s string) string {
	if len(s) > 80 {
		s = s[:80]
	}
	q := strconv.Quote(s)
	if len(q) > 80 {
		q = q[:80] + "…"
	}
	return q
}

// rangeHeader formats a Range request header for bytes [from, to); to < 0
// asks for everything from from on.
func rangeHeader(from, to int64) string {
	if to < 0 {
		return "bytes=" + strconv.FormatInt(from, 10) + "-"
	}
	return "bytes=" + strconv.FormatInt(from, 10) + "-" + strconv.FormatInt(to-1, 10)
}
