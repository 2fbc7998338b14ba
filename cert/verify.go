package cert

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/smartclient/smartclient/clock"
)

// DefaultSkew is how far the client's clock may be from the signer's
// before a certificate is refused as not yet valid or expired.
const DefaultSkew = 5 * time.Minute

// Parse decodes a certificate envelope without trusting it: for display
// (smartclient cert inspect) and for tools. It checks size, envelope
// syntax, payload type, format version and every field's range, but no
// signature. When the envelope parses but the certificate does not, it
// returns the envelope with the error.
func Parse(data []byte) (*Envelope, *Certificate, error) {
	env, err := ParseEnvelope(data)
	if err != nil {
		return nil, nil, err
	}
	if env.PayloadType != PayloadType {
		return env, nil, fmt.Errorf("%w: payloadType %q, want %q", ErrMalformed, clip(env.PayloadType), PayloadType)
	}
	c, err := decodeCertificate(env.Payload)
	if err != nil {
		return env, nil, err
	}
	return env, c, nil
}

// Verifier checks certificates against a Trust. The zero value trusts only
// self-certifying names; it is safe for concurrent use.
type Verifier struct {
	// Trust holds the keys trusted directly and the TOFU setting; nil
	// trusts none.
	Trust *Trust
	// Clock tells the time. Default clock.Real.
	Clock clock.Clock
	// Skew is the clock difference tolerated at both ends of the validity
	// window. Default DefaultSkew; negative means none.
	Skew time.Duration
	// AllowExpired accepts a certificate past its expiry (everything else
	// is checked): for a client that serves from a stale cache when every
	// root is unreachable. Endorsements are then checked at the
	// certificate's expiry instead of now.
	AllowExpired bool
}

// Verify checks data as a certificate for name at now, with the default
// skew; see Verifier.Verify.
func Verify(data []byte, name Name, trust *Trust, now time.Time) (*Certificate, error) {
	v := Verifier{Trust: trust}
	return v.verify(data, name, now)
}

// Verify returns the certificate in data if it is well-formed (see Parse),
// is for name.Service, is within its validity window, and carries a
// signature by a key trusted for the service: the self-certifying name's
// key if name has a fingerprint, otherwise a key in v.Trust; or a key
// endorsed by one of those through at most MaxChainDepth unexpired
// endorsements; or, with Trust.TOFU and no key trusted for the service
// yet, the certificate's own signing key, which is then recorded.
//
// Errors wrap one sentinel naming the reason, in the order checked:
// ErrTooLarge, ErrMalformed, ErrVersion, ErrWrongService, ErrBadSignature
// or ErrUntrustedKey, ErrNotYetValid, ErrExpired. ErrBadName is returned for
// an invalid name.
func (v *Verifier) Verify(data []byte, name Name) (*Certificate, error) {
	clk := v.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	return v.verify(data, name, clk.Now())
}

// VersionFunc returns a function that verifies a certificate for name and
// returns its version, the form a resolver takes.
func (v *Verifier) VersionFunc(name Name) func(data []byte) (uint64, error) {
	return func(data []byte) (uint64, error) {
		c, err := v.Verify(data, name)
		if err != nil {
			return 0, err
		}
		return c.Version, nil
	}
}

func (v *Verifier) skew() time.Duration {
	switch {
	case v.Skew < 0:
		return 0
	case v.Skew == 0:
		return DefaultSkew
	}
	return v.Skew
}

func (v *Verifier) verify(data []byte, name Name, now time.Time) (*Certificate, error) {
	if err := name.Validate(); err != nil {
		return nil, err
	}
	env, c, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if c.Service != name.Service {
		return nil, fmt.Errorf("%w: certificate is for %q, want %q", ErrWrongService, c.Service, name.Service)
	}
	skew := v.skew()
	chainAt := now.Add(-skew)
	if v.AllowExpired && c.ExpiresAt.Before(now) {
		chainAt = c.ExpiresAt.Add(-time.Nanosecond)
	}

	// Find the keys this client trusts for the certificate: anchors, then
	// whatever they endorse.
	var anchors []ed25519.PublicKey
	if name.Fingerprint != "" {
		if k := c.keyWithFingerprint(name.Fingerprint); k != nil {
			anchors = append(anchors, k)
		}
	} else {
		anchors = v.Trust.KeysFor(name.Service)
	}
	trusted, chainNote := reach(anchors, c.Endorsements, c.Service, chainAt)
	pae := PAE(env.PayloadType, env.Payload)

	var tofuKey ed25519.PublicKey
	if !signedByAny(env, pae, trusted) {
		if signer := c.anySigner(env, pae); signer != nil {
			if name.Fingerprint == "" && len(anchors) == 0 && v.Trust != nil && v.Trust.TOFU && bytes.Equal(signer, c.SigningKey) {
				tofuKey = signer
			} else {
				return nil, untrusted(c, name, signer, anchors, chainNote)
			}
		} else {
			return nil, fmt.Errorf("%w: no signature verifies under any key the certificate names; the payload or signature was altered", ErrBadSignature)
		}
	}

	if from := c.ValidFrom(); now.Add(skew).Before(from) {
		return nil, fmt.Errorf("%w: valid from %s, now %s", ErrNotYetValid, from.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !v.AllowExpired && !now.Add(-skew).Before(c.ExpiresAt) {
		return nil, fmt.Errorf("%w: expired at %s, now %s", ErrExpired, c.ExpiresAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}

	if tofuKey != nil {
		ok, err := v.Trust.recordTOFU(c.Service, tofuKey, now)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: signed by %s, but another key was trusted first for %q", ErrUntrustedKey, Fingerprint(tofuKey), c.Service)
		}
	}
	return c, nil
}

func untrusted(c *Certificate, name Name, signer ed25519.PublicKey, anchors []ed25519.PublicKey, chainNote string) error {
	msg := fmt.Sprintf("signed by key %s, which is not trusted for service %q", Fingerprint(signer), c.Service)
	switch {
	case name.Fingerprint != "" && len(anchors) == 0:
		msg += fmt.Sprintf(" (the name pins key %s, which the certificate does not carry)", name.Fingerprint)
	case name.Fingerprint != "":
		msg += fmt.Sprintf(" (the name pins key %s)", name.Fingerprint)
	case len(anchors) == 0:
		msg += " (no key is trusted for this service)"
	}
	if chainNote != "" {
		msg += "; " + chainNote
	}
	return fmt.Errorf("%w: %s", ErrUntrustedKey, msg)
}

// reach returns anchors plus every key endorsed for service by a key
// already reached, through at most MaxChainDepth endorsements, each
// unexpired at now. A loop ends because a key is reached only once. The
// note says why the last endorsement that did not count was refused.
func reach(anchors []ed25519.PublicKey, ends []Endorsement, service string, now time.Time) ([]ed25519.PublicKey, string) {
	trusted := append([]ed25519.PublicKey(nil), anchors...)
	if len(ends) == 0 || len(anchors) == 0 {
		return trusted, ""
	}
	var note string
	used := make([]bool, len(ends))
	frontier := anchors
	for depth := 1; len(frontier) > 0; depth++ {
		var next []ed25519.PublicKey
		for _, k := range frontier {
			fp := Fingerprint(k)
			for i := range ends {
				e := &ends[i]
				if used[i] || e.By != fp {
					continue
				}
				switch {
				case depth > MaxChainDepth:
					note = fmt.Sprintf("endorsement chain to %s is longer than %d", Fingerprint(e.Key), MaxChainDepth)
					continue
				case !now.Before(e.ExpiresAt):
					note = fmt.Sprintf("endorsement of %s by %s expired at %s", Fingerprint(e.Key), e.By, e.ExpiresAt.Format(time.RFC3339))
					continue
				case !e.verify(k, service):
					note = fmt.Sprintf("endorsement of %s by %s has a bad signature", Fingerprint(e.Key), e.By)
					continue
				}
				used[i] = true
				if !containsKey(trusted, e.Key) {
					trusted = append(trusted, e.Key)
					next = append(next, e.Key)
				}
			}
		}
		frontier = next
	}
	return trusted, note
}

func containsKey(ks []ed25519.PublicKey, k ed25519.PublicKey) bool {
	for _, x := range ks {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// signedByAny reports whether a signature of env verifies under one of
// keys. The keyid only narrows the search; it is not trusted.
func signedByAny(env *Envelope, pae []byte, keys []ed25519.PublicKey) bool {
	for _, s := range env.Signatures {
		if len(s.Sig) != ed25519.SignatureSize {
			continue
		}
		for _, k := range keys {
			if (s.KeyID == "" || s.KeyID == Fingerprint(k)) && ed25519.Verify(k, pae, s.Sig) {
				return true
			}
		}
	}
	return false
}

// anySigner returns a key named in c that validly signed env, untrusted: to
// tell a stranger's signature from an altered certificate, and for TOFU.
func (c *Certificate) anySigner(env *Envelope, pae []byte) ed25519.PublicKey {
	for _, k := range c.namedKeys() {
		if signedByAny(env, pae, []ed25519.PublicKey{k}) {
			return k
		}
	}
	return nil
}

// namedKeys lists the keys the certificate carries: its signing key first,
// then endorsed and endorsing keys.
func (c *Certificate) namedKeys() []ed25519.PublicKey {
	var ks []ed25519.PublicKey
	add := func(k ed25519.PublicKey) {
		if len(k) == ed25519.PublicKeySize && !containsKey(ks, k) {
			ks = append(ks, k)
		}
	}
	add(c.SigningKey)
	for _, e := range c.Endorsements {
		add(e.Key)
		add(e.ByKey)
	}
	return ks
}

// keyWithFingerprint returns the key the certificate carries whose
// Fingerprint is fp. Believing it needs no signature: the fingerprint is
// the SHA-256 of the key.
func (c *Certificate) keyWithFingerprint(fp string) ed25519.PublicKey {
	for _, k := range c.namedKeys() {
		if Fingerprint(k) == fp {
			return k
		}
	}
	return nil
}
