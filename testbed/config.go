package testbed

import (
	"fmt"
	"net/netip"
	"regexp"
)

// Defaults of Config.
const (
	DefaultHosts  = 4
	DefaultPrefix = "sctb"
	MaxHosts      = 64
)

// Config describes a bed. The zero value of each field means the default
// beside it.
type Config struct {
	// Hosts is the number of hosts, 1..MaxHosts. Default DefaultHosts (4).
	Hosts int
	// Prefix starts the name of every namespace, link and iptables comment
	// the bed creates: 1..6 characters, a lower-case letter then lower-case
	// letters or digits (interface names are limited to 15 bytes). Default
	// DefaultPrefix ("sctb"). New sweeps leftovers of dead beds whatever
	// their prefix, and orphans (names without a record) of this prefix.
	Prefix string
	// Subnet is the bridge's IPv4 /24: the gateway (the root namespace) is
	// .1 and host i (from 0) is .(i+2). Default: the first 10.77.N.0/24
	// (N = 0..255) that no live bed, root-namespace address or route uses,
	// so that beds of test binaries running in parallel never collide. An
	// explicit Subnet already in use is an error.
	Subnet string
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,5}$`)

// Validate reports the first field out of range.
func (c Config) Validate() error {
	if c.Hosts < 0 || c.Hosts > MaxHosts {
		return fmt.Errorf("testbed: Hosts %d: must be in 1..%d (0 means %d)", c.Hosts, MaxHosts, DefaultHosts)
	}
	if c.Prefix != "" && !prefixRE.MatchString(c.Prefix) {
		return fmt.Errorf("testbed: Prefix %q: want 1..6 characters, a lower-case letter then lower-case letters or digits", c.Prefix)
	}
	if c.Subnet != "" {
		if _, err := parseSubnet(c.Subnet); err != nil {
			return err
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Hosts == 0 {
		c.Hosts = DefaultHosts
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	return c
}

// parseSubnet accepts an IPv4 /24 given by its network address.
func parseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("testbed: Subnet %q: %v", s, err)
	}
	if !p.Addr().Is4() || p.Bits() != 24 || p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("testbed: Subnet %q: want an IPv4 /24 network such as 10.77.0.0/24", s)
	}
	return p, nil
}

// hostAddr is the address of host i (from 0) in subnet: .(i+2).
func hostAddr(subnet netip.Prefix, i int) netip.Addr {
	b := subnet.Addr().As4()
	b[3] = byte(i + 2)
	return netip.AddrFrom4(b)
}

// gatewayAddr is the bridge's address in subnet: .1.
func gatewayAddr(subnet netip.Prefix) netip.Addr {
	b := subnet.Addr().As4()
	b[3] = 1
	return netip.AddrFrom4(b)
}
