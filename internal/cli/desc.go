package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/smartclient/smartclient/cert"
)

// description is the input of `smartclient cert sign`: YAML or JSON (JSON
// is YAML). Members may be plain URLs or objects; policy a name or an
// object. ttl sets expires_at from the signing time.
type description struct {
	Service      string         `yaml:"service"`
	Version      uint64         `yaml:"version"`
	Members      []descMember   `yaml:"members"`
	Policy       descPolicy     `yaml:"policy"`
	TTL          string         `yaml:"ttl"`
	NotBefore    string         `yaml:"not_before"`
	Refresh      string         `yaml:"refresh"`
	Roots        []string       `yaml:"roots"`
	Allow        cert.Allow     `yaml:"allow"`
	Load         descLoad       `yaml:"load"`
	Endorsements []string       `yaml:"endorsements"` // files written by `cert endorse`
	Extra        map[string]any `yaml:",inline"`
}

type descMember struct {
	URL    string  `yaml:"url"`
	Weight float64 `yaml:"weight"`
	Zone   string  `yaml:"zone"`
	Pin    string  `yaml:"pin"`
}

// UnmarshalYAML accepts "http://h:1" as well as {url: …, weight: …}.
func (m *descMember) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&m.URL)
	}
	type plain descMember
	return n.Decode((*plain)(m))
}

type descPolicy struct {
	Name   string            `yaml:"name"`
	Params map[string]string `yaml:"params"`
}

// UnmarshalYAML accepts "p2c" as well as {name: p2c, params: {…}}.
func (p *descPolicy) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&p.Name)
	}
	type plain descPolicy
	return n.Decode((*plain)(p))
}

type descLoad struct {
	TTL          string `yaml:"ttl"`
	PollPath     string `yaml:"poll_path"`
	PollInterval string `yaml:"poll_interval"`
}

// maxDescSize bounds a description file.
const maxDescSize = 1 << 20

// readDescription reads a description file and turns it into an unsigned
// certificate issued at now.
func readDescription(path string, now time.Time) (*cert.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) > maxDescSize {
		return nil, fmt.Errorf("%s: %d bytes; a description is at most %d", path, len(data), maxDescSize)
	}
	var d description
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(d.Extra) > 0 {
		for k := range d.Extra {
			return nil, fmt.Errorf("%s: unknown field %q", path, k)
		}
	}
	dur := func(field, s string) (time.Duration, error) {
		if s == "" {
			return 0, nil
		}
		v, err := time.ParseDuration(s)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("%s: %s %q: want a duration like 720h", path, field, s)
		}
		return v, nil
	}
	ttl, err := dur("ttl", d.TTL)
	if err != nil {
		return nil, err
	}
	if ttl == 0 {
		return nil, fmt.Errorf("%s: ttl is required (how long the certificate is valid, e.g. 720h)", path)
	}
	c := &cert.Certificate{
		Service:  d.Service,
		Version:  d.Version,
		IssuedAt: now.UTC().Truncate(time.Second),
		Roots:    d.Roots,
		Allow:    d.Allow,
		Policy:   cert.Policy{Name: d.Policy.Name, Params: d.Policy.Params},
		Load:     cert.Load{PollPath: d.Load.PollPath},
	}
	c.ExpiresAt = c.IssuedAt.Add(ttl)
	if d.NotBefore != "" {
		if c.NotBefore, err = time.Parse(time.RFC3339, d.NotBefore); err != nil {
			return nil, fmt.Errorf("%s: not_before %q: want RFC 3339, e.g. 2026-12-01T00:00:00Z", path, d.NotBefore)
		}
	}
	for field, p := range map[string]struct {
		s   string
		dst *cert.Duration
	}{"refresh": {d.Refresh, &c.Refresh}, "load.ttl": {d.Load.TTL, &c.Load.TTL}, "load.poll_interval": {d.Load.PollInterval, &c.Load.PollInterval}} {
		v, err := dur(field, p.s)
		if err != nil {
			return nil, err
		}
		*p.dst = cert.Duration(v)
	}
	for _, m := range d.Members {
		c.MemberList = append(c.MemberList, cert.Member{URL: m.URL, Weight: m.Weight, Zone: m.Zone, Pin: m.Pin})
	}
	for _, f := range d.Endorsements {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: endorsement: %v", path, err)
		}
		var e cert.Endorsement
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("%s: endorsement %s: %v", path, f, err)
		}
		c.Endorsements = append(c.Endorsements, e)
	}
	return c, nil
}
