package cert

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/smartclient/smartclient/wire"
)

// Format is the format this package writes. Readers accept any 1.x: a newer
// minor version may add fields, which are ignored; another major version is
// refused with ErrVersion.
const (
	Format      = "smartclient-cert/1.0"
	formatName  = "smartclient-cert/"
	FormatMajor = 1
)

// DefaultRefresh is how long a client uses a certificate before it
// revalidates it in the background, when the certificate does not say.
const DefaultRefresh = time.Hour

// Bounds on a certificate's lists and strings; Validate refuses more.
const (
	MaxServiceLen   = 63
	MaxRoots        = 32
	MaxEndorsements = 16
	MaxChainDepth   = 4 // endorsements between a trusted key and the signer
	MaxAllowRules   = 256
	MaxParams       = 64
	maxParamLen     = 1024
	maxPathLen      = 1024
	maxRootLen      = 2048
)

// Certificate is the signed description of a service. Fields are the JSON
// payload; see the field tags for names. The member list is MemberList, as
// the Members method turns it into balance members.
type Certificate struct {
	// Format is "smartclient-cert/1.MINOR". Sign fills it in when empty.
	Format string `json:"format"`
	// Service is the service's name: [a-z0-9][a-z0-9.-]{0,62}.
	Service string `json:"service"`
	// Version numbers the certificates of one service; it only grows, and a
	// client refuses one lower than the one it holds (CheckVersion). It is
	// also the membership epoch of MemberList. At least 1.
	Version uint64 `json:"version"`
	// IssuedAt is when the certificate was signed.
	IssuedAt time.Time `json:"issued_at"`
	// NotBefore, if set, is when the certificate becomes valid; default
	// IssuedAt.
	NotBefore time.Time `json:"not_before,omitzero"`
	// ExpiresAt is when the certificate stops being valid.
	ExpiresAt time.Time `json:"expires_at"`
	// Refresh is how often a client revalidates in the background; 0 means
	// DefaultRefresh.
	Refresh Duration `json:"refresh,omitzero"`
	// SigningKey is the public key that signed the envelope. Sign fills it
	// in. It is how a self-certifying name, which carries only a
	// fingerprint, finds its key, and how Verify tells "signed by a stranger"
	// (ErrUntrustedKey) from "altered" (ErrBadSignature). It grants no trust
	// by itself.
	SigningKey ed25519.PublicKey `json:"signing_key,omitempty"`
	// MemberList is the initial member list: at least one member.
	MemberList []Member `json:"members"`
	// Policy selects and tunes the director's policy.
	Policy Policy `json:"policy,omitzero"`
	// Load configures load reports.
	Load Load `json:"load,omitzero"`
	// Roots are where newer versions of this certificate are published:
	// https://HOST/..., http://HOST/..., dns://SERVER/ZONE or file:///DIR.
	Roots []string `json:"roots,omitempty"`
	// Allow says which members a membership record learned later may name
	// without a newer certificate, besides those in MemberList.
	Allow Allow `json:"allow,omitzero"`
	// Endorsements carry trust from an older key to a newer one (rotation).
	Endorsements []Endorsement `json:"endorsements,omitempty"`
}

// Member is one member of the service. The URL's scheme is its protocol.
type Member struct {
	URL    string  `json:"url"`
	Weight float64 `json:"weight,omitempty"` // 0 means 1
	Zone   string  `json:"zone,omitempty"`
	// Pin, if set, is "sha256/BASE64" of the SHA-256 of the member's TLS
	// SubjectPublicKeyInfo, as in HPKP (see ParsePin). An https client
	// bootstrapped from the certificate (smarthttp.PinTLS) refuses a member
	// whose key does not match, and trusts one whose key does even with a
	// self-signed certificate.
	Pin string `json:"pin,omitempty"`
}

// Policy names the director's selection policy (see policy.Names) and
// parameters; see DirectorConfig for the parameters it reads.
type Policy struct {
	Name   string            `json:"name,omitempty"`
	Params map[string]string `json:"params,omitempty"`
}

// Load configures load information.
type Load struct {
	// TTL is how long a member's load report stays fresh; 0 means the
	// director's default.
	TTL Duration `json:"ttl,omitzero"`
	// PollPath, if set, is the path at which members answer load polls.
	PollPath string `json:"poll_path,omitempty"`
	// PollInterval is how often to poll; 0 means the director's default.
	PollInterval Duration `json:"poll_interval,omitzero"`
}

// Allow lists what a membership record may add beyond MemberList. A member
// URL is allowed if its host is an IP address inside one of CIDRs or a DNS
// name equal to or under one of Domains, its port (explicit, or the
// scheme's default) is in Ports when Ports is set, and its scheme is one
// MemberList uses. Empty CIDRs and Domains allow no additions at all.
type Allow struct {
	CIDRs   []string `json:"cidrs,omitempty"`
	Domains []string `json:"domains,omitempty"`
	Ports   []int    `json:"ports,omitempty"`
}

// Endorsement says that the key with fingerprint By vouches for Key as a
// signing key of the certificate's service until ExpiresAt. Sig is By's
// ed25519 signature over PAE(EndorsementType, Key ‖ 8-byte big-endian
// ExpiresAt in Unix seconds ‖ service). The expiry is signed too (the
// issue's draft left it out), or the new key's holder could extend its own
// endorsement.
type Endorsement struct {
	Key ed25519.PublicKey `json:"key"`
	By  string            `json:"by"`
	// ByKey, if set, is the endorsing key itself (Fingerprint(ByKey) ==
	// By), so that a self-certifying name whose key has been rotated out
	// can still find it.
	ByKey     ed25519.PublicKey `json:"by_key,omitempty"`
	Sig       []byte            `json:"sig"`
	ExpiresAt time.Time         `json:"expires_at"`
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("1h30m").
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"1h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// RefreshInterval returns Refresh, or DefaultRefresh if it is 0.
func (c *Certificate) RefreshInterval() time.Duration {
	if c.Refresh > 0 {
		return time.Duration(c.Refresh)
	}
	return DefaultRefresh
}

// ValidFrom returns NotBefore, or IssuedAt if NotBefore is not set.
func (c *Certificate) ValidFrom() time.Time {
	if !c.NotBefore.IsZero() {
		return c.NotBefore
	}
	return c.IssuedAt
}

// Expired reports whether the certificate has expired at now, without any
// skew allowance.
func (c *Certificate) Expired(now time.Time) bool {
	return !now.Before(c.ExpiresAt)
}

// parseFormat splits "smartclient-cert/MAJOR.MINOR".
func parseFormat(s string) (major, minor int, ok bool) {
	rest, ok := strings.CutPrefix(s, formatName)
	if !ok {
		return 0, 0, false
	}
	ma, mi, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, 0, false
	}
	major, ok1 := smallUint(ma)
	minor, ok2 := smallUint(mi)
	return major, minor, ok1 && ok2
}

// smallUint parses 1 to 6 decimal digits.
func smallUint(s string) (int, bool) {
	if len(s) == 0 || len(s) > 6 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// checkFormat returns ErrMalformed for a format string off the grammar and
// ErrVersion for a major version other than FormatMajor.
func checkFormat(s string) error {
	major, _, ok := parseFormat(s)
	switch {
	case !ok:
		return fmt.Errorf("%w: format %q, want %q", ErrMalformed, clip(s), Format)
	case major != FormatMajor:
		return fmt.Errorf("%w: format %q has major version %d, this client reads %d", ErrVersion, clip(s), major, FormatMajor)
	}
	return nil
}

// ValidServiceName reports whether s is a service name:
// [a-z0-9][a-z0-9.-]{0,62}.
func ValidServiceName(s string) bool {
	if len(s) == 0 || len(s) > MaxServiceLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || i > 0 && (c == '.' || c == '-')) {
			return false
		}
	}
	return true
}

// decodeCertificate reads a certificate payload. The format is read first,
// on its own, so that a major version whose other fields changed type is
// reported as ErrVersion rather than as malformed.
func decodeCertificate(payload []byte) (*Certificate, error) {
	var head struct {
		Format *string `json:"format"`
	}
	if p := bytes.TrimLeft(payload, " \t\r\n"); len(p) == 0 || p[0] != '{' {
		return nil, fmt.Errorf("%w: payload is not a JSON object", ErrMalformed)
	}
	if err := json.Unmarshal(payload, &head); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if head.Format == nil {
		return nil, fmt.Errorf("%w: payload has no format", ErrMalformed)
	}
	if err := checkFormat(*head.Format); err != nil {
		return nil, err
	}
	c := new(Certificate)
	if err := json.Unmarshal(payload, c); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate reports the first field of c outside its range, wrapping
// ErrMalformed, ErrTooLarge or ErrVersion. It is what every reader applies;
// Sign is stricter (see Sign).
func (c *Certificate) Validate() error {
	if err := checkFormat(c.Format); err != nil {
		return err
	}
	switch {
	case !ValidServiceName(c.Service):
		return fmt.Errorf("%w: service %q is not [a-z0-9][a-z0-9.-]{0,62}", ErrMalformed, clip(c.Service))
	case c.Version == 0:
		return fmt.Errorf("%w: version must be at least 1", ErrMalformed)
	case c.IssuedAt.IsZero():
		return fmt.Errorf("%w: issued_at is missing", ErrMalformed)
	case c.ExpiresAt.IsZero():
		return fmt.Errorf("%w: expires_at is missing", ErrMalformed)
	case !c.ExpiresAt.After(c.ValidFrom()):
		return fmt.Errorf("%w: expires_at %s is not after not_before/issued_at %s", ErrMalformed,
			c.ExpiresAt.Format(time.RFC3339), c.ValidFrom().Format(time.RFC3339))
	case c.Refresh < 0 || c.Load.TTL < 0 || c.Load.PollInterval < 0:
		return fmt.Errorf("%w: refresh, load.ttl and load.poll_interval must be >= 0", ErrMalformed)
	case c.SigningKey != nil && len(c.SigningKey) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: signing_key is %d bytes, want %d", ErrMalformed, len(c.SigningKey), ed25519.PublicKeySize)
	}
	if err := c.validateMembers(); err != nil {
		return err
	}
	if err := c.Policy.validate(); err != nil {
		return err
	}
	if p := c.Load.PollPath; p != "" && (len(p) > maxPathLen || p[0] != '/' || !visibleASCII(p)) {
		return fmt.Errorf("%w: load.poll_path %q must be a path starting with '/'", ErrMalformed, clip(p))
	}
	if len(c.Roots) > MaxRoots {
		return fmt.Errorf("%w: %d roots, limit %d", ErrTooLarge, len(c.Roots), MaxRoots)
	}
	for i, r := range c.Roots {
		if _, err := parseRoot(r); err != nil {
			return fmt.Errorf("%w: roots[%d]: %v", ErrMalformed, i, err)
		}
	}
	if _, err := c.Allow.compile(); err != nil {
		return err
	}
	if len(c.Endorsements) > MaxEndorsements {
		return fmt.Errorf("%w: %d endorsements, limit %d", ErrTooLarge, len(c.Endorsements), MaxEndorsements)
	}
	for i := range c.Endorsements {
		if err := c.Endorsements[i].validate(); err != nil {
			return fmt.Errorf("%w: endorsements[%d]: %v", ErrMalformed, i, err)
		}
	}
	return nil
}

func (c *Certificate) validateMembers() error {
	if len(c.MemberList) == 0 {
		return fmt.Errorf("%w: no members", ErrMalformed)
	}
	// The wire record's rules are the ones every member list must meet, so
	// a certificate's list can always be restated as a membership record.
	rec := wire.Members{Epoch: c.Version, Members: make([]wire.Member, len(c.MemberList))}
	for i, m := range c.MemberList {
		rec.Members[i] = wire.Member{URL: m.URL, Weight: m.Weight, Zone: m.Zone}
		if m.Pin != "" && !validPin(m.Pin) {
			return fmt.Errorf("%w: members[%d] pin %q, want \"sha256/\" and the base64 of 32 bytes", ErrMalformed, i, clip(m.Pin))
		}
	}
	if err := rec.Validate(); err != nil {
		if len(c.MemberList) > wire.MaxMembers {
			return fmt.Errorf("%w: %d members, limit %d", ErrTooLarge, len(c.MemberList), wire.MaxMembers)
		}
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return c.validatePins()
}

// validatePins checks what a TLS client can enforce: a pin is on an https
// member, and members sharing a host and port (one TLS server, so one key)
// do not carry different pins. Member URLs are already valid here.
func (c *Certificate) validatePins() error {
	seen := make(map[string]int) // pinned host:port -> index of its first member
	for i, m := range c.MemberList {
		if m.Pin == "" {
			continue
		}
		u, err := url.Parse(m.URL)
		if err != nil || u.Scheme != "https" {
			return fmt.Errorf("%w: members[%d] %q has a pin but is not https: there is no TLS key to check it against", ErrMalformed, i, clip(m.URL))
		}
		port := u.Port()
		if port == "" {
			port = "443"
		}
		addr := strings.ToLower(net.JoinHostPort(u.Hostname(), port))
		if j, ok := seen[addr]; ok && !samePin(c.MemberList[j].Pin, m.Pin) {
			return fmt.Errorf("%w: members[%d] and members[%d] are both served at %s but pin different keys", ErrMalformed, j, i, addr)
		}
		if _, ok := seen[addr]; !ok {
			seen[addr] = i
		}
	}
	return nil
}

// samePin reports whether two valid pins name the same key.
func samePin(a, b string) bool {
	pa, _ := ParsePin(a)
	pb, _ := ParsePin(b)
	return pa == pb
}

func validPin(p string) bool {
	_, err := ParsePin(p)
	return err == nil
}

// pinPrefix names the only hash a member pin may use.
const pinPrefix = "sha256/"

// ParsePin reads a member's TLS key pin (Member.Pin): "sha256/" and the
// standard, padded base64 of 32 bytes, the SHA-256 of the member's
// SubjectPublicKeyInfo as in HPKP. It returns that digest, or an error
// wrapping ErrMalformed. Only the canonical encoding is accepted, so a pin
// has exactly one spelling.
func ParsePin(s string) ([sha256.Size]byte, error) {
	var pin [sha256.Size]byte
	b64, ok := strings.CutPrefix(s, pinPrefix)
	if !ok || len(b64) != base64.StdEncoding.EncodedLen(sha256.Size) {
		return pin, fmt.Errorf("%w: pin %q, want %q and the base64 of 32 bytes", ErrMalformed, clip(s), pinPrefix)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(b) != sha256.Size {
		return pin, fmt.Errorf("%w: pin %q is not the base64 of 32 bytes", ErrMalformed, clip(s))
	}
	copy(pin[:], b)
	return pin, nil
}

// parseRoot checks that r is an absolute URL of at most maxRootLen visible
// ASCII bytes. Its scheme is not checked here: a newer client may know
// kinds of root this one does not, and a resolver skips those.
func parseRoot(r string) (*url.URL, error) {
	if len(r) == 0 || len(r) > maxRootLen || !visibleASCII(r) {
		return nil, fmt.Errorf("%q is empty, too long or not visible ASCII", clip(r))
	}
	u, err := url.Parse(r)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return nil, fmt.Errorf("%q is not an absolute URL", clip(r))
	}
	return u, nil
}

// knownRootSchemes are the kinds of root Sign accepts.
var knownRootSchemes = map[string]bool{"https": true, "http": true, "dns": true, "file": true}

func (p Policy) validate() error {
	if p.Name != "" && (len(p.Name) > 64 || !visibleASCII(p.Name)) {
		return fmt.Errorf("%w: policy.name %q", ErrMalformed, clip(p.Name))
	}
	if len(p.Params) > MaxParams {
		return fmt.Errorf("%w: %d policy params, limit %d", ErrTooLarge, len(p.Params), MaxParams)
	}
	for k, v := range p.Params {
		if len(k) == 0 || len(k) > 64 || len(v) > maxParamLen || !visibleASCII(k) {
			return fmt.Errorf("%w: policy param %q", ErrMalformed, clip(k))
		}
		if pr, ok := knownParams[k]; ok {
			if err := pr.check(v); err != nil {
				return fmt.Errorf("%w: policy param %s=%q: %v", ErrMalformed, k, clip(v), err)
			}
		}
	}
	return nil
}

func (e *Endorsement) validate() error {
	switch {
	case len(e.Key) != ed25519.PublicKeySize:
		return fmt.Errorf("key is %d bytes, want %d", len(e.Key), ed25519.PublicKeySize)
	case !validFingerprint(e.By):
		return fmt.Errorf("by %q is not a key fingerprint", clip(e.By))
	case e.ByKey != nil && (len(e.ByKey) != ed25519.PublicKeySize || Fingerprint(e.ByKey) != e.By):
		return fmt.Errorf("by_key does not have fingerprint %s", e.By)
	case len(e.Sig) != ed25519.SignatureSize:
		return fmt.Errorf("sig is %d bytes, want %d", len(e.Sig), ed25519.SignatureSize)
	case e.ExpiresAt.IsZero():
		return fmt.Errorf("expires_at is missing")
	case e.ExpiresAt.Nanosecond() != 0:
		return fmt.Errorf("expires_at has a fraction of a second; only whole seconds are signed")
	}
	return nil
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// compiledAllow is Allow parsed once, for the membership hot path.
type compiledAllow struct {
	prefixes []netip.Prefix
	domains  []string
	ports    map[int]bool
}

// compile parses and checks a's rules.
func (a Allow) compile() (*compiledAllow, error) {
	if len(a.CIDRs) > MaxAllowRules || len(a.Domains) > MaxAllowRules || len(a.Ports) > MaxAllowRules {
		return nil, fmt.Errorf("%w: allow lists hold at most %d entries each", ErrTooLarge, MaxAllowRules)
	}
	ca := &compiledAllow{}
	for i, s := range a.CIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%w: allow.cidrs[%d] %q is not a CIDR prefix", ErrMalformed, i, clip(s))
		}
		ca.prefixes = append(ca.prefixes, p.Masked())
	}
	for i, s := range a.Domains {
		d := strings.TrimPrefix(strings.TrimSuffix(s, "."), ".")
		if !validDNSName(d) {
			return nil, fmt.Errorf("%w: allow.domains[%d] %q is not a lower-case DNS name with a non-numeric last label", ErrMalformed, i, clip(s))
		}
		ca.domains = append(ca.domains, d)
	}
	if len(a.Ports) > 0 {
		ca.ports = make(map[int]bool, len(a.Ports))
		for i, p := range a.Ports {
			if p < 1 || p > 65535 {
				return nil, fmt.Errorf("%w: allow.ports[%d] %d, want 1..65535", ErrMalformed, i, p)
			}
			ca.ports[p] = true
		}
	}
	return ca, nil
}

// validDNSName reports whether s is a lower-case DNS name of labels
// [a-z0-9-] (no leading or trailing '-') whose last label is not all
// digits, so that no IP-address-looking string can be a domain.
func validDNSName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}
