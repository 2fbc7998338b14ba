// Package policy holds the director's selection policies, each a small
// balance.Policy: random (the paper's FTP applet), random biased by response
// time (the paper's refinement), round robin, static weights, least loaded
// by reported load (the paper's telnet front-end), power of d choices over
// latency and load (after Finagle and Linkerd), consistent-hash affinity,
// and a locality wrapper that prefers the director's own zone.
//
// Every picker is lock-free and allocation-free; see balance.Picker.
package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/smartclient/smartclient/balance"
)

// Default is the policy used when none is named: the one that does best in
// the simulator across the scenarios in the README.
const Default = "p2c"

var builders = map[string]func() balance.Policy{
	"random":        func() balance.Policy { return Random{} },
	"random-biased": func() balance.Policy { return BiasedRandom{} },
	"round-robin":   func() balance.Policy { return RoundRobin{} },
	"weighted":      func() balance.Policy { return Weighted{} },
	"least-loaded":  func() balance.Policy { return LeastLoaded{} },
	"p2c":           func() balance.Policy { return P2C{} },
	"hash":          func() balance.Policy { return Hash{} },
}

// Names lists the policy names New accepts, sorted. "locality" and
// "locality:INNER" wrap another policy with a same-zone preference.
func Names() []string {
	var ns []string
	for n := range builders {
		ns = append(ns, n)
	}
	ns = append(ns, "locality")
	slices.Sort(ns)
	return ns
}

// New returns the policy called name; "" means Default.
func New(name string) (balance.Policy, error) {
	if name == "" {
		name = Default
	}
	if rest, ok := strings.CutPrefix(name, "locality"); ok {
		inner := Default
		if rest != "" {
			in, ok := strings.CutPrefix(rest, ":")
			if !ok || in == "" || strings.HasPrefix(in, "locality") {
				return nil, fmt.Errorf("policy: unknown policy %q; want one of %s", name, strings.Join(Names(), ", "))
			}
			inner = in
		}
		p, err := New(inner)
		if err != nil {
			return nil, err
		}
		return Locality{Inner: p}, nil
	}
	b, ok := builders[name]
	if !ok {
		return nil, fmt.Errorf("policy: unknown policy %q; want one of %s", name, strings.Join(Names(), ", "))
	}
	return b(), nil
}
