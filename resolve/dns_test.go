package resolve_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/resolve"
)

// publish adds service's certificate TXT record to the server.
func (s *dnsServer) publish(t *testing.T, service, zone string, data []byte) {
	t.Helper()
	rr, err := resolve.TXTRecord(service, zone, 300, data)
	if err != nil {
		t.Fatal(err)
	}
	s.add(rr)
}

func TestTXTRecordZoneLine(t *testing.T) {
	data := padded(7, 1500)
	rr, err := resolve.TXTRecord("chat", "example.com", 300, data)
	if err != nil {
		t.Fatal(err)
	}
	line := rr.String()
	if !strings.HasPrefix(line, "_smartclient.chat.example.com.\t300\tIN\tTXT\t\"") {
		t.Fatalf("zone line %q", line)
	}
	parsed, err := dns.NewRR(line)
	if err != nil {
		t.Fatal(err)
	}
	txt := parsed.(*dns.TXT).Txt
	if len(txt) != 8 || len(txt[0]) != 255 {
		t.Fatalf("%d strings, first %d bytes; want 255-byte strings", len(txt), len(txt[0]))
	}
	got, err := resolve.DecodeTXT(txt, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("zone line does not decode back: %v", err)
	}
	if _, err := resolve.TXTRecord("chat", "example.com", 300, padded(1, 60000)); err == nil || !strings.Contains(err.Error(), "publish it over HTTP") {
		t.Fatalf("oversized DNS certificate: %v", err)
	}
	if _, err := resolve.TXTRecord("Chat", "example.com", 300, data); err == nil {
		t.Fatal("accepted a bad service name")
	}
	if _, err := resolve.TXTRecord("chat", "example.com", 300, nil); err == nil {
		t.Fatal("accepted an empty certificate")
	}
}

func TestDNSRootFetch(t *testing.T) {
	s := startDNS(t)
	small := certOf(3)          // fits a UDP answer
	large := padded(4, 20000)   // needs TCP
	biggest := padded(5, 48000) // near the DNS message limit
	s.publish(t, "chat", "example.com", small)
	s.publish(t, "large", "example.com", large)
	s.publish(t, "biggest", "example.com", biggest)
	s.publish(t, "two", "example.com", certOf(1))
	s.publish(t, "two", "example.com", certOf(2))
	s.publish(t, "alias-target", "example.net", certOf(6))
	s.addZone(t,
		`_smartclient.garbage.example.com. 300 IN TXT "not base64!"`,
		`_smartclient.spaced.example.com. 300 IN TXT "`+resolve.TXTStrings(small)[0][:20]+` " " `+resolve.TXTStrings(small)[0][20:]+`"`,
		`_smartclient.alias.example.com. 300 IN CNAME _smartclient.alias-target.example.net.`,
		`_smartclient.onlya.example.com. 300 IN A 127.0.0.1`,
		`_smartclient.empty.example.com. 300 IN TXT ""`,
	)
	s.rcode["_smartclient.broken.example.com."] = dns.RcodeServerFailure

	root := &resolve.DNSRoot{Server: s.Addr, Zone: "example.com"}
	tests := []struct {
		service  string
		want     []byte
		maxSize  int
		udp, tcp int // queries this lookup must cost
		errIs    error
		errHas   string
	}{
		{service: "chat", want: small, udp: 1},
		{service: "large", want: large, udp: 1, tcp: 1},
		{service: "biggest", want: biggest, udp: 1, tcp: 1},
		{service: "spaced", want: small, udp: 1},
		{service: "alias", want: certOf(6), udp: 1},
		{service: "large", maxSize: 1000, udp: 1, tcp: 1, errIs: resolve.ErrTooLarge},
		{service: "missing", udp: 1, errIs: resolve.ErrNotFound, errHas: "NXDOMAIN"},
		{service: "onlya", udp: 1, errIs: resolve.ErrNotFound, errHas: "no TXT record"},
		{service: "two", udp: 1, errHas: "2 TXT records at _smartclient.two.example.com., want exactly one"},
		{service: "garbage", udp: 1, errHas: "not base64"},
		{service: "empty", udp: 1, errHas: "empty TXT record"},
		{service: "broken", udp: 1, errHas: "SERVFAIL"},
		{service: "../x", errHas: "invalid service name"},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			udp0, tcp0 := s.count("udp"), s.count("tcp")
			r := *root
			r.MaxSize = tt.maxSize
			got, err := r.Fetch(t.Context(), tt.service)
			if udp, tcp := s.count("udp")-udp0, s.count("tcp")-tcp0; udp != tt.udp || tcp != tt.tcp {
				t.Errorf("%d UDP and %d TCP queries, want %d and %d", udp, tcp, tt.udp, tt.tcp)
			}
			if tt.want != nil {
				if err != nil || !bytes.Equal(got, tt.want) {
					t.Fatalf("Fetch = %d bytes, %v", len(got), err)
				}
				return
			}
			if err == nil || got != nil {
				t.Fatalf("Fetch accepted %d bytes", len(got))
			}
			if !strings.HasPrefix(err.Error(), "dns://"+s.Addr+"/example.com: ") {
				t.Errorf("error does not name the root: %v", err)
			}
			if (tt.errIs != nil && !errors.Is(err, tt.errIs)) || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("err = %v, want %v / %q", err, tt.errIs, tt.errHas)
			}
		})
	}

	// TCP only.
	udp0, tcp0 := s.count("udp"), s.count("tcp")
	tcpRoot := &resolve.DNSRoot{Server: s.Addr, Zone: "example.com", Net: "tcp"}
	if got, err := tcpRoot.Fetch(t.Context(), "chat"); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("TCP fetch = %q, %v", got, err)
	}
	if s.count("udp") != udp0 || s.count("tcp") != tcp0+1 {
		t.Error("Net: tcp did not use TCP only")
	}
	if _, err := (&resolve.DNSRoot{Server: s.Addr, Zone: "example.com", Net: "sctp"}).Fetch(t.Context(), "chat"); err == nil {
		t.Error("accepted an unknown transport")
	}
	// Through ParseRoot, the way the command line builds it.
	parsed, err := resolve.ParseRoot("dns://" + s.Addr + "/Example.com.")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := parsed.Fetch(t.Context(), "chat"); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("parsed root fetch = %q, %v", got, err)
	}
}

func TestDNSRootDown(t *testing.T) {
	// A port that was just free on both transports: nothing listens there.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	for _, network := range []string{"udp", "tcp"} {
		root := &resolve.DNSRoot{Server: addr, Zone: "example.com", Net: network}
		_, err := root.Fetch(t.Context(), "chat")
		if err == nil || !strings.HasPrefix(err.Error(), "dns://"+addr+"/example.com: ") {
			t.Errorf("%s: down server: %v", network, err)
		}
	}
}

// An unresponsive server does not hold Fetch once the context ends, even
// with a per-query timeout far beyond the test's deadline.
func TestDNSRootCancel(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := startDNS(t)
			s.publish(t, "chat", "example.com", certOf(1))
			release := s.blockName("_smartclient.chat.example.com.")
			defer release()
			root := &resolve.DNSRoot{Server: s.Addr, Zone: "example.com", Net: network, Timeout: time.Hour}
			ctx, cancel := context.WithCancelCause(t.Context())
			errc := make(chan error, 1)
			go func() {
				_, err := root.Fetch(ctx, "chat")
				errc <- err
			}()
			waitFor(t, "the query to reach the server", func() bool { return s.count(network) > 0 })
			stop := errors.New("grace over")
			cancel(stop)
			select {
			case err := <-errc:
				if !errors.Is(err, stop) {
					t.Fatalf("err = %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Fetch ignored cancellation")
			}
		})
	}
}

func TestLookupMembers(t *testing.T) {
	s := startDNS(t)
	s.addZone(t,
		`_smartclient._tcp.chat.example.com. 300 IN SRV 10 60 8080 b.example.com.`,
		`_smartclient._tcp.chat.example.com. 300 IN SRV 10 40 8081 a.example.com.`,
		`_smartclient._tcp.chat.example.com. 300 IN SRV 20 100 9000 backup.example.com.`,
		`_smartclient._tcp.off.example.com. 300 IN SRV 0 0 0 .`,
	)
	ms, err := resolve.LookupMembers(t.Context(), s.Addr, "example.com", "chat")
	if err != nil {
		t.Fatal(err)
	}
	want := []balance.Member{{URL: "http://a.example.com:8081", Weight: 40}, {URL: "http://b.example.com:8080", Weight: 60}}
	if !slices.Equal(ms, want) {
		t.Fatalf("members %+v, want %+v", ms, want)
	}
	root := &resolve.DNSRoot{Server: s.Addr, Zone: "example.com"}
	srvs, err := root.LookupSRV(t.Context(), "chat")
	if err != nil || len(srvs) != 3 || srvs[2] != (resolve.SRV{Target: "backup.example.com", Port: 9000, Priority: 20, Weight: 100}) {
		t.Fatalf("LookupSRV = %+v, %v", srvs, err)
	}
	for _, svc := range []string{"off", "missing"} {
		if _, err := root.LookupMembers(t.Context(), svc); !errors.Is(err, resolve.ErrNotFound) || !strings.HasPrefix(err.Error(), root.String()) {
			t.Errorf("%s: %v", svc, err)
		}
	}
}
