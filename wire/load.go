package wire

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// String returns the state as a load record writes it: "ok" or "draining".
func (s State) String() string {
	switch s {
	case StateOK:
		return "ok"
	case StateDraining:
		return "draining"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// AppendLoad appends the load record of l to dst and returns the extended
// buffer. Fields at their default (c=0, s=ok, e=0, l=0) are left out.
//
// AppendLoad does not validate l. An invalid field is written as it is, so
// the receiver refuses the record instead of the sender quietly repairing it;
// call Validate first on a Load that ParseLoad did not produce.
func AppendLoad(dst []byte, l Load) []byte {
	dst = append(dst, "v="...)
	dst = strconv.AppendInt(dst, Version, 10)
	dst = append(dst, ";t="...)
	dst = strconv.AppendInt(dst, l.TimeMillis, 10)
	dst = append(dst, ";q="...)
	dst = strconv.AppendInt(dst, int64(l.InFlight), 10)
	if l.Capacity != 0 {
		dst = append(dst, ";c="...)
		dst = strconv.AppendInt(dst, int64(l.Capacity), 10)
	}
	dst = append(dst, ";u="...)
	dst = strconv.AppendFloat(dst, l.Util, 'g', -1, 64)
	if l.State != StateOK {
		dst = append(dst, ";s="...)
		dst = append(dst, l.State.String()...)
	}
	if l.Epoch != 0 {
		dst = append(dst, ";e="...)
		dst = strconv.AppendUint(dst, l.Epoch, 10)
	}
	if l.LatencyMicros != 0 {
		dst = append(dst, ";l="...)
		dst = strconv.AppendInt(dst, l.LatencyMicros, 10)
	}
	return dst
}

// String returns the load record of l, as AppendLoad writes it.
func (l Load) String() string {
	var buf [128]byte
	return string(AppendLoad(buf[:0], l))
}

// Validate reports whether l is within the bounds ParseLoad enforces, so
// that ParseLoad(l.String()) returns l. The error wraps ErrOutOfRange.
func (l Load) Validate() error {
	switch {
	case l.TimeMillis <= 0:
		return fmt.Errorf("%w: load t=%d, want > 0", ErrOutOfRange, l.TimeMillis)
	case l.InFlight < 0 || l.InFlight > MaxInFlight:
		return fmt.Errorf("%w: load q=%d, want 0..%d", ErrOutOfRange, l.InFlight, MaxInFlight)
	case l.Capacity < 0 || l.Capacity > MaxInFlight:
		return fmt.Errorf("%w: load c=%d, want 0..%d", ErrOutOfRange, l.Capacity, MaxInFlight)
	case !isFinite(l.Util) || l.Util < 0 || l.Util > MaxUtil:
		return fmt.Errorf("%w: load u=%g, want 0..%g", ErrOutOfRange, l.Util, MaxUtil)
	case l.State != StateOK && l.State != StateDraining:
		return fmt.Errorf("%w: load s=%v, want ok or draining", ErrOutOfRange, l.State)
	case l.LatencyMicros < 0 || l.LatencyMicros > MaxLatencyMicros:
		return fmt.Errorf("%w: load l=%d, want 0..%d", ErrOutOfRange, l.LatencyMicros, int64(MaxLatencyMicros))
	}
	return nil
}

// Bits for the keys ParseLoad has seen.
const (
	seenT = 1 << iota
	seenQ
	seenC
	seenU
	seenS
	seenE
	seenL
)

// ParseLoad parses a load record. It refuses a record longer than
// MaxLoadLen (ErrTooLarge), one whose first pair is not an integer v
// (ErrMalformed) or is an integer other than 1 (ErrVersion), a value outside
// its documented range (ErrOutOfRange), and anything else off the grammar,
// including a repeated key or a missing t (ErrMalformed). Keys it does not
// know are skipped. White space is allowed around each pair only.
//
// ParseLoad does not allocate unless it returns an error.
func ParseLoad(s string) (Load, error) {
	if len(s) > MaxLoadLen {
		return Load{}, fmt.Errorf("%w: load record is %d bytes, limit %d", ErrTooLarge, len(s), MaxLoadLen)
	}
	rest, more, err := parseVersion("load", s)
	if err != nil {
		return Load{}, err
	}
	var l Load
	var seen uint8
	for more {
		done := s[:len(s)-len(rest)]
		var pair string
		pair, rest, more = cutPair(rest)
		key, val, err := splitPair("load", pair)
		if err != nil {
			return Load{}, err
		}
		var bit uint8
		switch key {
		case "v":
			return Load{}, fmt.Errorf("%w: load key \"v\" repeated", ErrMalformed)
		case "t":
			bit = seenT
			n, kind := parseUint(val)
			if err := intErr("t", val, kind, n, 1, math.MaxInt64); err != nil {
				return Load{}, err
			}
			l.TimeMillis = int64(n)
		case "q", "c":
			bit = seenQ
			if key == "c" {
				bit = seenC
			}
			n, kind := parseUint(val)
			if err := intErr(key, val, kind, n, 0, MaxInFlight); err != nil {
				return Load{}, err
			}
			if key == "q" {
				l.InFlight = int(n)
			} else {
				l.Capacity = int(n)
			}
		case "u":
			bit = seenU
			f, kind := parseFloat(val)
			switch {
			case kind == numSyntax:
				return Load{}, fmt.Errorf("%w: load u=%q is not a decimal number", ErrMalformed, clip(val))
			case kind != numOK || f > MaxUtil:
				return Load{}, fmt.Errorf("%w: load u=%q, want a finite 0..%g", ErrOutOfRange, clip(val), MaxUtil)
			}
			l.Util = f
		case "s":
			bit = seenS
			switch val {
			case "ok":
				l.State = StateOK
			case "draining":
				l.State = StateDraining
			default:
				return Load{}, fmt.Errorf("%w: load s=%q, want ok or draining", ErrOutOfRange, clip(val))
			}
		case "e":
			bit = seenE
			n, kind := parseUint(val)
			if err := intErr("e", val, kind, n, 0, math.MaxUint64); err != nil {
				return Load{}, err
			}
			l.Epoch = n
		case "l":
			bit = seenL
			n, kind := parseUint(val)
			if err := intErr("l", val, kind, n, 0, MaxLatencyMicros); err != nil {
				return Load{}, err
			}
			l.LatencyMicros = int64(n)
		default:
			// A newer minor version's key. The record is at most
			// MaxLoadLen bytes, so looking back for a repeat is cheap
			// and, unlike a set, needs no allocation.
			if hasKey(done, key) {
				return Load{}, fmt.Errorf("%w: load key %q repeated", ErrMalformed, clip(key))
			}
			continue
		}
		if seen&bit != 0 {
			return Load{}, fmt.Errorf("%w: load key %q repeated", ErrMalformed, key)
		}
		seen |= bit
	}
	if seen&seenT == 0 {
		return Load{}, fmt.Errorf("%w: load record has no t", ErrMalformed)
	}
	return l, nil
}

// intErr checks an integer parsed by parseUint against min..max.
func intErr(key, val string, kind numKind, n, min, max uint64) error {
	switch {
	case kind == numSyntax:
		return fmt.Errorf("%w: load %s=%q is not an integer", ErrMalformed, key, clip(val))
	case kind != numOK || n < min || n > max:
		return fmt.Errorf("%w: load %s=%q, want %d..%d", ErrOutOfRange, key, clip(val), min, max)
	}
	return nil
}

// hasKey reports whether the already-checked pairs in done include key.
func hasKey(done, key string) bool {
	for more := true; more; {
		var pair string
		pair, done, more = cutPair(done)
		if k, _, _ := strings.Cut(pair, "="); k == key {
			return true
		}
	}
	return false
}
