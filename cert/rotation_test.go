package cert

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

// chainCert returns a certificate for service signed by the last of keys,
// with endorsements keys[i] -> keys[i+1], each expiring at exp.
func chainCert(t *testing.T, service string, exp time.Time, keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	c := testCert()
	c.Service = service
	for i := 0; i+1 < len(keys); i++ {
		e, err := Endorse(keys[i], pubOf(keys[i+1]), service, exp)
		if err != nil {
			t.Fatal(err)
		}
		c.Endorsements = append(c.Endorsements, e)
	}
	return mustSign(t, c, keys[len(keys)-1])
}

func TestRotation(t *testing.T) {
	k := make([]ed25519.PrivateKey, 7)
	for i := range k {
		k[i] = testKey(byte(10 + i))
	}
	later := t0.Add(30 * 24 * time.Hour)
	root := trustFor(t, "chat", k[0])

	// withEndorsements signs a certificate by signer carrying ends.
	withEndorsements := func(signer ed25519.PrivateKey, ends ...Endorsement) []byte {
		c := testCert()
		c.Endorsements = ends
		data, err := sign(c, signer, false)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	endorse := func(by ed25519.PrivateKey, key ed25519.PrivateKey, service string, exp time.Time) Endorsement {
		e, err := Endorse(by, pubOf(key), service, exp)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	stretched := endorse(k[0], k[1], "chat", t0.Add(-time.Hour))
	stretched.ExpiresAt = later // the new key's holder extends its own endorsement
	withoutByKey := endorse(k[0], k[1], "chat", later)
	withoutByKey.ByKey = nil

	tests := []struct {
		name  string
		data  []byte
		trust *Trust
		want  error // nil: accepted
	}{
		{"signed by the trusted key", chainCert(t, "chat", later, k[0]), root, nil},
		{"one endorsement", chainCert(t, "chat", later, k[0], k[1]), root, nil},
		{"chain of MaxChainDepth", chainCert(t, "chat", later, k[:MaxChainDepth+1]...), root, nil},
		{"chain one too long", chainCert(t, "chat", later, k[:MaxChainDepth+2]...), root, ErrUntrustedKey},
		{"endorsements in any order", withEndorsements(k[2], endorse(k[1], k[2], "chat", later), endorse(k[0], k[1], "chat", later)), root, nil},
		{"trust in the middle of a chain", chainCert(t, "chat", later, k[0], k[1], k[2]), trustFor(t, "chat", k[1]), nil},
		{"no endorser key in the certificate needed", withEndorsements(k[1], withoutByKey), root, nil},
		{"expired endorsement", chainCert(t, "chat", t0.Add(-time.Hour), k[0], k[1]), root, ErrUntrustedKey},
		{"expired link in the middle", withEndorsements(k[2], endorse(k[0], k[1], "chat", later), endorse(k[1], k[2], "chat", t0.Add(-time.Hour))), root, ErrUntrustedKey},
		{"expiry extended by the endorsed key", withEndorsements(k[1], stretched), root, ErrUntrustedKey},
		{"endorsement for another service", withEndorsements(k[1], endorse(k[0], k[1], "mail", later)), root, ErrUntrustedKey},
		{"endorsed by an untrusted key", chainCert(t, "chat", later, k[5], k[1]), root, ErrUntrustedKey},
		{"broken link", withEndorsements(k[2], endorse(k[0], k[1], "chat", later), endorse(k[3], k[2], "chat", later)), root, ErrUntrustedKey},
		{"loop without a trusted key", withEndorsements(k[1], endorse(k[1], k[2], "chat", later), endorse(k[2], k[1], "chat", later)), root, ErrUntrustedKey},
		{"loop hanging off a trusted key", withEndorsements(k[2], endorse(k[0], k[1], "chat", later), endorse(k[1], k[2], "chat", later), endorse(k[2], k[1], "chat", later), endorse(k[2], k[0], "chat", later)), root, nil},
		{"endorsement forged by the new key", withEndorsements(k[1], forged(t, k[1], k[0], k[1], later)), root, ErrUntrustedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(tt.data, chat, tt.trust, t0)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			t.Log(err)
			wantOnly(t, err, tt.want)
		})
	}
}

// forged returns an endorsement of key that claims to be by claimed but is
// signed by signer.
func forged(t *testing.T, signer, claimed, key ed25519.PrivateKey, exp time.Time) Endorsement {
	e, err := Endorse(signer, pubOf(key), "chat", exp)
	if err != nil {
		t.Fatal(err)
	}
	e.By, e.ByKey = Fingerprint(pubOf(claimed)), pubOf(claimed)
	return e
}

func TestRotationErrorNamesTheReason(t *testing.T) {
	old, cur := testKey(10), testKey(11)
	_, err := Verify(chainCert(t, "chat", t0.Add(-time.Hour), old, cur), chat, trustFor(t, "chat", old), t0)
	if err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("error %v does not say the endorsement expired", err)
	}
}

// A stale cache served after expiry still needs its endorsements to have
// been valid while the certificate was.
func TestRotationAllowExpired(t *testing.T) {
	old, cur := testKey(10), testKey(11)
	c := testCert()
	c.IssuedAt, c.ExpiresAt = t0.Add(-72*time.Hour), t0.Add(-24*time.Hour)
	e, err := Endorse(old, pubOf(cur), "chat", t0.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c.Endorsements = []Endorsement{e}
	v := Verifier{Trust: trustFor(t, "chat", old), AllowExpired: true}
	if _, err := v.verify(mustSign(t, c, cur), chat, t0); err != nil {
		t.Errorf("endorsement valid until after the certificate expired: %v", err)
	}
	c.Endorsements[0], _ = Endorse(old, pubOf(cur), "chat", t0.Add(-48*time.Hour))
	_, err = v.verify(mustSign(t, c, cur), chat, t0)
	wantOnly(t, err, ErrUntrustedKey)
}

func TestSelfCertifyingName(t *testing.T) {
	key, next, stranger := testKey(1), testKey(2), testKey(3)
	self := Name{Service: "chat", Fingerprint: Fingerprint(pubOf(key))}
	later := t0.Add(30 * 24 * time.Hour)
	rotated := chainCert(t, "chat", later, key, next)
	// After rotation the original key is found through by_key.
	tests := []struct {
		name  string
		data  []byte
		n     Name
		trust *Trust
		want  error
	}{
		{"signed by the named key, no trust file", mustSign(t, testCert(), key), self, nil, nil},
		{"rotated key endorsed by the named key", rotated, self, nil, nil},
		{"signed by a stranger", mustSign(t, testCert(), stranger), self, nil, ErrUntrustedKey},
		{"stranger trusted for * in the file", mustSign(t, testCert(), stranger), self, trustFor(t, "*", stranger), ErrUntrustedKey},
		{"named key trusted, but the name pins another", mustSign(t, testCert(), key), Name{Service: "chat", Fingerprint: Fingerprint(pubOf(next))}, trustFor(t, "*", key), ErrUntrustedKey},
		{"wrong service", mustSign(t, func() *Certificate { c := testCert(); c.Service = "mail"; return c }(), key), self, nil, ErrWrongService},
		{"stranger with TOFU on", mustSign(t, testCert(), stranger), self, &Trust{TOFU: true}, ErrUntrustedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(tt.data, tt.n, tt.trust, t0)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			t.Log(err)
			wantOnly(t, err, tt.want)
		})
	}
}
