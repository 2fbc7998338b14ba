package dnsrr

import (
	"bytes"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestRotationAcrossQueries(t *testing.T) {
	z, _ := NewZone("web.example.", 5*time.Second, 0)
	s := startServer(t, &Handler{Zone: z, Viewer: StaticView{&View{V4: addrs(3)}}})
	var firsts []string
	for i := range 6 {
		network := []string{"udp", "tcp"}[i%2]
		r := exchange(t, network, s.Addr(), query("web.example.", dns.TypeA))
		ips := answerIPs(r)
		if len(ips) != 3 {
			t.Fatalf("query %d over %s: answer %v, want 3 addresses", i, network, ips)
		}
		firsts = append(firsts, ips[0])
	}
	want := []string{"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.0", "10.0.0.1", "10.0.0.2"}
	if !slices.Equal(firsts, want) {
		t.Errorf("first address per query %v, want %v", firsts, want)
	}
}

func TestTruncationOverUDPCompleteOverTCP(t *testing.T) {
	const n = 200
	z, _ := NewZone("web.example.", 5*time.Second, 0)
	s := startServer(t, &Handler{Zone: z, Viewer: StaticView{&View{V4: addrs(n)}}})

	udp := exchange(t, "udp", s.Addr(), query("web.example.", dns.TypeA))
	if !udp.Truncated || len(udp.Answer) == 0 || len(udp.Answer) >= n {
		t.Errorf("UDP without EDNS0: TC %v with %d answers; want TC and a partial answer", udp.Truncated, len(udp.Answer))
	}
	udp.Compress = true // as sent
	if b, _ := udp.Pack(); len(b) > dns.MinMsgSize {
		t.Errorf("UDP reply of %d bytes; want <= %d", len(b), dns.MinMsgSize)
	}

	big := query("web.example.", dns.TypeA).SetEdns0(4096, false)
	udpE := exchange(t, "udp", s.Addr(), big)
	if !udpE.Truncated || len(udpE.Answer) <= len(udp.Answer) || len(udpE.Answer) >= n {
		t.Errorf("UDP with EDNS0 4096: TC %v with %d answers; want TC and more than %d, fewer than %d (capped at %d bytes)",
			udpE.Truncated, len(udpE.Answer), len(udp.Answer), n, ednsUDPSize)
	}
	if udpE.IsEdns0() == nil || udpE.IsEdns0().UDPSize() != ednsUDPSize {
		t.Errorf("reply OPT %v; want UDP size %d", udpE.IsEdns0(), ednsUDPSize)
	}

	tcp := exchange(t, "tcp", s.Addr(), query("web.example.", dns.TypeA))
	if tcp.Truncated || len(tcp.Answer) != n {
		t.Errorf("TCP: TC %v with %d answers; want all %d", tcp.Truncated, len(tcp.Answer), n)
	}
}

func TestServerRcodes(t *testing.T) {
	z, _ := NewZone("web.example.", 5*time.Second, 0)
	s := startServer(t, &Handler{Zone: z, Viewer: StaticView{&View{V4: addrs(2)}}})
	for _, tt := range []struct {
		name  string
		rcode int
		soa   bool
	}{
		{"web.example.", dns.RcodeSuccess, false},
		{"nope.web.example.", dns.RcodeNameError, true},
		{"example.com.", dns.RcodeRefused, false},
	} {
		for _, network := range []string{"udp", "tcp"} {
			r := exchange(t, network, s.Addr(), query(tt.name, dns.TypeA))
			soa := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA
			if r.Rcode != tt.rcode || soa != tt.soa {
				t.Errorf("%s over %s: %s, SOA in authority %v; want %s, %v",
					tt.name, network, dns.RcodeToString[r.Rcode], soa, dns.RcodeToString[tt.rcode], tt.soa)
			}
		}
	}
}

// TestMalformedPacketsOverUDP sends garbage to the real server: it must
// keep answering.
func TestMalformedPacketsOverUDP(t *testing.T) {
	z, _ := NewZone("web.example.", 5*time.Second, 0)
	s := startServer(t, &Handler{Zone: z, Viewer: StaticView{&View{V4: addrs(2)}}})
	conn, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	good, _ := query("web.example.", dns.TypeA).Pack()
	for _, p := range [][]byte{
		{},
		{0},
		good[:5],
		good[:len(good)-1],
		append(append([]byte{}, good[:2]...), 0x80, 0, 0, 1), // QR set, short
		append(append([]byte{}, good...), 0xff, 0xff, 0xff),
		bytes.Repeat([]byte{0xc0}, 300), // compression pointer loop
	} {
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	r := exchange(t, "udp", s.Addr(), query("web.example.", dns.TypeA))
	if len(r.Answer) != 2 {
		t.Errorf("after garbage: answer %v, want 2 addresses", r.Answer)
	}
}
