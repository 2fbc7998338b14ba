package testbed

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{Hosts: 1, Prefix: "a", Subnet: "10.1.2.0/24"}, true},
		{Config{Hosts: MaxHosts, Prefix: "abc123"}, true},
		{Config{Hosts: -1}, false},
		{Config{Hosts: MaxHosts + 1}, false},
		{Config{Prefix: "abcdefg"}, false}, // 7 characters: names would pass 15 bytes
		{Config{Prefix: "1abc"}, false},
		{Config{Prefix: "a-b"}, false},
		{Config{Prefix: "ABC"}, false},
		{Config{Subnet: "10.1.2.0/16"}, false},
		{Config{Subnet: "10.1.2.7/24"}, false},
		{Config{Subnet: "fd00::/24"}, false},
		{Config{Subnet: "nonsense"}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: Validate = %v, want ok=%v", c.cfg, err, c.ok)
		}
	}
}

// TestNamesFit: the longest names a bed makes fit Linux's 15-byte
// interface names.
func TestNamesFit(t *testing.T) {
	name := "abcdef-0123"
	for _, n := range []string{name + "-br", name + "-h" + strconv.Itoa(MaxHosts)} {
		if len(n) > 15 {
			t.Errorf("%q is %d bytes, over 15", n, len(n))
		}
		if !ownedNameRE("abcdef").MatchString(n) {
			t.Errorf("%q not recognised as the bed's", n)
		}
	}
}

func TestAddresses(t *testing.T) {
	sn := netip.MustParsePrefix("10.77.3.0/24")
	if g := gatewayAddr(sn); g != netip.MustParseAddr("10.77.3.1") {
		t.Errorf("gateway %v", g)
	}
	if h := hostAddr(sn, MaxHosts-1); h != netip.MustParseAddr("10.77.3.65") || !sn.Contains(h) {
		t.Errorf("last host %v", h)
	}
}

func TestTBFSpec(t *testing.T) {
	for _, bps := range []int64{8_000, 1_000_000, 16_000_000, 10_000_000_000} {
		spec := strings.Join(tbfSpec(bps), " ")
		f := strings.Fields(spec)
		burst, _ := strconv.ParseInt(f[4], 10, 64)
		limit, _ := strconv.ParseInt(f[6], 10, 64)
		if f[0] != "tbf" || f[2] != strconv.FormatInt(bps, 10)+"bit" || burst < 2*1514 || limit < burst {
			t.Errorf("%d bit/s: %q", bps, spec)
		}
	}
}

func TestRuleComment(t *testing.T) {
	for line, want := range map[string]string{
		"-A FORWARD -i sctb-1a2b-br -o sctb-1a2b-br -m comment --comment sctb-1a2b -j ACCEPT": "sctb-1a2b",
		`-A INPUT -m comment --comment "x y" -j DROP`:                                         `x`,
		"-A INPUT -j DROP":           "",
		"-A INPUT -j DROP --comment": "",
	} {
		if got := ruleComment(line); got != want {
			t.Errorf("ruleComment(%q) = %q, want %q", line, got, want)
		}
	}
}

func TestParseRecord(t *testing.T) {
	good := record{Name: "sctb-1a2b", Prefix: "sctb", Hosts: 4, Subnet: "10.77.0.0/24", Pid: 42, Start: 7}
	b, _ := json.Marshal(good)
	if r, err := parseRecord(b); err != nil || r != good {
		t.Fatalf("parseRecord(%s) = %+v, %v", b, r, err)
	}
	for _, bad := range []string{
		`{}`,
		`{"name":"sctb-1a2b","prefix":"other","hosts":4,"subnet":"10.77.0.0/24"}`,
		`{"name":"../../etc","prefix":"sctb","hosts":4,"subnet":"10.77.0.0/24"}`,
		`{"name":"sctb-1a2b","prefix":"sctb","hosts":0,"subnet":"10.77.0.0/24"}`,
		`{"name":"sctb-1a2b","prefix":"sctb","hosts":4,"subnet":"10.77.0.0/16"}`,
		`{"name":"sctb-1a2b","prefix":"sctb","hosts":4,"subnet":"10.77.0.0/24","pid":-3}`,
		`not json`,
		`{"name":"sctb-1a2b",` + strings.Repeat(" ", maxRecord) + `}`,
	} {
		if _, err := parseRecord([]byte(bad)); err == nil {
			t.Errorf("parseRecord(%.60q) accepted", bad)
		}
	}
}

// FuzzParseRecord: a record file is disk input; whatever it holds, parsing
// neither panics nor accepts a name that could reach outside the bed's
// own names (teardown derives paths and interface names from it).
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"name":"sctb-1a2b","prefix":"sctb","hosts":4,"subnet":"10.77.0.0/24","pid":1,"start":2}`))
	f.Add([]byte(`{"name":"x-0000","prefix":"x","hosts":1,"subnet":"10.0.0.0/24","pid":0}`))
	f.Add([]byte(`{"name":"sctb-1a2b","hosts":1e9}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRecord(b)
		if err != nil {
			return
		}
		if !bedNameRE.MatchString(r.Name) || strings.ContainsAny(r.Name, "/. ") || len(r.Name)+4 > 15 {
			t.Fatalf("accepted name %q", r.Name)
		}
		if r.Hosts < 1 || r.Hosts > MaxHosts || r.Pid < 0 {
			t.Fatalf("accepted %+v", r)
		}
		if _, err := parseSubnet(r.Subnet); err != nil {
			t.Fatalf("accepted subnet %q", r.Subnet)
		}
	})
}
