package frontend

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits on what ReadBanner accepts from the network (RFC 4253 section 4.2).
const (
	// MaxIdentLen bounds the identification line, CR LF included.
	MaxIdentLen = 255
	// MaxBannerBytes bounds everything read before the identification line
	// is complete: the lines a server may send first, then the line itself.
	MaxBannerBytes = 8192
)

// Sentinel errors of banner parsing; every error ReadBanner and ParseIdent
// return wraps one of them.
var (
	// ErrNotSSH: the peer sent something that is not an SSH identification
	// (an HTTP server, a proxy's page, binary noise, a NUL byte).
	ErrNotSSH = errors.New("not an SSH server")
	// ErrOldProtocol: the peer speaks SSH 1 only (identification SSH-1.5-…).
	ErrOldProtocol = errors.New("SSH protocol 1 only")
	// ErrBannerTooLong: the identification line or what came before it
	// exceeded MaxIdentLen or MaxBannerBytes.
	ErrBannerTooLong = errors.New("SSH banner too long")
)

// Banner is a server's SSH identification:
// "SSH-" Proto "-" Software [" " Comments] CR LF.
type Banner struct {
	Proto    string // "2.0", or "1.99" for servers that also speak SSH 1
	Software string // e.g. "OpenSSH_9.2p1"
	Comments string // e.g. "Debian-2+deb12u6"; may be empty
}

// String is the identification line without CR LF.
func (b Banner) String() string {
	s := "SSH-" + b.Proto + "-" + b.Software
	if b.Comments != "" {
		s += " " + b.Comments
	}
	return s
}

// ParseIdent parses one identification line, with or without its line end.
// Only protocol 2.0 and 1.99 are accepted.
func ParseIdent(line string) (Banner, error) {
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if len(line)+2 > MaxIdentLen {
		return Banner{}, fmt.Errorf("%w: identification of %d bytes, at most %d", ErrBannerTooLong, len(line)+2, MaxIdentLen)
	}
	rest, ok := strings.CutPrefix(line, "SSH-")
	if !ok {
		return Banner{}, fmt.Errorf("%w: line %q does not start with SSH-", ErrNotSSH, clip(line))
	}
	ident, comments, _ := strings.Cut(rest, " ")
	proto, software, ok := strings.Cut(ident, "-")
	if !ok || proto == "" {
		return Banner{}, fmt.Errorf("%w: %q has no protocol version", ErrNotSSH, clip(line))
	}
	if !printable(proto) || !printable(software) || software == "" || strings.Contains(software, "-") {
		return Banner{}, fmt.Errorf("%w: %q has no valid software version", ErrNotSSH, clip(line))
	}
	if strings.ContainsFunc(comments, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		return Banner{}, fmt.Errorf("%w: %q has control or non-ASCII characters", ErrNotSSH, clip(line))
	}
	switch proto {
	case "2.0", "1.99":
	case "1.5", "1.3", "1.0":
		return Banner{}, fmt.Errorf("%w: %q", ErrOldProtocol, clip(line))
	default:
		return Banner{}, fmt.Errorf("%w: unknown protocol version %q", ErrNotSSH, clip(proto))
	}
	return Banner{Proto: proto, Software: software, Comments: comments}, nil
}

// ReadBanner reads a server's identification from r: it skips the other
// lines a server may send first (none may start with "SSH-") and parses the
// first line that starts with "SSH-". It reads at most MaxBannerBytes and
// does not bound time: the caller sets a deadline on the connection. Lines
// may end in CR LF or LF alone, as OpenSSH accepts.
func ReadBanner(r io.Reader) (Banner, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, MaxBannerBytes), 512)
	read, other := 0, 0
	var first []byte
	for {
		line, err := readLine(br)
		read += len(line)
		if err != nil {
			switch {
			case other > 0 && !errors.Is(err, io.EOF):
				// Name what came instead, for a peer that is not sshd
				// (an FTP greeting) and then waits.
				return Banner{}, fmt.Errorf("%w (after %d lines not starting with SSH-, the first %q)", err, other, clip(strings.TrimRight(string(first), "\r\n")))
			case errors.Is(err, io.EOF) && read >= MaxBannerBytes:
				return Banner{}, fmt.Errorf("%w: no identification in the first %d bytes", ErrBannerTooLong, MaxBannerBytes)
			case errors.Is(err, io.EOF) && read == 0:
				return Banner{}, fmt.Errorf("%w: connection closed before any banner", ErrNotSSH)
			case errors.Is(err, io.EOF):
				return Banner{}, fmt.Errorf("%w: connection closed in the banner after %d bytes", ErrNotSSH, read)
			}
			return Banner{}, err
		}
		if bytes.IndexByte(line, 0) >= 0 {
			return Banner{}, fmt.Errorf("%w: NUL byte in the banner", ErrNotSSH)
		}
		if bytes.HasPrefix(line, []byte("SSH-")) {
			return ParseIdent(string(line))
		}
		if other++; other == 1 {
			first = line
		}
	}
}

// readLine returns the next line with its LF, or io.EOF if the stream ends
// (or the limit is reached) before one is complete.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			if errors.Is(err, io.EOF) {
				return line, io.EOF
			}
			return line, err
		}
	}
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// clip shortens network input quoted in an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
