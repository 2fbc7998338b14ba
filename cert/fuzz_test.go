package cert

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// fuzzSeeds are certificates in most of the shapes Verify sees.
func fuzzSeeds(f *testing.F) [][]byte {
	key, next := testKey(1), testKey(2)
	c := testCert()
	c.Allow = Allow{CIDRs: []string{"10.0.0.0/8"}, Domains: []string{"example.com"}, Ports: []int{80}}
	c.MemberList[0].URL = "https://10.0.0.1:8443"
	c.MemberList[0].Pin = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	e, err := Endorse(key, pubOf(next), "chat", t0.Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	rotated := testCert()
	rotated.Endorsements = []Endorsement{e}
	expired := testCert()
	expired.IssuedAt, expired.ExpiresAt = t0.Add(-48*time.Hour), t0.Add(-time.Hour)
	mail := testCert()
	mail.Service = "mail"
	m := payloadMap(f, testCert(), key)
	m["format"] = "smartclient-cert/1.9"
	m["future"] = []any{1, "x", nil}
	return [][]byte{
		mustSign(f, testCert(), key),
		mustSign(f, c, key),
		mustSign(f, rotated, next),
		mustSign(f, expired, key),
		mustSign(f, mail, key),
		mustSign(f, testCert(), testKey(3)),
		signRaw(f, PayloadType, mustJSON(f, m), key),
		signRaw(f, PayloadType, []byte(`{"format":"smartclient-cert/2.0"}`), key),
		[]byte(`{"payloadType":"t","payload":"e30","signatures":[{"sig":"AA"}]}`),
		[]byte(`{}`),
	}
}

// Parse never panics, wraps exactly one sentinel when it refuses, and what
// it accepts survives re-encoding: the envelope re-marshalled parses to the
// same certificate, and the certificate re-encoded is still valid.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	for _, s := range fuzzSeeds(f) {
		if env, err := ParseEnvelope(s); err == nil {
			f.Add(env.Payload)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The input as a bare payload, where mutations reach the JSON
		// directly rather than through base64.
		if c, err := decodeCertificate(data); err != nil {
			if c != nil || countSentinels(err) != 1 {
				t.Fatalf("decodeCertificate error %v (wrapping %d sentinels)", err, countSentinels(err))
			}
		} else if _, err := decodeCertificate(jsonOf(t, c)); err != nil {
			t.Fatalf("re-encoded certificate: %v\n%s", err, jsonOf(t, c))
		}

		env, c, err := Parse(data)
		if err != nil {
			if c != nil || countSentinels(err) != 1 {
				t.Fatalf("Parse error %v (wrapping %d sentinels), certificate %v", err, countSentinels(err), c)
			}
			return
		}
		again, err := env.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		env2, c2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-marshalled envelope: %v", err)
		}
		if !bytes.Equal(env.Payload, env2.Payload) || !bytes.Equal(jsonOf(t, c), jsonOf(t, c2)) {
			t.Fatal("re-marshalled envelope parses differently")
		}
		c3, err := decodeCertificate(jsonOf(t, c))
		if err != nil {
			t.Fatalf("re-encoded certificate: %v\n%s", err, jsonOf(t, c))
		}
		if !bytes.Equal(jsonOf(t, c), jsonOf(t, c3)) {
			t.Fatal("re-encoded certificate decodes differently")
		}
	})
}

// Verify never panics, wraps exactly one sentinel when it refuses, and what
// it accepts is for the right service, inside its validity window, and
// verifies again after re-encoding the envelope.
func FuzzVerify(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	for _, s := range fuzzSeeds(f) {
		if env, err := ParseEnvelope(s); err == nil {
			f.Add(env.Payload)
		}
	}
	key := testKey(1)
	trust := trustFor(f, "chat", key)
	f.Fuzz(func(t *testing.T, data []byte) {
		// The input as an envelope, and as a payload the trusted key signed:
		// what a hostile root can send, and what a buggy signer can.
		checkVerify(t, data, trust)
		if len(data) <= MaxSize/2 {
			checkVerify(t, signRaw(t, PayloadType, data, key), trust)
		}
	})
}

func checkVerify(t *testing.T, data []byte, trust *Trust) {
	c, err := Verify(data, chat, trust, t0)
	if err != nil {
		if c != nil || countSentinels(err) != 1 {
			t.Fatalf("Verify error %v (wrapping %d sentinels), certificate %v", err, countSentinels(err), c)
		}
		return
	}
	if c.Service != "chat" || !t0.Add(DefaultSkew).After(c.ValidFrom()) || !t0.Add(-DefaultSkew).Before(c.ExpiresAt) {
		t.Fatalf("accepted %+v", c)
	}
	env, err := ParseEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	again, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Verify(again, chat, trust, t0)
	if err != nil {
		t.Fatalf("re-encoded envelope refused: %v", err)
	}
	if !bytes.Equal(jsonOf(t, c), jsonOf(t, c2)) {
		t.Fatal("re-encoded envelope verifies to another certificate")
	}
	if len(trust.KeysFor("chat")) != 1 {
		t.Fatal("Verify changed the trust without TOFU")
	}
}

func jsonOf(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
