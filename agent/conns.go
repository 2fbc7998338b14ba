package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

// How Sample.Conns was counted: Sample.ConnsFrom and the report's
// "connections_from".
const (
	ConnsFromNetlink = "netlink" // the kernel's sock_diag answer, filtered by port and state in the kernel
	ConnsFromProc    = "proc"    // /proc/net/tcp and /proc/net/tcp6, filtered here
)

// connCounter counts established TCP connections (IPv4 and IPv6) whose
// local port is the given one. It asks the kernel through netlink
// sock_diag and falls back to /proc/net/tcp{,6} when netlink fails: for
// that count only when the failure may pass (a timeout, a malformed
// reply), for good when netlink is refused (no socket in a sandbox, a
// kernel without inet_diag). Like Sampler, it is used from one goroutine
// at a time; its zero value is ready to use.
type connCounter struct {
	// netlink and proc count by one method; nil means the real adapters.
	// Tests put fakes here.
	netlink func(ctx context.Context, port uint16, buf []byte) (int, error)
	proc    func(port uint16) (int, error)

	refused bool   // netlink was refused: use /proc from now on
	buf     []byte // netlink receive buffer, kept between counts
}

// count returns the number of connections and the method that counted
// them. The error, when both methods fail, carries both reasons.
func (c *connCounter) count(ctx context.Context, port int) (int, string, error) {
	if port < 0 || port > 0xffff {
		return 0, "", fmt.Errorf("port %d out of range 0..65535", port)
	}
	p := uint16(port)
	var nlErr error
	if !c.refused {
		if c.buf == nil {
			c.buf = make([]byte, netlinkBufSize)
		}
		nl := c.netlink
		if nl == nil {
			nl = netlinkCount
		}
		n, err := nl(ctx, p, c.buf)
		if err == nil {
			return n, ConnsFromNetlink, nil
		}
		if ctx.Err() != nil {
			return 0, "", err
		}
		c.refused = netlinkRefused(err)
		nlErr = err
	}
	proc := c.proc
	if proc == nil {
		proc = procCount
	}
	n, err := proc(p)
	if err != nil {
		if nlErr != nil {
			return 0, "", fmt.Errorf("%w; fallback: %w", nlErr, err)
		}
		return 0, "", err
	}
	return n, ConnsFromProc, nil
}

// netlinkRefused tells a netlink failure that will not go away — no
// netlink socket, or a request the kernel turns down — from one that may
// pass.
func netlinkRefused(err error) bool {
	if errors.Is(err, errors.ErrUnsupported) {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EPERM, syscall.EACCES, syscall.EPROTONOSUPPORT,
		syscall.EAFNOSUPPORT, syscall.EOPNOTSUPP, syscall.ENOENT, syscall.EINVAL} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// procCount counts through /proc/net/tcp and /proc/net/tcp6; a missing
// tcp6 (IPv6 disabled) counts nothing.
func procCount(port uint16) (int, error) {
	total := 0
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		n, err := procCountFile(name, port)
		if errors.Is(err, fs.ErrNotExist) && name == "/proc/net/tcp6" {
			continue
		}
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

func procCountFile(name string, port uint16) (int, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := parseProcNetTCP(f, port)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

// Layouts and constants of linux/netlink.h, linux/sock_diag.h,
// linux/inet_diag.h and net/tcp_states.h, written out so that the parser
// and its tests build and run on any platform.
const (
	nlmsgHdrLen      = 16 // struct nlmsghdr
	inetDiagReqLen   = 56 // struct inet_diag_req_v2
	inetDiagMsgLen   = 72 // struct inet_diag_msg
	nlmsgNoop        = 1
	nlmsgError       = 2
	nlmsgDone        = 3
	sockDiagByFamily = 20
	nlmFRequest      = 0x1
	nlmFDump         = 0x300
	afInet           = 2
	afInet6          = 10
	ipprotoTCP       = 6
	tcpEstablished   = 1 // TCP_ESTABLISHED; also the st column of /proc/net/tcp
	inetDiagReqBC    = 1 // INET_DIAG_REQ_BYTECODE
	inetDiagBCSGE    = 2 // INET_DIAG_BC_S_GE
	inetDiagBCSLE    = 3 // INET_DIAG_BC_S_LE

	// netlinkBufSize holds any dump message: the kernel sizes them to the
	// reader's buffer but never above 32 KiB less the skb overhead.
	netlinkBufSize = 32 << 10
)

// inetDiagRequest is a SOCK_DIAG_BY_FAMILY dump request for the TCP
// sockets of family in state ESTABLISHED whose local port is port.
//
// The port filter is inet_diag bytecode run by the kernel: "sport >= port"
// then "sport <= port", each jumping past the end of the program (reject)
// when false. S_GE and S_LE are understood by every kernel with inet_diag,
// unlike the newer S_EQ. The parser checks port and state again, so a
// kernel that ignored the filter would cost time, not correctness.
func inetDiagRequest(family uint8, port uint16, seq uint32) []byte {
	const bcLen = 16 // two port comparisons of two 4-byte ops each
	const attrLen = 4 + bcLen
	b := make([]byte, nlmsgHdrLen+inetDiagReqLen+attrLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint16(b[6:], nlmFRequest|nlmFDump)
	ne.PutUint32(b[8:], seq)
	// pid (b[12:16]) 0: the kernel.
	r := b[nlmsgHdrLen:]
	r[0] = family
	r[1] = ipprotoTCP
	// idiag_ext 0, pad 0.
	ne.PutUint32(r[4:], 1<<tcpEstablished)
	// inet_diag_sockid zero: all sockets.
	a := r[inetDiagReqLen:]
	ne.PutUint16(a[0:], attrLen)
	ne.PutUint16(a[2:], inetDiagReqBC)
	bc := a[4:]
	// inet_diag_bc_op{code, yes, no}; a port is held in the next op's no.
	bc[0], bc[1] = inetDiagBCSGE, 8
	ne.PutUint16(bc[2:], bcLen+4) // no: past the end, reject
	ne.PutUint16(bc[6:], port)
	bc[8], bc[9] = inetDiagBCSLE, 8
	ne.PutUint16(bc[10:], 8+4)
	ne.PutUint16(bc[14:], port)
	return b
}

// parseInetDiag counts, in b (what one receive returned: one or more
// netlink messages), the inet_diag_msg records of established TCP sockets
// whose local port is port. done reports the NLMSG_DONE that ends the
// dump; the messages after it are not read. A netlink error, a dump that
// ended in error, and a truncated or malformed message are errors, with
// the count so far.
func parseInetDiag(b []byte, port uint16) (n int, done bool, err error) {
	ne := binary.NativeEndian
	for off := 0; off < len(b); {
		rest := b[off:]
		if len(rest) < nlmsgHdrLen {
			return n, false, fmt.Errorf("netlink message at byte %d: %d bytes left, less than the %d-byte header", off, len(rest), nlmsgHdrLen)
		}
		l := ne.Uint32(rest)
		if l < nlmsgHdrLen || uint64(l) > uint64(len(rest)) {
			return n, false, fmt.Errorf("netlink message at byte %d: length %d, want %d..%d", off, l, nlmsgHdrLen, len(rest))
		}
		body := rest[nlmsgHdrLen:l]
		switch typ := ne.Uint16(rest[4:]); typ {
		case sockDiagByFamily:
			if len(body) < inetDiagMsgLen {
				return n, false, fmt.Errorf("inet_diag_msg at byte %d: %d bytes, want at least %d", off, len(body), inetDiagMsgLen)
			}
			if f := body[0]; f != afInet && f != afInet6 {
				return n, false, fmt.Errorf("inet_diag_msg at byte %d: address family %d, want %d or %d", off, f, afInet, afInet6)
			}
			if body[1] == tcpEstablished && binary.BigEndian.Uint16(body[4:]) == port {
				n++
			}
		case nlmsgDone:
			// A dump that failed part way says so in its DONE message.
			if len(body) >= 4 {
				if e := int32(ne.Uint32(body)); e < 0 {
					return n, true, fmt.Errorf("sock_diag dump failed: %w", syscall.Errno(-int64(e)))
				}
			}
			return n, true, nil
		case nlmsgError:
			if len(body) < 4 {
				return n, false, fmt.Errorf("netlink error message at byte %d: %d bytes, want at least 4", off, len(body))
			}
			e := int32(ne.Uint32(body))
			if e == 0 {
				break // an acknowledgement
			}
			return n, false, fmt.Errorf("sock_diag: %w", syscall.Errno(-int64(e)))
		case nlmsgNoop:
		default:
			return n, false, fmt.Errorf("netlink message at byte %d: unexpected type %d", off, typ)
		}
		off += (int(l) + 3) &^ 3
	}
	return n, false, nil
}

// maxProcLine bounds a line of /proc/net/tcp{,6}; real ones are 150 bytes.
const maxProcLine = 4096

// parseProcNetTCP counts, in the text of /proc/net/tcp or /proc/net/tcp6,
// the sockets in state 01 (ESTABLISHED) whose local port is port. The
// first line must be the header; every other line must carry a slot,
// local and remote ADDR:PORT in hex (8 hex digits of address for IPv4, 32
// for IPv6) and a 2-digit hex state. An error names the line and what was
// wrong with it.
func parseProcNetTCP(r io.Reader, port uint16) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxProcLine)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return 0, fmt.Errorf("line 1: %w", err)
		}
		return 0, errors.New("empty: no header line")
	}
	if f, _ := nextField(sc.Bytes()); string(f) != "sl" {
		return 0, fmt.Errorf("line 1: header %s, want one that starts with \"sl\"", shortQuote(sc.Bytes()))
	}
	n, line := 0, 2
	for ; sc.Scan(); line++ {
		rest := sc.Bytes()
		var sl, local, remote, st []byte
		sl, rest = nextField(rest)
		if len(sl) == 0 {
			continue // a blank line
		}
		local, rest = nextField(rest)
		remote, rest = nextField(rest)
		st, _ = nextField(rest)
		if len(st) == 0 {
			return 0, fmt.Errorf("line %d: %d fields, want at least 4 (sl local_address rem_address st)", line, countFields(sc.Bytes()))
		}
		if sl[len(sl)-1] != ':' {
			return 0, fmt.Errorf("line %d: slot %s, want a number and a colon", line, shortQuote(sl))
		}
		lport, err := parseHexAddrPort(local)
		if err != nil {
			return 0, fmt.Errorf("line %d: local address %s: %v", line, shortQuote(local), err)
		}
		if _, err := parseHexAddrPort(remote); err != nil {
			return 0, fmt.Errorf("line %d: remote address %s: %v", line, shortQuote(remote), err)
		}
		state, ok := parseHex(st, 2)
		if !ok {
			return 0, fmt.Errorf("line %d: state %s, want 2 hex digits", line, shortQuote(st))
		}
		if state == tcpEstablished && uint16(lport) == port {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("line %d: %w", line, err)
	}
	return n, nil
}

// parseHexAddrPort checks an address of /proc/net/tcp{,6}, ADDR:PORT in
// hex, and returns its port.
func parseHexAddrPort(b []byte) (uint32, error) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return 0, errors.New("no colon between address and port")
	}
	addr, port := b[:i], b[i+1:]
	if len(addr) != 8 && len(addr) != 32 {
		return 0, fmt.Errorf("address of %d hex digits, want 8 or 32", len(addr))
	}
	if _, ok := parseHex(addr[:8], 8); !ok {
		return 0, errors.New("address is not hex")
	}
	if len(addr) == 32 {
		for j := 8; j < 32; j += 8 {
			if _, ok := parseHex(addr[j:j+8], 8); !ok {
				return 0, errors.New("address is not hex")
			}
		}
	}
	p, ok := parseHex(port, 4)
	if !ok {
		return 0, errors.New("port is not 4 hex digits")
	}
	return p, nil
}

// parseHex parses exactly digits hex digits (at most 8).
func parseHex(b []byte, digits int) (uint32, bool) {
	if len(b) != digits {
		return 0, false
	}
	var v uint32
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(c)
	}
	return v, true
}

// nextField splits off the first field of b separated by spaces or tabs.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	j := i
	for j < len(b) && b[j] != ' ' && b[j] != '\t' {
		j++
	}
	return b[i:j], b[j:]
}

func countFields(b []byte) int {
	n := 0
	for f, rest := nextField(b); len(f) > 0; f, rest = nextField(rest) {
		n++
	}
	return n
}

// shortQuote quotes b for an error message, cut to 40 bytes so that a
// garbage input does not make a garbage-sized error.
func shortQuote(b []byte) string {
	if len(b) > 40 {
		return strconv.Quote(string(b[:40])) + "..."
	}
	return strconv.Quote(string(b))
}
