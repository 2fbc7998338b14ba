package resolve_test

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/smartclient/smartclient/resolve"
)

// FuzzDecodeTXT: TXT strings from a hostile DNS server never panic the
// decoder, never yield more than the limit, and whatever decodes encodes
// back to strings that decode to the same bytes.
func FuzzDecodeTXT(f *testing.F) {
	for _, parts := range [][]string{
		resolve.TXTStrings(certOf(1)),
		resolve.TXTStrings(padded(2, 700)),
		{"c3ZjPWNoYXQ=", ""},
		{"c3Zj", " PWNo\tYXQ=\n"},
		{"c3ZjPWNoYXQ"},
		{"====", "A"},
		{"\\000abc"},
		{""},
	} {
		f.Add(strings.Join(parts, "\x00"), uint16(0))
		f.Add(strings.Join(parts, "\x00"), uint16(5))
	}
	f.Fuzz(func(t *testing.T, joined string, limit uint16) {
		parts := strings.Split(joined, "\x00")
		data, err := resolve.DecodeTXT(parts, int(limit))
		if err != nil {
			if data != nil {
				t.Fatal("data returned with an error")
			}
			return
		}
		max := int(limit)
		if max == 0 {
			max = resolve.MaxCertSize
		}
		if len(data) == 0 || len(data) > max {
			t.Fatalf("decoded %d bytes with limit %d", len(data), max)
		}
		again, err := resolve.DecodeTXT(resolve.TXTStrings(data), int(limit))
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("re-encoding does not round-trip: %v", err)
		}
	})
}

// FuzzTXTRoundTrip: every certificate up to the size limit survives
// publication as TXT strings, each within the 255-byte DNS limit.
func FuzzTXTRoundTrip(f *testing.F) {
	f.Add([]byte("x"))
	f.Add(certOf(3))
	f.Add(bytes.Repeat([]byte{0xff}, 1000))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		parts := resolve.TXTStrings(data)
		for _, p := range parts {
			if len(p) > 255 || len(p) == 0 {
				t.Fatalf("string of %d bytes", len(p))
			}
		}
		got, err := resolve.DecodeTXT(parts, 0)
		if len(data) > resolve.MaxCertSize {
			if !errors.Is(err, resolve.ErrTooLarge) {
				t.Fatalf("%d bytes: %v", len(data), err)
			}
			return
		}
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip: %v", err)
		}
		if rr, err := resolve.TXTRecord("chat", "example.com", 60, data); err == nil {
			back, err := dns.NewRR(rr.String())
			if err != nil {
				t.Fatalf("zone line does not parse: %v", err)
			}
			if got, err := resolve.DecodeTXT(back.(*dns.TXT).Txt, 0); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("zone line round trip: %v", err)
			}
		}
	})
}

// FuzzParseRoot: no input panics the parser; every accepted root prints
// as a string that parses back to the same root, and the names it derives
// (URL, DNS owner name, directory) are well formed.
func FuzzParseRoot(f *testing.F) {
	for _, s := range []string{
		"https://example.com", "http://127.0.0.1:8080/mirror/", "http://[::1]:80",
		"dns://127.0.0.1:5353/example.com", "dns://ns/a.b.", "dns://[::1]/x",
		"file:///var/certs", "file://localhost/x%20y", "/abs", "./rel", "rel/dir",
		"", "ftp://x", "https://", "dns://x/a..b", "example.com:443", "file://h/x",
		"https://a/?q", "https://u@a", "dns://x/\\.", "HTTPS://A", "c:\\x", "a\x00b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := resolve.ParseRoot(s)
		if err != nil {
			if r != nil {
				t.Fatal("root returned with an error")
			}
			return
		}
		again, err := resolve.ParseRoot(r.String())
		if err != nil {
			t.Fatalf("ParseRoot(%q).String() = %q does not parse: %v", s, r.String(), err)
		}
		if again.String() != r.String() {
			t.Fatalf("%q -> %q -> %q", s, r.String(), again.String())
		}
		switch r := r.(type) {
		case *resolve.HTTPRoot:
			u, err := url.Parse(r.URL("chat"))
			if err != nil || !strings.HasSuffix(u.Path, resolve.WellKnownPrefix+"chat.cert") || u.Host == "" {
				t.Fatalf("%q: certificate URL %q (%v)", s, r.URL("chat"), err)
			}
		case *resolve.DNSRoot:
			if _, ok := dns.IsDomainName(resolve.TXTName("chat", r.Zone)); !ok || r.Server == "" {
				t.Fatalf("%q: zone %q server %q", s, r.Zone, r.Server)
			}
		case *resolve.DirRoot:
			if r.Dir == "" || strings.ContainsRune(r.Dir, 0) {
				t.Fatalf("%q: dir %q", s, r.Dir)
			}
		default:
			t.Fatalf("unexpected root type %T", r)
		}
	})
}
