package cert

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// t0 is the tests' "now"; certificates are valid around it.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testKey returns a deterministic key; different seeds give different keys.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// testCert returns a valid certificate for service "chat" at t0.
func testCert() *Certificate {
	return &Certificate{
		Service:   "chat",
		Version:   7,
		IssuedAt:  t0.Add(-time.Hour),
		ExpiresAt: t0.Add(24 * time.Hour),
		Refresh:   Duration(30 * time.Minute),
		MemberList: []Member{
			{URL: "http://10.0.0.1:8080", Weight: 2, Zone: "eu-1"},
			{URL: "http://10.0.0.2:8080"},
		},
		Policy: Policy{Name: "p2c", Params: map[string]string{"max_attempts": "4"}},
		Load:   Load{TTL: Duration(2 * time.Second)},
		Roots:  []string{"https://roots.example/", "dns://127.0.0.1:53/example.org", "file:///var/lib/smartclient"},
	}
}

func mustSign(t testing.TB, c *Certificate, k ed25519.PrivateKey) []byte {
	t.Helper()
	data, err := Sign(c, k)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return data
}

// signRaw signs an arbitrary payload, bypassing Sign's checks, to build
// certificates Sign would refuse (other versions, unknown fields, bad
// fields) that are still validly signed.
func signRaw(t testing.TB, payloadType string, payload []byte, k ed25519.PrivateKey) []byte {
	t.Helper()
	env := Envelope{PayloadType: payloadType, Payload: payload, Signatures: []Signature{{
		KeyID: Fingerprint(pubOf(k)),
		Sig:   ed25519.Sign(k, PAE(payloadType, payload)),
	}}}
	data, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// payloadMap returns c (signing key filled in for k) as a generic JSON
// object, for tests that edit fields Sign would not let through.
func payloadMap(t testing.TB, c *Certificate, k ed25519.PrivateKey) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(envelopeOf(t, mustSign(t, c, k)).Payload, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func envelopeOf(t testing.TB, data []byte) *Envelope {
	t.Helper()
	env, err := ParseEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// trustFor trusts k for pattern.
func trustFor(t testing.TB, pattern string, k ed25519.PrivateKey) *Trust {
	t.Helper()
	tr := &Trust{}
	if err := tr.AddKey(pattern, pubOf(k)); err != nil {
		t.Fatal(err)
	}
	return tr
}

var sentinels = []error{
	ErrMalformed, ErrTooLarge, ErrVersion, ErrWrongService, ErrExpired, ErrNotYetValid,
	ErrBadSignature, ErrUntrustedKey, ErrRollback, ErrBadName, ErrNotAllowed,
}

// wantOnly fails unless err wraps want and no other sentinel.
func wantOnly(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Fatalf("error %v wraps %v as well as %v", err, s, want)
		}
	}
}

// countSentinels returns how many sentinels err wraps.
func countSentinels(err error) int {
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	return n
}
