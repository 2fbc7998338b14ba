package cert

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Sign refuses certificates that Validate or its stricter checks reject,
// naming the field.
func TestSignRefusals(t *testing.T) {
	key := testKey(1)
	badEnd, err := Endorse(testKey(2), pubOf(key), "mail", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	manyMembers := make([]Member, 1100)
	for i := range manyMembers {
		manyMembers[i] = Member{URL: fmt.Sprintf("http://10.0.%d.%d:1", i/250, i%250)}
	}
	tests := []struct {
		name string
		edit func(c *Certificate)
		want string // in the error
	}{
		{"service empty", func(c *Certificate) { c.Service = "" }, "service"},
		{"service upper case", func(c *Certificate) { c.Service = "Chat" }, "service"},
		{"service too long", func(c *Certificate) { c.Service = strings.Repeat("a", 64) }, "service"},
		{"version 0", func(c *Certificate) { c.Version = 0 }, "version"},
		{"format 2", func(c *Certificate) { c.Format = "smartclient-cert/2.0" }, "major version 2"},
		{"no issued_at", func(c *Certificate) { c.IssuedAt = time.Time{} }, "issued_at"},
		{"no expires_at", func(c *Certificate) { c.ExpiresAt = time.Time{} }, "expires_at"},
		{"expires before issue", func(c *Certificate) { c.ExpiresAt = c.IssuedAt.Add(-time.Second) }, "expires_at"},
		{"expires before not_before", func(c *Certificate) { c.NotBefore = c.ExpiresAt }, "expires_at"},
		{"negative refresh", func(c *Certificate) { c.Refresh = -1 }, "refresh"},
		{"no members", func(c *Certificate) { c.MemberList = nil }, "no members"},
		{"too many members", func(c *Certificate) { c.MemberList = manyMembers }, "1100 members, limit 1024"},
		{"member URL without scheme", func(c *Certificate) { c.MemberList[0].URL = "10.0.0.1:80" }, "scheme"},
		{"member URL with a space", func(c *Certificate) { c.MemberList[0].URL = "http://a b" }, "white space"},
		{"duplicate member", func(c *Certificate) { c.MemberList[1].URL = c.MemberList[0].URL }, "both"},
		{"negative weight", func(c *Certificate) { c.MemberList[0].Weight = -1 }, "w="},
		{"bad zone", func(c *Certificate) { c.MemberList[0].Zone = "eu 1" }, "zone"},
		{"bad pin", func(c *Certificate) { c.MemberList[0].Pin = "sha1/AAAA" }, "pin"},
		{"short pin", func(c *Certificate) { c.MemberList[0].Pin = "sha256/AAAA" }, "pin"},
		{"unknown policy", func(c *Certificate) { c.Policy.Name = "fastest" }, "fastest"},
		{"unknown param", func(c *Certificate) { c.Policy.Params = map[string]string{"max_atempts": "3"} }, "max_atempts"},
		{"bad param", func(c *Certificate) { c.Policy.Params = map[string]string{"max_attempts": "0"} }, "max_attempts"},
		{"bad duration param", func(c *Certificate) { c.Policy.Params = map[string]string{"attempt_timeout": "-1s"} }, "attempt_timeout"},
		{"poll path relative", func(c *Certificate) { c.Load.PollPath = "load" }, "poll_path"},
		{"root not a URL", func(c *Certificate) { c.Roots = []string{"roots.example"} }, "roots[0]"},
		{"root with unknown scheme", func(c *Certificate) { c.Roots = []string{"gopher://roots.example"} }, "roots[0]"},
		{"too many roots", func(c *Certificate) { c.Roots = make([]string, MaxRoots+1) }, "roots"},
		{"bad CIDR", func(c *Certificate) { c.Allow.CIDRs = []string{"10.0.0.0/33"} }, "allow.cidrs[0]"},
		{"domain with a wildcard", func(c *Certificate) { c.Allow.Domains = []string{"*.example.com"} }, "allow.domains[0]"},
		{"numeric domain", func(c *Certificate) { c.Allow.Domains = []string{"10.0.0.1"} }, "allow.domains[0]"},
		{"port 0", func(c *Certificate) { c.Allow.Ports = []int{0} }, "allow.ports[0]"},
		{"endorsement for another service", func(c *Certificate) { c.Endorsements = []Endorsement{badEnd} }, "does not verify"},
		{"endorsement by_key mismatch", func(c *Certificate) {
			e := badEnd
			e.ByKey = pubOf(key)
			c.Endorsements = []Endorsement{e}
		}, "by_key"},
		{"signing_key of another key", func(c *Certificate) { c.SigningKey = pubOf(testKey(2)) }, "signing_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testCert()
			tt.edit(c)
			_, err := Sign(c, key)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Sign error %v, want one naming %q", err, tt.want)
			}
		})
	}
	if _, err := Sign(testCert(), key[:10]); err == nil {
		t.Error("Sign with a short key")
	}
}

func TestSignDoesNotModifyInput(t *testing.T) {
	c := testCert()
	c.IssuedAt = c.IssuedAt.In(time.FixedZone("X", 7200))
	e, err := Endorse(testKey(2), pubOf(testKey(1)), "chat", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e.ExpiresAt = e.ExpiresAt.In(time.FixedZone("Y", 3600))
	c.Endorsements = []Endorsement{e}
	before := *c
	before.Endorsements = append([]Endorsement(nil), c.Endorsements...)
	mustSign(t, c, testKey(1))
	if !reflect.DeepEqual(&before, c) {
		t.Errorf("Sign modified its input:\n%+v\n%+v", &before, c)
	}
}

func TestEndorseRefusals(t *testing.T) {
	k := testKey(1)
	if _, err := Endorse(k[:5], pubOf(k), "chat", t0); err == nil {
		t.Error("short private key")
	}
	if _, err := Endorse(k, pubOf(k)[:5], "chat", t0); err == nil {
		t.Error("short public key")
	}
	if _, err := Endorse(k, pubOf(k), "Chat", t0); err == nil {
		t.Error("bad service")
	}
	if _, err := Endorse(k, pubOf(k), "chat", time.Time{}); err == nil {
		t.Error("no expiry")
	}
}

func TestRefreshInterval(t *testing.T) {
	c := testCert()
	if c.RefreshInterval() != 30*time.Minute {
		t.Error(c.RefreshInterval())
	}
	c.Refresh = 0
	if c.RefreshInterval() != DefaultRefresh {
		t.Error(c.RefreshInterval())
	}
}
