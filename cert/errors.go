package cert

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every refusal by Parse or Verify wraps exactly one of
// them, with a message naming the offending field or key.
var (
	// ErrMalformed: the envelope or certificate is not well-formed, or a
	// field is outside its documented range.
	ErrMalformed = errors.New("cert: malformed certificate")
	// ErrTooLarge: the input is over MaxSize or a list is over its limit.
	ErrTooLarge = errors.New("cert: certificate too large")
	// ErrVersion: the certificate's format has a major version other than 1.
	ErrVersion = errors.New("cert: unsupported certificate format version")
	// ErrWrongService: the certificate is for another service.
	ErrWrongService = errors.New("cert: certificate is for another service")
	// ErrExpired: the certificate's expires_at has passed.
	ErrExpired = errors.New("cert: certificate expired")
	// ErrNotYetValid: the certificate's not_before (or issued_at) is in the
	// future.
	ErrNotYetValid = errors.New("cert: certificate not yet valid")
	// ErrBadSignature: no signature verifies under any key the certificate
	// names: the payload or the signature was altered.
	ErrBadSignature = errors.New("cert: bad signature")
	// ErrUntrustedKey: the certificate is validly signed, but by a key that
	// is not trusted for the service, directly or through endorsements.
	ErrUntrustedKey = errors.New("cert: signed by an untrusted key")
	// ErrRollback: a certificate is older than the one already held; see
	// CheckVersion.
	ErrRollback = errors.New("cert: certificate version rolled back")
	// ErrBadName: a service name or service:// URL is not well-formed.
	ErrBadName = errors.New("cert: bad service name")
	// ErrNotAllowed: a membership record names a member that neither the
	// certificate lists nor its allow rules cover.
	ErrNotAllowed = errors.New("cert: member not allowed by the certificate")
)

// CheckVersion refuses a certificate whose version got is lower than the
// version cached, which a client already believed: a root serving it is
// stale or replaying an old member list. An equal version is fine (the same
// certificate fetched again).
func CheckVersion(cached, got uint64) error {
	if got < cached {
		return fmt.Errorf("%w: got version %d, already have version %d", ErrRollback, got, cached)
	}
	return nil
}

// maxQuoted bounds how much of a hostile string an error message repeats.
const maxQuoted = 64

// clip shortens s for an error message; callers quote it with %q.
func clip(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return s[:maxQuoted] + "..."
}
