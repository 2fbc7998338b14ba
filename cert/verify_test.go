package cert

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/clock"
)

var chat = Name{Service: "chat"}

func TestVerifyAccepts(t *testing.T) {
	key := testKey(1)
	c := testCert()
	data := mustSign(t, c, key)
	got, err := Verify(data, chat, trustFor(t, "chat", key), t0)
	if err != nil {
		t.Fatal(err)
	}
	want := *c
	want.Format = Format
	want.SigningKey = pubOf(key)
	if !reflect.DeepEqual(got, &want) {
		t.Errorf("Verify =\n%+v\nwant\n%+v", got, &want)
	}
	// Patterns and "*" select the key too.
	for _, p := range []string{"*", "ch*", "c?at", "[bc]hat"} {
		if _, err := Verify(data, chat, trustFor(t, p, key), t0); err != nil {
			t.Errorf("pattern %q: %v", p, err)
		}
	}
}

// Every refusal named in the "Bad input" section, each with the
// sentinel that names it.
func TestVerifyRefusals(t *testing.T) {
	key, other := testKey(1), testKey(2)
	trust := trustFor(t, "chat", key)
	good := mustSign(t, testCert(), key)
	env := envelopeOf(t, good)

	// reenvelope rebuilds the envelope around payload with good's signature.
	reenvelope := func(payload []byte) []byte {
		e := *env
		e.Payload = payload
		data, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	edited := func(edit func(m map[string]any)) []byte {
		m := payloadMap(t, testCert(), key)
		edit(m)
		return mustJSON(t, m)
	}
	signedWith := func(edit func(c *Certificate)) []byte {
		c := testCert()
		edit(c)
		return mustSign(t, c, key)
	}
	flipSig := func() []byte {
		e := *env
		e.Signatures = []Signature{{KeyID: env.Signatures[0].KeyID, Sig: bytes.Clone(env.Signatures[0].Sig)}}
		e.Signatures[0].Sig[10] ^= 1
		data, _ := e.Marshal()
		return data
	}

	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"tampered member URL", reenvelope(bytes.Replace(env.Payload, []byte("10.0.0.2"), []byte("66.6.6.6"), 1)), ErrBadSignature},
		{"tampered version", reenvelope(bytes.Replace(env.Payload, []byte(`"version":7`), []byte(`"version":9`), 1)), ErrBadSignature},
		{"tampered expiry", reenvelope(edited(func(m map[string]any) { m["expires_at"] = "2099-01-01T00:00:00Z" })), ErrBadSignature},
		{"added field", reenvelope(edited(func(m map[string]any) { m["x"] = 1 })), ErrBadSignature},
		{"tampered signature", flipSig(), ErrBadSignature},
		{"truncated", good[:len(good)/2], ErrMalformed},
		{"truncated by one byte", good[:len(good)-2], ErrMalformed},
		{"truncated payload", reenvelope(env.Payload[:len(env.Payload)-1]), ErrMalformed},
		{"re-signed by another key", mustSign(t, testCert(), other), ErrUntrustedKey},
		{"re-signed by another key, signing_key kept", signRaw(t, PayloadType, env.Payload, other), ErrBadSignature},
		{"expired", signedWith(func(c *Certificate) { c.ExpiresAt = t0.Add(-10 * time.Minute) }), ErrExpired},
		{"not yet valid", signedWith(func(c *Certificate) { c.NotBefore = t0.Add(10 * time.Minute) }), ErrNotYetValid},
		{"issued in the future", signedWith(func(c *Certificate) { c.IssuedAt = t0.Add(time.Hour) }), ErrNotYetValid},
		{"oversized", append(good, bytes.Repeat([]byte(" "), MaxSize)...), ErrTooLarge},
		{"wrong service", signedWith(func(c *Certificate) { c.Service = "mail" }), ErrWrongService},
		{"unknown major version", signRaw(t, PayloadType, edited(func(m map[string]any) {
			m["format"] = "smartclient-cert/2.0"
			m["members"] = "a different shape in version 2"
		}), key), ErrVersion},
		{"malformed: not JSON", []byte("not a certificate"), ErrMalformed},
		{"malformed: wrong payload type", signRaw(t, "application/json", env.Payload, key), ErrMalformed},
		{"malformed: payload not an object", signRaw(t, PayloadType, []byte(`[1,2]`), key), ErrMalformed},
		{"malformed: no format", signRaw(t, PayloadType, edited(func(m map[string]any) { delete(m, "format") }), key), ErrMalformed},
		{"malformed: format garbage", signRaw(t, PayloadType, edited(func(m map[string]any) { m["format"] = "smartclient-cert/one" }), key), ErrMalformed},
		{"malformed: version a string", signRaw(t, PayloadType, edited(func(m map[string]any) { m["version"] = "7" }), key), ErrMalformed},
		{"malformed: version 0", signRaw(t, PayloadType, edited(func(m map[string]any) { m["version"] = 0 }), key), ErrMalformed},
		{"malformed: negative version", signRaw(t, PayloadType, edited(func(m map[string]any) { m["version"] = -1 }), key), ErrMalformed},
		{"malformed: bad refresh", signRaw(t, PayloadType, edited(func(m map[string]any) { m["refresh"] = "soon" }), key), ErrMalformed},
		{"malformed: no members", signRaw(t, PayloadType, edited(func(m map[string]any) { m["members"] = []any{} }), key), ErrMalformed},
		{"malformed: bad service name", signRaw(t, PayloadType, edited(func(m map[string]any) { m["service"] = "../chat" }), key), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Verify(tt.data, chat, trust, t0)
			t.Log(err)
			if c != nil {
				t.Errorf("Verify returned a certificate with error %v", err)
			}
			wantOnly(t, err, tt.want)
		})
	}
}

func TestVerifyBadName(t *testing.T) {
	_, err := Verify(mustSign(t, testCert(), testKey(1)), Name{Service: "Chat"}, trustFor(t, "*", testKey(1)), t0)
	wantOnly(t, err, ErrBadName)
}

// A newer minor version may add fields anywhere; this client ignores them.
func TestVerifyNewerMinorVersion(t *testing.T) {
	key := testKey(1)
	m := payloadMap(t, testCert(), key)
	m["format"] = "smartclient-cert/1.7"
	m["transport"] = map[string]any{"quic": true}
	m["members"].([]any)[0].(map[string]any)["protocol_hint"] = "h3"
	m["policy"].(map[string]any)["params"].(map[string]any)["future_param"] = "x"
	m["allow"] = map[string]any{"cidrs": []string{"10.0.0.0/8"}, "asns": []int{64500}}
	data := signRaw(t, PayloadType, mustJSON(t, m), key)
	c, err := Verify(data, chat, trustFor(t, "chat", key), t0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Format != "smartclient-cert/1.7" || c.MemberList[0].URL != "http://10.0.0.1:8080" || len(c.Allow.CIDRs) != 1 {
		t.Errorf("got %+v", c)
	}
}

func TestVerifyEnvelopeVariants(t *testing.T) {
	key, other := testKey(1), testKey(2)
	trust := trustFor(t, "chat", key)
	env := envelopeOf(t, mustSign(t, testCert(), key))
	good := env.Signatures[0]
	otherSig := Signature{KeyID: Fingerprint(pubOf(other)), Sig: ed25519Sign(other, env)}
	junk := Signature{KeyID: good.KeyID, Sig: []byte{1, 2, 3}}
	tests := []struct {
		name string
		sigs []Signature
		ok   bool
	}{
		{"no keyid", []Signature{{Sig: good.Sig}}, true},
		{"wrong keyid", []Signature{{KeyID: "someone-else", Sig: good.Sig}}, false},
		{"junk then good", []Signature{junk, good}, true},
		{"stranger then good", []Signature{otherSig, good}, true},
		{"stranger only", []Signature{otherSig}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := *env
			e.Signatures = tt.sigs
			data, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			_, err = Verify(data, chat, trust, t0)
			if (err == nil) != tt.ok {
				t.Fatalf("Verify error %v, want ok=%v", err, tt.ok)
			}
		})
	}
	// URL-safe unpadded base64 is the same envelope.
	j := map[string]any{
		"payloadType": PayloadType,
		"payload":     base64.RawURLEncoding.EncodeToString(env.Payload),
		"signatures":  []any{map[string]any{"sig": base64.RawURLEncoding.EncodeToString(good.Sig)}},
	}
	if _, err := Verify(mustJSON(t, j), chat, trust, t0); err != nil {
		t.Errorf("URL-safe base64: %v", err)
	}
}

func ed25519Sign(k ed25519.PrivateKey, env *Envelope) []byte {
	return ed25519.Sign(k, PAE(env.PayloadType, env.Payload))
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func TestVerifySkew(t *testing.T) {
	key := testKey(1)
	trust := trustFor(t, "chat", key)
	c := testCert()
	c.IssuedAt = t0.Add(-time.Hour)
	c.NotBefore = t0.Add(time.Minute)
	c.ExpiresAt = t0.Add(time.Hour)
	data := mustSign(t, c, key)
	tests := []struct {
		skew time.Duration
		now  time.Time
		want error
	}{
		{0, t0, nil}, // 1 minute early, inside the default 5 minutes
		{0, t0.Add(-4 * time.Minute), nil},
		{0, t0.Add(-5 * time.Minute), ErrNotYetValid},
		{0, t0.Add(time.Hour + 4*time.Minute), nil},
		{0, t0.Add(time.Hour + 5*time.Minute), ErrExpired},
		{-1, t0, ErrNotYetValid},
		{-1, t0.Add(time.Hour - time.Nanosecond), nil},
		{-1, t0.Add(time.Hour), ErrExpired},
		{time.Hour, t0.Add(-58 * time.Minute), nil},
	}
	for _, tt := range tests {
		v := Verifier{Trust: trust, Skew: tt.skew, Clock: clock.NewFake(tt.now)}
		_, err := v.Verify(data, chat)
		if tt.want == nil && err != nil || tt.want != nil && !errorsIs(err, tt.want) {
			t.Errorf("skew %v at %v: error %v, want %v", tt.skew, tt.now, err, tt.want)
		}
	}
}

func TestVerifyAllowExpired(t *testing.T) {
	key := testKey(1)
	c := testCert()
	c.ExpiresAt = t0.Add(-time.Hour)
	c.IssuedAt = t0.Add(-48 * time.Hour)
	data := mustSign(t, c, key)
	v := Verifier{Trust: trustFor(t, "chat", key), Clock: clock.NewFake(t0), AllowExpired: true}
	got, err := v.Verify(data, chat)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Expired(t0) {
		t.Error("Expired = false")
	}
	// Everything else is still checked.
	if _, err := v.Verify(mustSign(t, c, testKey(2)), chat); !errorsIs(err, ErrUntrustedKey) {
		t.Errorf("stale stranger: %v", err)
	}
}

func TestVersionFunc(t *testing.T) {
	key := testKey(1)
	v := Verifier{Trust: trustFor(t, "chat", key), Clock: clock.NewFake(t0)}
	f := v.VersionFunc(chat)
	if n, err := f(mustSign(t, testCert(), key)); n != 7 || err != nil {
		t.Errorf("VersionFunc = %d, %v", n, err)
	}
	if n, err := f([]byte("x")); n != 0 || err == nil {
		t.Errorf("VersionFunc(garbage) = %d, %v", n, err)
	}
}

func TestCheckVersion(t *testing.T) {
	tests := []struct {
		cached, got uint64
		ok          bool
	}{{0, 1, true}, {5, 5, true}, {5, 6, true}, {5, 4, false}, {^uint64(0), 1, false}}
	for _, tt := range tests {
		err := CheckVersion(tt.cached, tt.got)
		if tt.ok {
			if err != nil {
				t.Errorf("CheckVersion(%d, %d) = %v", tt.cached, tt.got, err)
			}
			continue
		}
		wantOnly(t, err, ErrRollback)
		if !strings.Contains(err.Error(), "version 4") && tt.got == 4 {
			t.Errorf("error %q does not name the version", err)
		}
	}
}

// Parse shows what a certificate says without trusting it, and returns the
// envelope even when the certificate inside does not parse.
func TestParse(t *testing.T) {
	key := testKey(1)
	env, c, err := Parse(mustSign(t, testCert(), key))
	if err != nil || c.Service != "chat" || env.Signatures[0].KeyID != Fingerprint(pubOf(key)) {
		t.Fatalf("Parse = %v, %+v, %v", env, c, err)
	}
	env, c, err = Parse(signRaw(t, PayloadType, []byte(`{"format":"smartclient-cert/3.1"}`), key))
	if env == nil || c != nil {
		t.Errorf("Parse of a version-3 certificate = %v, %v", env, c)
	}
	wantOnly(t, err, ErrVersion)
}

func TestDeterministicPayload(t *testing.T) {
	key := testKey(1)
	a := mustSign(t, testCert(), key)
	b := mustSign(t, testCert(), key)
	if !bytes.Equal(a, b) {
		t.Error("signing the same certificate twice gave different bytes")
	}
	// A zone other than UTC signs the same instant the same way.
	c := testCert()
	c.IssuedAt = c.IssuedAt.In(time.FixedZone("X", 3600))
	if !bytes.Equal(a, mustSign(t, c, key)) {
		t.Error("time zone changed the signed bytes")
	}
	var m map[string]any
	if err := json.Unmarshal(envelopeOf(t, a).Payload, &m); err != nil || m["format"] != Format || m["issued_at"] != "2026-03-01T11:00:00Z" {
		t.Errorf("payload %v (%v)", m, err)
	}
}
