package cert

import (
	"fmt"
	"strings"
)

// Scheme is the URL scheme of service names.
const Scheme = "service://"

// Name is a parsed service://NAME or service://NAME~FINGERPRINT. A name with
// a Fingerprint is self-certifying: it trusts exactly the key with that
// fingerprint for the service, and no trusted-keys file is consulted.
type Name struct {
	Service     string
	Fingerprint string // empty unless self-certifying
}

// ParseName parses "service://NAME" or "service://NAME~FINGERPRINT", where
// NAME is [a-z0-9][a-z0-9.-]{0,62} and FINGERPRINT a key Fingerprint.
// Errors wrap ErrBadName.
func ParseName(s string) (Name, error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return Name{}, fmt.Errorf("%w: %q does not start with %q", ErrBadName, clip(s), Scheme)
	}
	svc, fp, self := strings.Cut(rest, "~")
	n := Name{Service: svc, Fingerprint: fp}
	if self && fp == "" {
		return Name{}, fmt.Errorf("%w: %q has '~' but no fingerprint", ErrBadName, clip(s))
	}
	if err := n.Validate(); err != nil {
		return Name{}, err
	}
	return n, nil
}

// Validate reports whether n is well-formed.
func (n Name) Validate() error {
	if !ValidServiceName(n.Service) {
		return fmt.Errorf("%w: service %q is not [a-z0-9][a-z0-9.-]{0,62}", ErrBadName, clip(n.Service))
	}
	if n.Fingerprint != "" && !validFingerprint(n.Fingerprint) {
		return fmt.Errorf("%w: fingerprint %q is not %d characters of [a-z2-7]", ErrBadName, clip(n.Fingerprint), FingerprintLen)
	}
	return nil
}

// String returns n as a service:// URL.
func (n Name) String() string {
	if n.Fingerprint == "" {
		return Scheme + n.Service
	}
	return Scheme + n.Service + "~" + n.Fingerprint
}
