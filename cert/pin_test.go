package cert

import (
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
