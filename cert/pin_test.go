package cert

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// emptyPin is the pin of the SHA-256 of nothing, a well-known digest.
const emptyPin = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

func TestParsePin(t *testing.T) {
	b64 := strings.TrimPrefix(emptyPin, pinPrefix)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"valid", emptyPin, true},
		{"empty", "", false},
		{"no prefix", b64, false},
		{"other hash", "sha1/" + b64, false},
		{"upper-case prefix", "SHA256/" + b64, false},
		{"unpadded", strings.TrimSuffix(emptyPin, "="), false},
		{"URL alphabet", "sha256/47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=", false},
		{"31 bytes", pinPrefix + base64.StdEncoding.EncodeToString(make([]byte, 31)), false},
		{"33 bytes", pinPrefix + base64.StdEncoding.EncodeToString(make([]byte, 33)), false},
		{"non-zero padding bits", emptyPin[:len(emptyPin)-2] + "V=", false},
		{"line break inside", emptyPin[:20] + "\n" + emptyPin[20:], false},
		{"trailing space", emptyPin + " ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePin(tc.in)
			if !tc.ok {
				if err == nil || !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParsePin(%q) = %x, %v; want an error wrapping ErrMalformed", tc.in, got, err)
				}
				return
			}
			if err != nil || got != sha256.Sum256(nil) {
				t.Fatalf("ParsePin(%q) = %x, %v; want the SHA-256 of nothing", tc.in, got, err)
			}
		})
	}
}

// A certificate refuses a member pin that ParsePin refuses, naming the
// member.
func TestCertificateRefusesBadPin(t *testing.T) {
	c := testCert()
	c.Format = Format
	c.MemberList[0].URL = "https://10.0.0.1:8443"
	c.MemberList[0].Pin = "sha256/short="
	if err := c.Validate(); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "members[0] pin") {
		t.Fatalf("Validate = %v", err)
	}
	c.MemberList[0].Pin = emptyPin
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate with a good pin = %v", err)
	}
}

// ParsePin never panics, and what it accepts is the canonical spelling of
// the digest it returns, so a pin compares equal as a string and as bytes.
func FuzzParsePin(f *testing.F) {
	for _, s := range []string{emptyPin, "", "sha256/", "sha256/====", emptyPin + "=", strings.ToLower(emptyPin)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pin, err := ParsePin(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if back := pinPrefix + base64.StdEncoding.EncodeToString(pin[:]); back != s {
			t.Fatalf("ParsePin(%q) accepted a non-canonical spelling of %s", s, back)
		}
	})
}

// A certificate's pins must be ones a TLS client can enforce: on https
// members only, and one key per host and port (the port defaulting to 443,
// the host compared without case). Sign and Verify both refuse others.
func TestCertificatePinsMustBeCheckable(t *testing.T) {
	other := "sha256/" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	for _, tc := range []struct {
		name    string
		members []Member
		want    string // "" when valid
	}{
		{"http member", []Member{{URL: "http://10.0.0.1:8080", Pin: emptyPin}}, `members[0] "http://10.0.0.1:8080" has a pin but is not https`},
		{"two keys for one server", []Member{
			{URL: "https://Web.example/a", Pin: emptyPin},
			{URL: "https://web.example:443/b", Pin: other},
		}, "members[0] and members[1] are both served at web.example:443 but pin different keys"},
		{"one key for one server", []Member{
			{URL: "https://web.example/a", Pin: emptyPin},
			{URL: "https://WEB.example:443/b", Pin: emptyPin},
			{URL: "https://web.example:8443/", Pin: other},
			{URL: "https://web.example/c"},
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testCert()
			c.MemberList = tc.members
			_, err := Sign(c, testKey(1))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Sign = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sign = %v, want ErrMalformed naming %q", err, tc.want)
			}
			// Signed anyway, bypassing Sign's checks: Verify refuses it too.
			good := testCert()
			m := payloadMap(t, good, testKey(1))
			m["members"] = tc.members
			raw := signRaw(t, PayloadType, mustJSON(t, m), testKey(1))
			if _, err := Verify(raw, Name{Service: "chat", Fingerprint: Fingerprint(pubOf(testKey(1)))}, nil, t0); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v, want ErrMalformed naming %q", err, tc.want)
			}
		})
	}
}
