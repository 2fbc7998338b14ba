package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

const testPort = 8080 // 1F90 in /proc's hex

var ne = binary.NativeEndian

// nlMsg is a netlink message of type typ around body, padded to 4 bytes.
func nlMsg(typ uint16, body []byte) []byte {
	l := nlmsgHdrLen + len(body)
	b := make([]byte, (l+3)&^3)
	ne.PutUint32(b, uint32(l))
	ne.PutUint16(b[4:], typ)
	copy(b[nlmsgHdrLen:], body)
	return b
}

// diagMsg is an inet_diag_msg reply for a socket from sport to dport.
func diagMsg(family, state uint8, sport, dport uint16) []byte {
	b := make([]byte, inetDiagMsgLen)
	b[0], b[1] = family, state
	binary.BigEndian.PutUint16(b[4:], sport)
	binary.BigEndian.PutUint16(b[6:], dport)
	return nlMsg(sockDiagByFamily, b)
}

// errMsg is an NLMSG_ERROR carrying -errno (0: an acknowledgement) and
// the request's header, as the kernel sends it.
func errMsg(errno syscall.Errno) []byte {
	b := make([]byte, 4+nlmsgHdrLen)
	ne.PutUint32(b, uint32(-int32(errno)))
	return nlMsg(nlmsgError, b)
}

// doneMsg is the NLMSG_DONE ending a dump, with its status (0 or -errno).
func doneMsg(errno syscall.Errno) []byte {
	b := make([]byte, 4)
	ne.PutUint32(b, uint32(-int32(errno)))
	return nlMsg(nlmsgDone, b)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParseInetDiag(t *testing.T) {
	const p, other = testPort, 50000
	const closeWait = 8
	est := func(sport, dport uint16) []byte { return diagMsg(afInet, tcpEstablished, sport, dport) }
	short := diagMsg(afInet, tcpEstablished, p, other)
	ne.PutUint32(short, nlmsgHdrLen+inetDiagMsgLen-1)
	odd := make([]byte, inetDiagMsgLen+2) // an inet_diag_msg with 2 bytes of attributes: padded
	odd[0], odd[1] = afInet6, tcpEstablished
	binary.BigEndian.PutUint16(odd[4:], p)
	tests := []struct {
		name    string
		in      []byte
		n       int
		done    bool
		wantErr string       // substring of the error; "" for none
		errno   error        // the error wraps this
		mutate  func([]byte) // applied to in before parsing
	}{
		{name: "empty", in: nil},
		{name: "one", in: est(p, other), n: 1},
		{name: "server sides counted, client sides and other states not",
			in: cat(est(p, other), diagMsg(afInet6, tcpEstablished, p, other+1), est(other, p),
				diagMsg(afInet, closeWait, p, other+2), est(other+3, other+4), doneMsg(0)),
			n: 2, done: true},
		{name: "nothing read after DONE", in: cat(est(p, other), doneMsg(0), est(p, other), []byte{1, 2, 3}), n: 1, done: true},
		{name: "DONE without status", in: cat(est(p, other), nlMsg(nlmsgDone, nil)), n: 1, done: true},
		{name: "noop and ack skipped", in: cat(nlMsg(nlmsgNoop, nil), errMsg(0), est(p, other)), n: 1},
		{name: "padded message", in: cat(nlMsg(sockDiagByFamily, odd), est(p, other)), n: 2},
		{name: "dump failed", in: cat(est(p, other), doneMsg(syscall.EINTR)), n: 1, done: true,
			wantErr: "sock_diag dump failed", errno: syscall.EINTR},
		{name: "request refused", in: errMsg(syscall.EPERM), wantErr: "sock_diag: ", errno: syscall.EPERM},
		{name: "error message truncated", in: nlMsg(nlmsgError, []byte{1, 2}), wantErr: "netlink error message at byte 0: 2 bytes, want at least 4"},
		{name: "header truncated", in: cat(est(p, other), make([]byte, 10)), n: 1,
			wantErr: "netlink message at byte 88: 10 bytes left, less than the 16-byte header"},
		{name: "length past the end", in: est(p, other), mutate: func(b []byte) { ne.PutUint32(b, 200) },
			wantErr: "netlink message at byte 0: length 200, want 16..88"},
		{name: "length shorter than the header", in: est(p, other), mutate: func(b []byte) { ne.PutUint32(b, 8) },
			wantErr: "length 8, want 16..88"},
		{name: "length of 4 GiB", in: est(p, other), mutate: func(b []byte) { ne.PutUint32(b, 1<<32-1) },
			wantErr: "length 4294967295"},
		{name: "inet_diag_msg truncated", in: short, wantErr: "inet_diag_msg at byte 0: 71 bytes, want at least 72"},
		{name: "unknown family", in: diagMsg(1, tcpEstablished, p, other), wantErr: "address family 1, want 2 or 10"},
		{name: "unknown type", in: cat(est(p, other), nlMsg(99, nil)), n: 1, wantErr: "netlink message at byte 88: unexpected type 99"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mutate != nil {
				tc.mutate(tc.in)
			}
			n, done, err := parseInetDiag(tc.in, p)
			if n != tc.n || done != tc.done {
				t.Errorf("count %d, done %v; want %d, %v", n, done, tc.n, tc.done)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			case tc.errno != nil && !errors.Is(err, tc.errno):
				t.Errorf("error %v does not wrap %v", err, tc.errno)
			}
		})
	}
}

// runBytecode is the kernel's inet_diag_bc_audit and inet_diag_bc_run
// (net/ipv4/inet_diag.c) for the port comparisons the request uses: it
// fails the test where the kernel would refuse the program with EINVAL,
// and says whether a socket with local port sport passes.
func runBytecode(t *testing.T, bc []byte, sport uint16) bool {
	t.Helper()
	for off, l := 0, len(bc); l > 0; {
		code, yes, no := bc[off], int(bc[off+1]), int(ne.Uint16(bc[off+2:]))
		if code != inetDiagBCSGE && code != inetDiagBCSLE {
			t.Fatalf("op %d at byte %d: not a port comparison", code, off)
		}
		const minLen = 8 // the op and the op holding the port
		for _, j := range []int{yes, no} {
			if l < minLen || j < minLen || j > l+4 || j&3 != 0 {
				t.Fatalf("op at byte %d of %d: jump %d refused by the kernel's audit", off, len(bc), j)
			}
		}
		off += yes
		l -= yes
	}
	off, l := 0, len(bc)
	for l > 0 {
		code, yes, no := bc[off], int(bc[off+1]), int(ne.Uint16(bc[off+2:]))
		port := ne.Uint16(bc[off+6:])
		ok := sport >= port
		if code == inetDiagBCSLE {
			ok = sport <= port
		}
		if !ok {
			yes = no
		}
		off += yes
		l -= yes
	}
	return l == 0
}

func TestInetDiagRequest(t *testing.T) {
	for _, port := range []uint16{0, 1, testPort, 65535} {
		for _, family := range []uint8{afInet, afInet6} {
			b := inetDiagRequest(family, port, 7)
			if len(b) != 92 || ne.Uint32(b) != 92 || ne.Uint16(b[4:]) != sockDiagByFamily ||
				ne.Uint16(b[6:]) != nlmFRequest|nlmFDump || ne.Uint32(b[8:]) != 7 {
				t.Fatalf("header % x", b[:nlmsgHdrLen])
			}
			r := b[nlmsgHdrLen:]
			if r[0] != family || r[1] != ipprotoTCP || ne.Uint32(r[4:]) != 1<<tcpEstablished ||
				!bytes.Equal(r[8:inetDiagReqLen], make([]byte, 48)) {
				t.Fatalf("inet_diag_req_v2 % x", r[:inetDiagReqLen])
			}
			a := r[inetDiagReqLen:]
			if int(ne.Uint16(a)) != len(a) || ne.Uint16(a[2:]) != inetDiagReqBC {
				t.Fatalf("attribute % x", a)
			}
			for _, sport := range []uint16{0, 1, port - 1, port, port + 1, 65535} {
				if got := runBytecode(t, a[4:], sport); got != (sport == port) {
					t.Errorf("filter for port %d on a socket of port %d: passes %v", port, sport, got)
				}
			}
		}
	}
}

const (
	procHeader4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     \n"
	procHeader6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	procTail    = " 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 20 4 30 10 -1\n"
)

// procLine is a /proc/net/tcp{,6} line; addresses as the kernel writes them.
func procLine(slot int, local, remote, state string) string {
	return fmt.Sprintf("%4d: %s %s %s", slot, local, remote, state) + procTail
}

func TestParseProcNetTCP(t *testing.T) {
	const (
		lo4srv = "0100007F:1F90" // 127.0.0.1:8080
		lo4cli = "0100007F:C350" // 127.0.0.1:50000
		any4   = "00000000:1F90"
		lo6srv = "00000000000000000000000001000000:1F90"
		lo6cli = "00000000000000000000000001000000:c350"
		none4  = "00000000:0000"
	)
	good := procHeader4 +
		procLine(0, any4, none4, "0A") + // the listener
		procLine(1, lo4srv, lo4cli, "01") + // server side: counted
		procLine(2, lo4cli, lo4srv, "01") + // client side: not counted
		procLine(3, lo4srv, "0100007F:C351", "08") + // CLOSE_WAIT
		procLine(4, "0100007F:1f90", "0100007F:C352", "01") // lower-case hex: counted
	tests := []struct {
		name    string
		in      string
		n       int
		wantErr string
	}{
		{name: "IPv4", in: good, n: 2},
		{name: "IPv6", in: procHeader6 + procLine(0, lo6srv, lo6cli, "01") + procLine(1, lo6cli, lo6srv, "01"), n: 1},
		{name: "header only", in: procHeader6, n: 0},
		{name: "no final newline", in: strings.TrimSuffix(good, "\n"), n: 2},
		{name: "CRLF and blank lines", in: strings.ReplaceAll(good, "\n", "\r\n") + "\n   \n", n: 2},
		{name: "empty", in: "", wantErr: "empty: no header line"},
		{name: "no header", in: procLine(0, lo4srv, lo4cli, "01"), wantErr: `line 1: header "   0: 0100007F:1F90 0100007F:C350 01 000"..., want one that starts with "sl"`},
		{name: "too few fields", in: procHeader4 + "   0: " + lo4srv + " " + lo4cli + "\n", wantErr: "line 2: 3 fields, want at least 4"},
		{name: "slot without colon", in: procHeader4 + procLine(0, lo4srv, lo4cli, "01") + "   1 " + lo4srv + " " + lo4cli + " 01" + procTail,
			wantErr: `line 3: slot "1", want a number and a colon`},
		{name: "local address without port", in: procHeader4 + procLine(0, "0100007F", lo4cli, "01"),
			wantErr: `line 2: local address "0100007F": no colon between address and port`},
		{name: "local address of 7 digits", in: procHeader4 + procLine(0, "100007F:1F90", lo4cli, "01"),
			wantErr: "local address \"100007F:1F90\": address of 7 hex digits, want 8 or 32"},
		{name: "local address not hex", in: procHeader4 + procLine(0, "0100007G:1F90", lo4cli, "01"), wantErr: "address is not hex"},
		{name: "IPv6 address not hex", in: procHeader6 + procLine(0, "000000000000000000000000010000x0:1F90", lo6cli, "01"), wantErr: "address is not hex"},
		{name: "port of 5 digits", in: procHeader4 + procLine(0, "0100007F:01F90", lo4cli, "01"), wantErr: "port is not 4 hex digits"},
		{name: "remote address bad", in: procHeader4 + procLine(0, lo4srv, "0100007F:", "01"), wantErr: `line 2: remote address "0100007F:": port is not 4 hex digits`},
		{name: "state of 1 digit", in: procHeader4 + procLine(0, lo4srv, lo4cli, "1"), wantErr: `line 2: state "1", want 2 hex digits`},
		{name: "state not hex", in: procHeader4 + procLine(0, lo4srv, lo4cli, "0x"), wantErr: `state "0x"`},
		{name: "line too long", in: procHeader4 + strings.Repeat("x", 5000) + "\n", wantErr: "line 2: bufio.Scanner: token too long"},
		{name: "garbage field quoted short", in: procHeader4 + procLine(0, strings.Repeat("f", 100)+":1F90", lo4cli, "01"),
			wantErr: `"ffffffffffffffffffffffffffffffffffffffff"...: address of 100 hex digits`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := parseProcNetTCP(strings.NewReader(tc.in), testPort)
			if tc.wantErr == "" {
				if err != nil || n != tc.n {
					t.Errorf("count %d, %v; want %d", n, err, tc.n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || n != 0 {
				t.Errorf("count %d, error %v; want one containing %q", n, err, tc.wantErr)
			}
		})
	}
}

// The counter falls back to /proc when netlink fails, for good only when
// netlink is refused.
func TestConnCounterFallback(t *testing.T) {
	type call struct {
		nlErr   error // what netlink answers (it counts 5 otherwise)
		procErr error // what /proc answers (it counts 7 otherwise)
		wantNL  bool  // netlink is asked
		n       int
		from    string
		wantErr string
	}
	timeout := errors.New("sock_diag: no reply within 1s")
	tests := []struct {
		name  string
		calls []call
	}{
		{"netlink works", []call{{wantNL: true, n: 5, from: ConnsFromNetlink}, {wantNL: true, n: 5, from: ConnsFromNetlink}}},
		{"no netlink socket: /proc from then on", []call{
			{nlErr: fmt.Errorf("netlink socket: %w", syscall.EPROTONOSUPPORT), wantNL: true, n: 7, from: ConnsFromProc},
			{n: 7, from: ConnsFromProc},
			{procErr: errors.New("/proc/net/tcp: permission denied"), wantErr: "/proc/net/tcp: permission denied"}}},
		{"request refused: /proc from then on", []call{
			{nlErr: fmt.Errorf("sock_diag: %w", syscall.EPERM), wantNL: true, n: 7, from: ConnsFromProc},
			{n: 7, from: ConnsFromProc}}},
		{"not Linux", []call{
			{nlErr: fmt.Errorf("netlink sock_diag: %w", errors.ErrUnsupported), wantNL: true, n: 7, from: ConnsFromProc},
			{n: 7, from: ConnsFromProc}}},
		{"timeout: /proc this time only", []call{
			{nlErr: timeout, wantNL: true, n: 7, from: ConnsFromProc},
			{wantNL: true, n: 5, from: ConnsFromNetlink}}},
		{"both fail: both reasons", []call{
			{nlErr: timeout, procErr: errors.New("open /proc/net/tcp: no such file or directory"), wantNL: true,
				wantErr: "sock_diag: no reply within 1s; fallback: open /proc/net/tcp: no such file or directory"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c connCounter
			var cur call
			askedNL := false
			c.netlink = func(_ context.Context, port uint16, buf []byte) (int, error) {
				askedNL = true
				if port != testPort || len(buf) != netlinkBufSize {
					t.Errorf("netlink asked for port %d with a buffer of %d", port, len(buf))
				}
				return 5, cur.nlErr
			}
			c.proc = func(port uint16) (int, error) { return 7, cur.procErr }
			for i, cl := range tc.calls {
				cur, askedNL = cl, false
				n, from, err := c.count(context.Background(), testPort)
				if askedNL != cl.wantNL {
					t.Errorf("call %d: netlink asked %v, want %v", i, askedNL, cl.wantNL)
				}
				if cl.wantErr != "" {
					if err == nil || err.Error() != cl.wantErr {
						t.Errorf("call %d: error %v, want %q", i, err, cl.wantErr)
					}
					continue
				}
				if err != nil || n != cl.n || from != cl.from {
					t.Errorf("call %d: %d from %q, %v; want %d from %q", i, n, from, err, cl.n, cl.from)
				}
			}
		})
	}
	t.Run("cancelled: no fallback", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c := connCounter{
			netlink: func(ctx context.Context, _ uint16, _ []byte) (int, error) { return 0, ctx.Err() },
			proc:    func(uint16) (int, error) { t.Error("/proc read after the context ended"); return 0, nil },
		}
		if _, _, err := c.count(ctx, testPort); !errors.Is(err, context.Canceled) || c.refused {
			t.Errorf("error %v, refused %v", err, c.refused)
		}
	})
	t.Run("port out of range", func(t *testing.T) {
		var c connCounter
		for _, p := range []int{-1, 65536} {
			if _, _, err := c.count(context.Background(), p); err == nil || !strings.Contains(err.Error(), "out of range") {
				t.Errorf("port %d: %v", p, err)
			}
		}
	})
}

func FuzzParseInetDiag(f *testing.F) {
	p := uint16(testPort)
	f.Add(cat(diagMsg(afInet, tcpEstablished, p, 50000), diagMsg(afInet6, tcpEstablished, p, 50001),
		diagMsg(afInet, tcpEstablished, 50002, p), doneMsg(0)), p)
	f.Add(cat(diagMsg(afInet, 8, p, 1), nlMsg(nlmsgNoop, nil), errMsg(0)), p)
	f.Add(errMsg(syscall.EPERM), uint16(0))
	f.Add(doneMsg(syscall.EINTR), uint16(0))
	f.Add(diagMsg(afInet6, tcpEstablished, p, 1)[:40], p)
	f.Add(nlMsg(sockDiagByFamily, make([]byte, inetDiagMsgLen+3)), uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		n, done, err := parseInetDiag(b, port)
		if n < 0 || n > len(b)/(nlmsgHdrLen+inetDiagMsgLen) {
			t.Fatalf("count %d from %d bytes", n, len(b))
		}
		if err != nil && len(err.Error()) > 300 {
			t.Errorf("error of %d bytes: %v", len(err.Error()), err)
		}
		n2, done2, err2 := parseInetDiag(b, port)
		if n2 != n || done2 != done || (err == nil) != (err2 == nil) {
			t.Fatalf("second parse: %d %v %v, first %d %v %v", n2, done2, err2, n, done, err)
		}
		switch {
		case done:
			// Nothing after DONE is read.
			if n3, done3, err3 := parseInetDiag(append(bytes.Clone(b), 0xff, 0xff, 0xff), port); n3 != n || !done3 || (err3 == nil) != (err == nil) {
				t.Errorf("with garbage after DONE: %d %v %v, without %d %v %v", n3, done3, err3, n, done, err)
			}
		case err == nil && len(b)%4 == 0:
			// Two receives' worth in one buffer count twice.
			if n3, done3, err3 := parseInetDiag(cat(b, b), port); n3 != 2*n || done3 || err3 != nil {
				t.Errorf("doubled: %d %v %v, single %d", n3, done3, err3, n)
			}
		}
	})
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add([]byte(procHeader4+procLine(0, "0100007F:1F90", "0100007F:C350", "01")+procLine(1, "0100007F:C350", "0100007F:1F90", "01")), uint16(testPort))
	f.Add([]byte(procHeader6+procLine(0, "00000000000000000000000001000000:1F90", "00000000000000000000000001000000:C350", "01")), uint16(testPort))
	f.Add([]byte(procHeader4+procLine(0, "00000000:0016", "00000000:0000", "0A")), uint16(22))
	f.Add([]byte(procHeader4+"   0: 0100007F:1F90\n"), uint16(testPort))
	f.Add([]byte("sl\r\n0: 00000000:0000 00000000:0000 01\r\n"), uint16(0))
	f.Add([]byte(""), uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		n, err := parseProcNetTCP(bytes.NewReader(b), port)
		if err != nil {
			if n != 0 {
				t.Errorf("count %d with error %v", n, err)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error of %d bytes: %v", len(err.Error()), err)
			}
		}
		if lines := bytes.Count(b, []byte("\n")) + 1; n < 0 || n > lines-1 {
			t.Fatalf("count %d from %d lines", n, lines)
		}
		if n2, err2 := parseProcNetTCP(bytes.NewReader(b), port); n2 != n || (err == nil) != (err2 == nil) {
			t.Fatalf("second parse: %d %v, first %d %v", n2, err2, n, err)
		}
		if err != nil {
			return
		}
		// The socket lines twice after the header count twice.
		body := b[len(b):]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			body = b[i+1:]
		}
		doubled := cat(b, []byte("\n"), body)
		if n3, err3 := parseProcNetTCP(bytes.NewReader(doubled), port); n3 != 2*n || err3 != nil {
			t.Errorf("socket lines doubled: %d %v, single %d", n3, err3, n)
		}
	})
}
