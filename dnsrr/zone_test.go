package dnsrr

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestNewZone(t *testing.T) {
	z, err := NewZone("Web.Example", 5*time.Second, 0)
	if err != nil || z.Name() != "web.example." {
		t.Fatalf("NewZone = %v, %v; want web.example.", z, err)
	}
	for _, bad := range []string{"", ".", "a..b"} {
		if _, err := NewZone(bad, time.Second, 0); err == nil {
			t.Errorf("NewZone(%q): no error", bad)
		}
	}
}

func TestAnswer(t *testing.T) {
	z, err := NewZone("web.example.", 5*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	z2, _ := NewZone("web.example.", 5*time.Second, 2)
	v6 := netip.MustParseAddr("2001:db8::1")
	v := &View{V4: addrs(3), V6: []netip.Addr{v6}}
	edns := func(m *dns.Msg, version uint8) *dns.Msg {
		m.SetEdns0(4096, false)
		m.IsEdns0().SetVersion(version)
		return m
	}
	notify := query("web.example.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	two := query("web.example.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	tests := []struct {
		name   string
		z      *Zone
		q      *dns.Msg
		v      *View
		turn   uint64
		rcode  int
		ips    []string
		soaNs  bool // SOA in authority
		answer int  // answer count when ips is nil; -1: don't care
	}{
		{"A turn 0", z, query("web.example.", dns.TypeA), v, 0, dns.RcodeSuccess, []string{"10.0.0.0", "10.0.0.1", "10.0.0.2"}, false, 0},
		{"A turn 4 rotates", z, query("web.example.", dns.TypeA), v, 4, dns.RcodeSuccess, []string{"10.0.0.1", "10.0.0.2", "10.0.0.0"}, false, 0},
		{"case-insensitive", z, query("WEB.Example.", dns.TypeA), v, 0, dns.RcodeSuccess, []string{"10.0.0.0", "10.0.0.1", "10.0.0.2"}, false, 0},
		{"answers bounded", z2, query("web.example.", dns.TypeA), v, 2, dns.RcodeSuccess, []string{"10.0.0.2", "10.0.0.0"}, false, 0},
		{"AAAA", z, query("web.example.", dns.TypeAAAA), v, 7, dns.RcodeSuccess, []string{"2001:db8::1"}, false, 0},
		{"ANY", z, query("web.example.", dns.TypeANY), v, 0, dns.RcodeSuccess, []string{"10.0.0.0", "10.0.0.1", "10.0.0.2", "2001:db8::1"}, false, 0},
		{"SOA", z, query("web.example.", dns.TypeSOA), v, 0, dns.RcodeSuccess, nil, false, 1},
		{"NODATA MX", z, query("web.example.", dns.TypeMX), v, 0, dns.RcodeSuccess, nil, true, 0},
		{"NODATA AAAA none", z, query("web.example.", dns.TypeAAAA), &View{V4: addrs(1)}, 0, dns.RcodeSuccess, nil, true, 0},
		{"nil view", z, query("web.example.", dns.TypeA), nil, 0, dns.RcodeSuccess, nil, true, 0},
		{"NXDOMAIN below", z, query("x.web.example.", dns.TypeA), v, 0, dns.RcodeNameError, nil, true, 0},
		{"REFUSED outside", z, query("example.", dns.TypeA), v, 0, dns.RcodeRefused, nil, false, 0},
		{"REFUSED sibling", z, query("xweb.example.", dns.TypeA), v, 0, dns.RcodeRefused, nil, false, 0},
		{"REFUSED class CH", z, func() *dns.Msg {
			m := query("web.example.", dns.TypeA)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), v, 0, dns.RcodeRefused, nil, false, 0},
		{"NOTIMP notify", z, notify, v, 0, dns.RcodeNotImplemented, nil, false, 0},
		{"FORMERR two questions", z, two, v, 0, dns.RcodeFormatError, nil, false, 0},
		{"FORMERR no question", z, &dns.Msg{}, v, 0, dns.RcodeFormatError, nil, false, 0},
		{"BADVERS", z, edns(query("web.example.", dns.TypeA), 1), v, 0, dns.RcodeBadVers, nil, false, 0},
		{"EDNS0 ok", z, edns(query("web.example.", dns.TypeA), 0), v, 0, dns.RcodeSuccess, []string{"10.0.0.0", "10.0.0.1", "10.0.0.2"}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.z.Answer(tt.q, tt.v, tt.turn, true)
			if r.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
			if r.Id != tt.q.Id || !r.Response {
				t.Errorf("id %d response %v; want id %d, response", r.Id, r.Response, tt.q.Id)
			}
			if tt.ips != nil {
				if got := answerIPs(r); !slices.Equal(got, tt.ips) {
					t.Errorf("answer %v, want %v", got, tt.ips)
				}
				for _, rr := range r.Answer {
					if rr.Header().Ttl != 5 {
						t.Errorf("TTL %d, want 5", rr.Header().Ttl)
					}
				}
			} else if tt.answer >= 0 && len(r.Answer) != tt.answer {
				t.Errorf("%d answers, want %d", len(r.Answer), tt.answer)
			}
			gotSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA
			if gotSOA != tt.soaNs {
				t.Errorf("SOA in authority: %v, want %v (%v)", gotSOA, tt.soaNs, r.Ns)
			}
			if tt.q.IsEdns0() != nil && r.IsEdns0() == nil {
				t.Error("EDNS0 query without OPT in the reply")
			}
			if tt.rcode == dns.RcodeSuccess || tt.rcode == dns.RcodeNameError {
				if !r.Authoritative {
					t.Error("AA not set")
				}
			}
			if _, err := r.Pack(); err != nil {
				t.Errorf("reply does not pack: %v", err)
			}
		})
	}
}

// FuzzAnswer feeds arbitrary packets to the handler: whatever miekg/dns can
// unpack must be answered without panicking, with a reply that packs and,
// over UDP, fits the client's size.
func FuzzAnswer(f *testing.F) {
	z0, err := NewZone("web.example.", 5*time.Second, 0)
	if err != nil {
		f.Fatal(err)
	}
	z, err := z0.WithSRV("http", 80)
	if err != nil {
		f.Fatal(err)
	}
	v := &View{V4: addrs(100), V6: []netip.Addr{netip.MustParseAddr("::1")}}
	for _, q := range []*dns.Msg{
		query("web.example.", dns.TypeA),
		query("web.example.", dns.TypeAAAA),
		query("web.example.", dns.TypeANY),
		query("x.web.example.", dns.TypeA),
		query("example.org.", dns.TypeA),
		query("_http._tcp.web.example.", dns.TypeSRV),
		query("_tcp.web.example.", dns.TypeANY),
		new(dns.Msg).SetEdns0(1232, true),
		query("web.example.", dns.TypeA).SetEdns0(65535, true),
	} {
		b, err := q.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
	}
	f.Add([]byte{}, false)
	// A name that is a compression pointer to itself, and a truncated query.
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}, true)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'e', 'b'}, true)
	f.Add([]byte{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0}, true)
	f.Fuzz(func(t *testing.T, b []byte, udp bool) {
		req := new(dns.Msg)
		if err := req.Unpack(b); err != nil {
			return
		}
		w := &fakeWriter{udp: udp}
		h := &Handler{Zone: z, Viewer: StaticView{v}}
		h.turn.Store(uint64(len(b)))
		h.ServeDNS(w, req)
		r := w.msg
		if r == nil {
			t.Fatal("no reply written")
		}
		out, err := r.Pack()
		if err != nil {
			t.Fatalf("reply does not pack: %v\nquery: %v\nreply: %v", err, req, r)
		}
		if udp && len(out) > ednsUDPSize {
			t.Fatalf("UDP reply of %d bytes exceeds %d", len(out), ednsUDPSize)
		}
	})
}

// fakeWriter is a dns.ResponseWriter that keeps the reply.
type fakeWriter struct {
	udp bool
	msg *dns.Msg
}

func (w *fakeWriter) LocalAddr() net.Addr { return w.RemoteAddr() }
func (w *fakeWriter) RemoteAddr() net.Addr {
	if w.udp {
		return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}
func (w *fakeWriter) WriteMsg(m *dns.Msg) error { w.msg = m; return nil }
func (w *fakeWriter) Write([]byte) (int, error) { return 0, errors.New("fakeWriter: Write") }
func (w *fakeWriter) Close() error              { return nil }
func (w *fakeWriter) TsigStatus() error         { return nil }
func (w *fakeWriter) TsigTimersOnly(bool)       {}
func (w *fakeWriter) Hijack()                   {}
func (w *fakeWriter) Network() string {
	if w.udp {
		return "udp"
	}
	return "tcp"
}

func TestAnswerSRV(t *testing.T) {
	z0, _ := NewZone("web.example.", 5*time.Second, 0)
	if _, err := z0.WithSRV("ht.tp", 80); err == nil {
		t.Error("WithSRV accepted a service name with a dot")
	}
	z, err := z0.WithSRV("http", 8080)
	if err != nil {
		t.Fatal(err)
	}
	v := &View{V4: addrs(3)}
	r := z.Answer(query("_HTTP._tcp.web.example.", dns.TypeSRV), v, 1, true)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("SRV: %s with %v", dns.RcodeToString[r.Rcode], r.Answer)
	}
	srv, ok := r.Answer[0].(*dns.SRV)
	if !ok || srv.Port != 8080 || srv.Target != "web.example." || srv.Hdr.Name != "_HTTP._tcp.web.example." || srv.Hdr.Ttl != 5 {
		t.Errorf("SRV record %v; want port 8080 target web.example. owner as asked, TTL 5", r.Answer[0])
	}
	extra := answerIPs(&dns.Msg{Answer: r.Extra})
	if want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.0"}; !slices.Equal(extra, want) {
		t.Errorf("additional %v, want %v (rotated)", extra, want)
	}
	for _, tt := range []struct {
		z     *Zone
		name  string
		qtype uint16
		rcode int
	}{
		{z, "_http._tcp.web.example.", dns.TypeA, dns.RcodeSuccess}, // NODATA
		{z, "_tcp.web.example.", dns.TypeSRV, dns.RcodeSuccess},     // empty non-terminal
		{z, "_ftp._tcp.web.example.", dns.TypeSRV, dns.RcodeNameError},
		{z0, "_http._tcp.web.example.", dns.TypeSRV, dns.RcodeNameError},
	} {
		r := tt.z.Answer(query(tt.name, tt.qtype), v, 0, true)
		if r.Rcode != tt.rcode || len(r.Answer) != 0 || len(r.Ns) != 1 {
			t.Errorf("%s %s: %s, %d answers, %d authority; want %s, none, the SOA",
				tt.name, dns.TypeToString[tt.qtype], dns.RcodeToString[r.Rcode], len(r.Answer), len(r.Ns), dns.RcodeToString[tt.rcode])
		}
	}
}

func TestAnswerSRVWithEDNS0(t *testing.T) {
	z0, _ := NewZone("web.example.", 5*time.Second, 0)
	z, _ := z0.WithSRV("http", 8080)
	r := z.Answer(query("_http._tcp.web.example.", dns.TypeSRV).SetEdns0(1232, false), &View{V4: addrs(2)}, 0, true)
	if r.IsEdns0() == nil || len(r.Extra) != 3 {
		t.Errorf("additional %v; want two A records and the OPT record", r.Extra)
	}
}

func TestAnswerHugeOverTCP(t *testing.T) {
	z, _ := NewZone("web.example.", 5*time.Second, 0)
	r := z.Answer(query("web.example.", dns.TypeA), &View{V4: addrs(10000)}, 0, false)
	r.Compress = true
	b, err := r.Pack()
	if err != nil || len(b) > dns.MaxMsgSize || !r.Truncated {
		t.Errorf("10000 members over TCP: %d bytes, TC %v, %v; want a truncated reply that packs", len(b), r.Truncated, err)
	}
}
