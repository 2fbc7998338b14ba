package wire

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Lexing shared by both records. Each helper allocates only when it returns
// an error, so a well-formed record parses without garbage.

// maxQuoted bounds how much of a hostile key or value an error message
// repeats, so a broken member cannot flood a director's log.
const maxQuoted = 32

// clip shortens s for an error message; callers quote it with %q.
func clip(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return s[:maxQuoted] + "..."
}

// trimOWS removes HTTP optional white space (SP and HTAB) from both ends.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// cutPair splits off the first ';'-separated pair of s, trimmed of white
// space; more reports whether a ';' followed it.
func cutPair(s string) (pair, rest string, more bool) {
	pair, rest, more = strings.Cut(s, ";")
	return trimOWS(pair), rest, more
}

// isToken reports whether s is a non-empty run of [A-Za-z0-9._-], the syntax
// of keys, attribute names and zones.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// isValue reports whether s holds only visible ASCII other than ';' and ','.
// A ',' means an intermediary folded two header lines into one, which no
// single record survives.
func isValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ';' || c == ',' {
			return false
		}
	}
	return true
}

// splitPair splits a trimmed pair into its key and value.
func splitPair(rec, pair string) (key, val string, err error) {
	key, val, ok := strings.Cut(pair, "=")
	switch {
	case pair == "":
		return "", "", fmt.Errorf("%w: %s has an empty pair", ErrMalformed, rec)
	case !ok:
		return "", "", fmt.Errorf("%w: %s pair %q has no '='", ErrMalformed, rec, clip(pair))
	case !isToken(key):
		return "", "", fmt.Errorf("%w: %s key %q is not a token of [A-Za-z0-9._-]", ErrMalformed, rec, clip(key))
	case val == "":
		return "", "", fmt.Errorf("%w: %s key %q has an empty value", ErrMalformed, rec, clip(key))
	case !isValue(val):
		return "", "", fmt.Errorf("%w: %s %s=%q has white space, ',' or a byte outside visible ASCII", ErrMalformed, rec, clip(key), clip(val))
	}
	return key, val, nil
}

// parseVersion checks that s opens with v=1 and returns what follows it.
func parseVersion(rec, s string) (rest string, more bool, err error) {
	pair, rest, more := cutPair(s)
	key, val, err := splitPair(rec, pair)
	if err != nil {
		return "", false, err
	}
	if key != "v" {
		return "", false, fmt.Errorf("%w: %s starts with %q, want v=%d first", ErrMalformed, rec, clip(pair), Version)
	}
	n, kind := parseUint(val)
	switch {
	case kind == numSyntax:
		return "", false, fmt.Errorf("%w: %s v=%q is not an integer", ErrMalformed, rec, clip(val))
	case kind != numOK || n != Version:
		return "", false, fmt.Errorf("%w: %s v=%q, want %d", ErrVersion, rec, clip(val), Version)
	}
	return rest, more, nil
}

// numKind classifies a number's text.
type numKind uint8

const (
	numOK       numKind = iota
	numSyntax           // not a number in this format's syntax
	numNegative         // below zero
	numOverflow         // too large for the type
	numInfinite         // NaN or an infinity
)

// parseUint parses an optional '-' and one or more decimal digits. A minus
// sign is accepted so that "-1" reports numNegative rather than numSyntax.
func parseUint(s string) (uint64, numKind) {
	neg := false
	if len(s) > 0 && s[0] == '-' {
		neg, s = true, s[1:]
	}
	if s == "" {
		return 0, numSyntax
	}
	var n uint64
	ovf := false
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return 0, numSyntax
		}
		if n > (math.MaxUint64-uint64(d))/10 {
			ovf = true
		}
		n = n*10 + uint64(d)
	}
	switch {
	case neg && (n != 0 || ovf):
		return 0, numNegative
	case ovf:
		return 0, numOverflow
	}
	return n, numOK
}

// isDecimal reports whether s is -?D+(.D+)?([eE][+-]?D+)?, the syntax that
// strconv.AppendFloat(.., 'g', -1, 64) writes for finite values. It keeps out
// what strconv.ParseFloat would also take: hex, underscores, "Inf", ".5".
func isDecimal(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() bool {
		j := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i > j
	}
	if !digits() {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(s)
}

// isNonFinite reports whether s is a spelling of NaN or an infinity that
// strconv.ParseFloat understands.
func isNonFinite(s string) bool {
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	return strings.EqualFold(s, "nan") || strings.EqualFold(s, "inf") || strings.EqualFold(s, "infinity")
}

// parseFloat parses a finite decimal number. Negative zero becomes zero so
// that a parsed record compares equal to its re-encoding.
func parseFloat(s string) (float64, numKind) {
	if !isDecimal(s) {
		if isNonFinite(s) {
			return 0, numInfinite
		}
		return 0, numSyntax
	}
	f, err := strconv.ParseFloat(s, 64)
	switch {
	case math.IsInf(f, 0):
		return 0, numOverflow
	case err != nil:
		return 0, numSyntax
	case f < 0:
		return 0, numNegative
	case f == 0:
		return 0, numOK
	}
	return f, numOK
}

// isFinite reports whether f is neither NaN nor an infinity.
func isFinite(f float64) bool {
	return !math.IsNaN(f) && !math.IsInf(f, 0)
}
