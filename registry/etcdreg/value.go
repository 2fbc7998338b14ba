package etcdreg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/smartclient/smartclient/registry"
)

// DefaultPrefix is where services live unless Config.Prefix says otherwise.
const DefaultPrefix = "/smartclient/services/"

// Bounds on what the source reads from etcd. Anything larger is skipped and
// counted.
const (
	MaxValueLen = 4 << 10 // bytes in one member's value
	MaxKeyLen   = 1 << 10 // bytes in one member's key
	MaxNameLen  = 128     // bytes in a service name
)

// Member is the value stored under a member's key, as JSON:
//
//	{"url":"http://10.0.0.1:8080","weight":2,"zone":"eu-1","state":"up"}
//
// Only url is required. weight 0 or absent means 1; state absent means
// up. Fields this version does not know are ignored, so a newer writer can
// add some.
type Member struct {
	URL    string  `json:"url"`
	Weight float64 `json:"weight,omitempty"`
	Zone   string  `json:"zone,omitempty"`
	State  string  `json:"state,omitempty"`
}

// ParseValue parses and checks one member's value, with registry.Check's
// limits. It refuses a value over MaxValueLen bytes, anything that is not
// one JSON object with the fields of Member, and members registry.Check
// refuses (a bad URL, a negative or absurd weight, a zone that is not a
// token, an unknown state).
func ParseValue(key string, b []byte) (registry.Entry, error) {
	if len(b) > MaxValueLen {
		return registry.Entry{}, fmt.Errorf("%w: %s: value is %d bytes, limit %d", registry.ErrBadEntry, clip(key), len(b), MaxValueLen)
	}
	var m Member
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return registry.Entry{}, fmt.Errorf("%w: %s: value is not a member object: %v", registry.ErrBadEntry, clip(key), err)
	}
	if dec.More() {
		return registry.Entry{}, fmt.Errorf("%w: %s: value has data after the member object", registry.ErrBadEntry, clip(key))
	}
	e := registry.Entry{Key: key, URL: m.URL, Weight: m.Weight, Zone: m.Zone, State: m.State}
	if err := registry.Check(e); err != nil {
		return registry.Entry{}, err
	}
	return e, nil
}

// MemberKey returns the key of the member with memberURL in service:
// prefix + service + "/members/" + the URL path-escaped, so that one URL
// has one key and a '/' in it cannot add a level.
func MemberKey(prefix, service, memberURL string) string {
	return membersPrefix(prefix, service) + url.PathEscape(memberURL)
}

func membersPrefix(prefix, service string) string {
	return prefix + service + "/members/"
}

// checkName refuses a service name that is empty, too long, or has a byte
// outside [A-Za-z0-9._-], so that it cannot escape its prefix.
func checkName(s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("etcdreg: service name %q: want 1..%d bytes", clip(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("etcdreg: service name %q: want only [A-Za-z0-9._-]", clip(s))
		}
	}
	if s == "." || s == ".." {
		return fmt.Errorf("etcdreg: service name %q is not a name", s)
	}
	return nil
}

func checkPrefix(p string) error {
	if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || len(p) > MaxKeyLen/2 {
		return fmt.Errorf("etcdreg: prefix %q: want a path starting and ending with '/', at most %d bytes", clip(p), MaxKeyLen/2)
	}
	return nil
}

func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
