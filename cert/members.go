package cert

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

// Members returns the certificate's member list for director.New.
func (c *Certificate) Members() []balance.Member {
	ms := make([]balance.Member, len(c.MemberList))
	for i, m := range c.MemberList {
		ms[i] = balance.Member{URL: m.URL, Weight: m.Weight, Zone: m.Zone}
	}
	return ms
}

// AcceptMembers vets a membership record learned from a member (the
// director's Config.AcceptMembers hook). The record is accepted only if it
// is not empty and every member URL is listed in the certificate, or is
// allowed by its Allow rules. The error wraps ErrNotAllowed and names the
// first offending URL and why.
//
// AcceptMembers parses the rules on every call; DirectorConfig's hook
// parses them once.
func (c *Certificate) AcceptMembers(m wire.Members) error {
	f, err := c.memberFilter()
	if err != nil {
		return err
	}
	return f.accept(m)
}

// memberFilter is the certificate's membership rules, parsed.
type memberFilter struct {
	service string
	version uint64
	listed  map[string]bool
	schemes []string       // schemes MemberList uses
	allow   *compiledAllow // nil if the certificate allows no additions
}

func (c *Certificate) memberFilter() (*memberFilter, error) {
	ca, err := c.Allow.compile()
	if err != nil {
		return nil, err
	}
	f := &memberFilter{service: c.Service, version: c.Version, listed: make(map[string]bool, len(c.MemberList))}
	for _, m := range c.MemberList {
		f.listed[m.URL] = true
		if s, _, ok := strings.Cut(m.URL, "://"); ok && !slices.Contains(f.schemes, s) {
			f.schemes = append(f.schemes, s)
		}
	}
	if len(ca.prefixes) > 0 || len(ca.domains) > 0 {
		f.allow = ca
	}
	return f, nil
}

func (f *memberFilter) accept(m wire.Members) error {
	if len(m.Members) == 0 {
		return fmt.Errorf("%w: membership record (epoch %d) for service %q has no members", ErrNotAllowed, m.Epoch, f.service)
	}
	for _, mb := range m.Members {
		if f.listed[mb.URL] {
			continue
		}
		if why := f.outside(mb.URL); why != "" {
			return fmt.Errorf("%w: %q is not in service %q's certificate (version %d) and %s",
				ErrNotAllowed, clip(mb.URL), f.service, f.version, why)
		}
	}
	return nil
}

// outside returns why raw is outside the allow rules, or "" if it is inside.
func (f *memberFilter) outside(raw string) string {
	a := f.allow
	if a == nil {
		return "the certificate allows no additions"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		return "it is not a URL with a host"
	case u.User != nil:
		return "it carries user information"
	case !slices.Contains(f.schemes, u.Scheme):
		return fmt.Sprintf("its scheme %q is not one the certificate's members use", clip(u.Scheme))
	}
	if a.ports != nil {
		port, ok := urlPort(u)
		if !ok {
			return "it has no port and its scheme has no default"
		}
		if !a.ports[port] {
			return fmt.Sprintf("port %d is not in allow.ports", port)
		}
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		for _, p := range a.prefixes {
			if p.Contains(ip) {
				return ""
			}
		}
		return fmt.Sprintf("host %s is outside allow.cidrs", ip)
	}
	if !validDNSName(host) {
		return fmt.Sprintf("host %q is neither an IP address nor a DNS name", clip(host))
	}
	for _, d := range a.domains {
		if host == d || strings.HasSuffix(host, "."+d) {
			return ""
		}
	}
	return fmt.Sprintf("host %s is not under allow.domains", host)
}

// urlPort returns u's explicit port or its scheme's default.
func urlPort(u *url.URL) (int, bool) {
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		return n, err == nil && n > 0 && n <= 65535
	}
	switch u.Scheme {
	case "http", "ws":
		return 80, true
	case "https", "wss":
		return 443, true
	}
	return 0, false
}

// DirectorConfig returns a director configuration from the certificate:
// Policy (the default if this build does not know the named policy, which
// a newer certificate may name), the policy parameters below, LoadTTL,
// PollInterval, Epoch = Version, and AcceptMembers. LearnMembers is on only
// when the certificate's Allow rules permit additions (CIDRs or Domains):
// otherwise learning could only shrink the list, which is what a
// compromised member would want, and the certificate's list is the
// authority until a newer certificate replaces it.
//
// Policy parameters read (others are ignored):
//
//	max_attempts     integer 1..100            Config.MaxAttempts
//	attempt_timeout  duration                  Config.AttemptTimeout
//	retry_backoff    duration                  Config.RetryBackoff
//	hedge            true or false             Config.Hedge.Enabled
//	hedge_quantile   number in (0, 1)          Config.Hedge.Quantile
//
// The caller adds what a certificate cannot know: Clock, Zone, Poller.
func (c *Certificate) DirectorConfig() director.Config {
	cfg := director.Config{
		Policy:       c.Policy.Name,
		Epoch:        c.Version,
		LoadTTL:      time.Duration(c.Load.TTL),
		PollInterval: time.Duration(c.Load.PollInterval),
	}
	if _, err := policy.New(cfg.Policy); err != nil {
		cfg.Policy = ""
	}
	for k, v := range c.Policy.Params {
		if p, ok := knownParams[k]; ok && p.check(v) == nil {
			p.apply(&cfg, v)
		}
	}
	f, err := c.memberFilter()
	if err != nil {
		// Validate refuses such a certificate; refuse every record anyway.
		cfg.AcceptMembers = func(wire.Members) error { return err }
		return cfg
	}
	cfg.LearnMembers = f.allow != nil
	cfg.AcceptMembers = f.accept
	return cfg
}

// param is a policy parameter DirectorConfig understands.
type param struct {
	check func(string) error
	apply func(*director.Config, string)
}

var knownParams = map[string]param{
	"max_attempts": {
		check: func(s string) error {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 100 {
				return errors.New("want an integer in 1..100")
			}
			return nil
		},
		apply: func(c *director.Config, s string) { c.MaxAttempts, _ = strconv.Atoi(s) },
	},
	"attempt_timeout": {
		check: checkDuration,
		apply: func(c *director.Config, s string) { c.AttemptTimeout, _ = time.ParseDuration(s) },
	},
	"retry_backoff": {
		check: checkDuration,
		apply: func(c *director.Config, s string) { c.RetryBackoff, _ = time.ParseDuration(s) },
	},
	"hedge": {
		check: func(s string) error {
			if s != "true" && s != "false" {
				return errors.New("want true or false")
			}
			return nil
		},
		apply: func(c *director.Config, s string) { c.Hedge.Enabled = s == "true" },
	},
	"hedge_quantile": {
		check: func(s string) error {
			q, err := strconv.ParseFloat(s, 64)
			if err != nil || !(q > 0 && q < 1) {
				return errors.New("want a number in (0, 1)")
			}
			return nil
		},
		apply: func(c *director.Config, s string) { c.Hedge.Quantile, _ = strconv.ParseFloat(s, 64) },
	},
}

func checkDuration(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return errors.New("want a duration >= 0 like \"250ms\"")
	}
	return nil
}
