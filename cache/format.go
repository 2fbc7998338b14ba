package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Every entry is one header line followed by the body:
//
//	smartclient-cache v1 sha256=<64 lower-case hex> len=<decimal>\n<body>
//
// The header lets Get tell a complete entry from a truncated or damaged
// one even though the body (a signed envelope, saved director state) is
// opaque to this package. The format is strict and canonical, so the
// only bytes that decode to a body are exactly the bytes encode wrote.
const (
	magic   = "smartclient-cache"
	version = "v1"
	// maxHeader bounds the search for the header's newline; a real
	// header is under 110 bytes.
	maxHeader = 256
)

// encode returns the on-disk form of body.
func encode(body []byte) []byte {
	sum := sha256.Sum256(body)
	b := make([]byte, 0, len(body)+120)
	b = fmt.Appendf(b, "%s %s sha256=%x len=%d\n", magic, version, sum, len(body))
	return append(b, body...)
}

// decode checks the header and returns the body, or an error that says
// what is wrong with b (the caller adds the file name and ErrCorrupt).
func decode(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("empty file")
	}
	nl := bytes.IndexByte(b[:min(len(b), maxHeader)], '\n')
	if nl < 0 {
		if len(b) < maxHeader {
			return nil, fmt.Errorf("truncated header: no newline in %d bytes", len(b))
		}
		return nil, fmt.Errorf("bad header: no newline in the first %d bytes", maxHeader)
	}
	fields := strings.Split(string(b[:nl]), " ")
	if fields[0] != magic {
		return nil, fmt.Errorf("bad header: does not start with %q", magic)
	}
	if len(fields) < 2 || fields[1] != version {
		v := ""
		if len(fields) >= 2 {
			v = fields[1]
		}
		return nil, fmt.Errorf("bad header: unsupported version %.20q (want %s)", v, version)
	}
	if len(fields) != 4 {
		return nil, fmt.Errorf("bad header: %d fields, want 4", len(fields))
	}
	hexSum, ok := strings.CutPrefix(fields[2], "sha256=")
	want, err := hex.DecodeString(hexSum)
	if !ok || err != nil || len(want) != sha256.Size || hex.EncodeToString(want) != hexSum {
		return nil, fmt.Errorf("bad header: checksum field %.80q is not sha256=<64 lower-case hex digits>", fields[2])
	}
	lenStr, ok := strings.CutPrefix(fields[3], "len=")
	n, err := strconv.ParseUint(lenStr, 10, 64)
	if !ok || err != nil || strconv.FormatUint(n, 10) != lenStr {
		return nil, fmt.Errorf("bad header: length field %.40q is not len=<decimal>", fields[3])
	}
	if n > MaxSize {
		return nil, fmt.Errorf("bad header: declares %d bytes, more than the %d-byte limit", n, MaxSize)
	}
	body := b[nl+1:]
	switch {
	case uint64(len(body)) < n:
		return nil, fmt.Errorf("truncated: body has %d of %d bytes", len(body), n)
	case uint64(len(body)) > n:
		return nil, fmt.Errorf("%d unexpected bytes after the %d-byte body", uint64(len(body))-n, n)
	}
	if got := sha256.Sum256(body); !bytes.Equal(got[:], want) {
		return nil, fmt.Errorf("checksum mismatch: header says sha256=%.12s…, body has sha256=%.12x…", hexSum, got)
	}
	return body, nil
}
