package cert

import (
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/wire"
)

func allowCert() *Certificate {
	c := testCert()
	c.MemberList = append(c.MemberList, Member{URL: "https://api.example.com"})
	c.Allow = Allow{
		CIDRs:   []string{"10.0.0.0/16", "192.168.1.0/24", "2001:db8::/32"},
		Domains: []string{"svc.example.com", ".pool.example.net"},
	}
	return c
}

func TestAcceptMembers(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Certificate)
		urls  []string
		ok    bool
		named string // the URL the error must name
	}{
		{"all listed", nil, []string{"http://10.0.0.1:8080", "https://api.example.com"}, true, ""},
		{"a subset of the list", nil, []string{"http://10.0.0.2:8080"}, true, ""},
		{"inside a CIDR", nil, []string{"http://10.0.0.1:8080", "http://10.0.77.3:9000"}, true, ""},
		{"inside an IPv6 CIDR", nil, []string{"http://[2001:db8::7]:80"}, true, ""},
		{"IPv4-mapped IPv6 inside", nil, []string{"http://[::ffff:10.0.1.1]:80"}, true, ""},
		{"under a domain", nil, []string{"http://a.svc.example.com:8080"}, true, ""},
		{"the domain itself", nil, []string{"http://svc.example.com"}, true, ""},
		{"leading-dot domain", nil, []string{"http://x.y.pool.example.net"}, true, ""},
		{"upper case and trailing dot", nil, []string{"http://B.SVC.Example.COM.:81"}, true, ""},
		{"outside every CIDR", nil, []string{"http://10.0.0.1:8080", "http://10.1.0.1:8080"}, false, "http://10.1.0.1:8080"},
		{"public address", nil, []string{"http://203.0.113.9"}, false, "http://203.0.113.9"},
		{"look-alike domain", nil, []string{"http://evilsvc.example.com"}, false, "http://evilsvc.example.com"},
		{"domain as a prefix", nil, []string{"http://svc.example.com.evil.org"}, false, "http://svc.example.com.evil.org"},
		{"parent domain", nil, []string{"http://example.com"}, false, "http://example.com"},
		{"IP spelled in octal", nil, []string{"http://012.0.0.1"}, false, "http://012.0.0.1"},
		{"user info", nil, []string{"http://svc.example.com@203.0.113.9/"}, false, "@"},
		{"scheme the members do not use", nil, []string{"ftp://10.0.0.9"}, false, "ftp://10.0.0.9"},
		{"zoned IPv6", nil, []string{"http://[fe80::1%25eth0]:80"}, false, "fe80"},
		{"listed URL with a path", nil, []string{"http://10.0.0.1:8080/x"}, true, ""}, // inside 10.0.0.0/16
		{"empty record", nil, nil, false, "no members"},
		{"ports: allowed", func(c *Certificate) { c.Allow.Ports = []int{8080, 443} }, []string{"http://10.0.5.5:8080", "https://a.svc.example.com"}, true, ""},
		{"ports: default port refused", func(c *Certificate) { c.Allow.Ports = []int{8080} }, []string{"http://10.0.5.5"}, false, "http://10.0.5.5"},
		{"ports: other port refused", func(c *Certificate) { c.Allow.Ports = []int{8080} }, []string{"http://a.svc.example.com:22"}, false, ":22"},
		{"ports: listed members exempt", func(c *Certificate) { c.Allow.Ports = []int{1} }, []string{"http://10.0.0.1:8080"}, true, ""},
		{"no allow rules: subset fine", func(c *Certificate) { c.Allow = Allow{} }, []string{"http://10.0.0.1:8080"}, true, ""},
		{"no allow rules: addition refused", func(c *Certificate) { c.Allow = Allow{} }, []string{"http://10.0.0.3:8080"}, false, "allows no additions"},
		{"ports alone allow nothing", func(c *Certificate) { c.Allow = Allow{Ports: []int{8080}} }, []string{"http://10.0.0.3:8080"}, false, "allows no additions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := allowCert()
			if tt.edit != nil {
				tt.edit(c)
			}
			rec := wire.Members{Epoch: 9}
			for _, u := range tt.urls {
				rec.Members = append(rec.Members, wire.Member{URL: u})
			}
			err := c.AcceptMembers(rec)
			// The director's hook must agree with the method.
			hookErr := c.DirectorConfig().AcceptMembers(rec)
			if (err == nil) != (hookErr == nil) {
				t.Fatalf("AcceptMembers %v, DirectorConfig hook %v", err, hookErr)
			}
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			t.Log(err)
			wantOnly(t, err, ErrNotAllowed)
			if !strings.Contains(err.Error(), tt.named) {
				t.Errorf("error %q does not name %q", err, tt.named)
			}
		})
	}
}

func TestMembersAndDirectorConfig(t *testing.T) {
	c := allowCert()
	c.Policy = Policy{Name: "least-loaded", Params: map[string]string{
		"max_attempts": "5", "attempt_timeout": "150ms", "retry_backoff": "1ms", "hedge": "true", "hedge_quantile": "0.9", "future": "x",
	}}
	c.Load = Load{TTL: Duration(3 * time.Second), PollPath: "/load", PollInterval: Duration(2 * time.Second)}
	ms := c.Members()
	if len(ms) != 3 || ms[0] != (balance.Member{URL: "http://10.0.0.1:8080", Weight: 2, Zone: "eu-1"}) {
		t.Errorf("Members = %+v", ms)
	}
	cfg := c.DirectorConfig()
	switch {
	case cfg.Policy != "least-loaded", cfg.Epoch != 7, cfg.LoadTTL != 3*time.Second, cfg.PollInterval != 2*time.Second,
		cfg.MaxAttempts != 5, cfg.AttemptTimeout != 150*time.Millisecond, cfg.RetryBackoff != time.Millisecond,
		!cfg.Hedge.Enabled, cfg.Hedge.Quantile != 0.9, !cfg.LearnMembers, cfg.AcceptMembers == nil:
		t.Errorf("DirectorConfig = %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}

	// No allow rules: the list is authoritative, nothing is learned.
	c.Allow = Allow{}
	if c.DirectorConfig().LearnMembers {
		t.Error("LearnMembers without allow rules")
	}
	// A policy this build does not know (a newer certificate) falls back to
	// the default instead of failing.
	c.Policy.Name = "quantum-annealing"
	if cfg := c.DirectorConfig(); cfg.Policy != "" || cfg.Validate() != nil {
		t.Errorf("unknown policy gave %q (%v)", cfg.Policy, cfg.Validate())
	}
}
