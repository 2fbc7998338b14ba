package resolve

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzAnswer: any DNS answer a hostile server can send (that miekg/dns
// unpacks) goes through record selection and TXT reassembly without
// panicking, and the result never exceeds the limit.
func FuzzAnswer(f *testing.F) {
	name := TXTName("chat", "example.com")
	for _, rrs := range [][]dns.RR{
		{mustTXT(name, []byte("svc=chat;v=1"))},
		{&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET}, Target: "b.example.net."},
			mustTXT("b.example.net.", []byte("svc=chat;v=2"))},
		{&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET}, Target: name}},
		{mustTXT(name, []byte("a")), mustTXT(name, []byte("b"))},
	} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeTXT)
		m.Response = true
		m.Answer = rrs
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		for _, rr := range answersFor(m, name, dns.TypeTXT) {
			txt, ok := rr.(*dns.TXT)
			if !ok {
				t.Fatalf("selected a %T", rr)
			}
			if data, err := DecodeTXT(txt.Txt, 100); err == nil && len(data) > 100 {
				t.Fatalf("decoded %d bytes over the limit", len(data))
			}
		}
	})
}

func mustTXT(name string, data []byte) *dns.TXT {
	return &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: TXTStrings(data)}
}
