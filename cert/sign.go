package cert

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/smartclient/smartclient/balance/policy"
)

// Sign validates c, signs it with priv and returns the DSSE envelope bytes.
// c is not modified. On a copy, Sign fills in Format if empty, SigningKey
// (which must be priv's public key if already set) and moves every time to
// UTC, then encodes it deterministically.
//
// Sign is stricter than Validate, to catch mistakes where they are made
// rather than in every client: the policy must be one this build knows,
// policy parameters must be ones DirectorConfig reads, roots must be
// https, http, dns or file URLs, and every endorsement that carries its
// endorser's key (ByKey) must verify for c.Service.
func Sign(c *Certificate, priv ed25519.PrivateKey) ([]byte, error) {
	return sign(c, priv, true)
}

// sign is Sign; tests turn strict off to build certificates a careless or
// hostile signer could produce.
func sign(c *Certificate, priv ed25519.PrivateKey, strict bool) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("cert: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	pub := priv.Public().(ed25519.PublicKey)
	cc := *c
	if cc.Format == "" {
		cc.Format = Format
	}
	switch {
	case cc.SigningKey == nil:
		cc.SigningKey = pub
	case !bytes.Equal(cc.SigningKey, pub):
		return nil, fmt.Errorf("cert: signing_key %s is not the key signing (%s)", Fingerprint(cc.SigningKey), Fingerprint(pub))
	}
	cc.IssuedAt = utc(cc.IssuedAt)
	cc.NotBefore = utc(cc.NotBefore)
	cc.ExpiresAt = utc(cc.ExpiresAt)
	cc.Endorsements = append([]Endorsement(nil), c.Endorsements...)
	for i := range cc.Endorsements {
		cc.Endorsements[i].ExpiresAt = utc(cc.Endorsements[i].ExpiresAt)
	}
	if err := cc.Validate(); err != nil {
		return nil, err
	}
	if strict {
		if err := cc.strictCheck(); err != nil {
			return nil, err
		}
	}
	payload, err := json.Marshal(&cc)
	if err != nil {
		return nil, err
	}
	env := Envelope{
		PayloadType: PayloadType,
		Payload:     payload,
		Signatures:  []Signature{{KeyID: Fingerprint(pub), Sig: ed25519.Sign(priv, PAE(PayloadType, payload))}},
	}
	return env.Marshal()
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// strictCheck holds the checks Sign adds to Validate.
func (c *Certificate) strictCheck() error {
	if _, err := policy.New(c.Policy.Name); err != nil {
		return fmt.Errorf("cert: %w", err)
	}
	for k := range c.Policy.Params {
		if _, ok := knownParams[k]; !ok {
			names := make([]string, 0, len(knownParams))
			for n := range knownParams {
				names = append(names, n)
			}
			sort.Strings(names)
			return fmt.Errorf("cert: unknown policy param %q; known: %s", k, strings.Join(names, ", "))
		}
	}
	for i, r := range c.Roots {
		u, _ := parseRoot(r)
		if !knownRootSchemes[u.Scheme] {
			return fmt.Errorf("cert: roots[%d] %q: scheme must be https, http, dns or file", i, clip(r))
		}
	}
	for i, e := range c.Endorsements {
		if e.ByKey != nil && !e.verify(e.ByKey, c.Service) {
			return fmt.Errorf("cert: endorsements[%d]: signature by %s does not verify for service %q", i, e.By, c.Service)
		}
	}
	return nil
}

// Endorse returns an endorsement by priv of key as a signing key for
// service until expires (truncated to whole seconds). Put it in the
// Endorsements of certificates that key signs, so that clients trusting
// priv's key accept them.
func Endorse(priv ed25519.PrivateKey, key ed25519.PublicKey, service string, expires time.Time) (Endorsement, error) {
	switch {
	case len(priv) != ed25519.PrivateKeySize:
		return Endorsement{}, fmt.Errorf("cert: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	case len(key) != ed25519.PublicKeySize:
		return Endorsement{}, fmt.Errorf("cert: endorsed key is %d bytes, want %d", len(key), ed25519.PublicKeySize)
	case !ValidServiceName(service):
		return Endorsement{}, fmt.Errorf("%w: %q", ErrBadName, clip(service))
	case expires.IsZero():
		return Endorsement{}, fmt.Errorf("cert: endorsement needs an expiry")
	}
	by := priv.Public().(ed25519.PublicKey)
	e := Endorsement{
		Key:       bytes.Clone(key),
		By:        Fingerprint(by),
		ByKey:     by,
		ExpiresAt: expires.UTC().Truncate(time.Second),
	}
	e.Sig = ed25519.Sign(priv, e.message(service))
	return e, nil
}

// message is what the endorser signs.
func (e *Endorsement) message(service string) []byte {
	body := make([]byte, 0, len(e.Key)+8+len(service))
	body = append(body, e.Key...)
	body = binary.BigEndian.AppendUint64(body, uint64(e.ExpiresAt.Unix()))
	body = append(body, service...)
	return PAE(EndorsementType, body)
}

// verify reports whether by (whose fingerprint the caller matched to e.By)
// signed e for service.
func (e *Endorsement) verify(by ed25519.PublicKey, service string) bool {
	return len(by) == ed25519.PublicKeySize && ed25519.Verify(by, e.message(service), e.Sig)
}
