package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/internal/etcdtest"
	"github.com/smartclient/smartclient/registry/etcdreg"
)

func TestParseRegistrySpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // the spec's String, or the error's text
		ok   bool
	}{
		{"etcd://127.0.0.1:2379/web", "etcd://127.0.0.1:2379/web", true},
		{"etcd://a:1,b:2/web", "etcd://a:1,b:2/web", true},
		{"consul://127.0.0.1:8500/web?tag=v2", "consul://127.0.0.1:8500/web?tag=v2", true},
		{"http://x:1/web", `scheme "http": want etcd:// or consul://`, false},
		{"etcd:///web", "no host", false},
		{"etcd://a/web", `endpoint "a": want HOST:PORT`, false},
		{"etcd://a:1/", `service "": want one path segment`, false},
		{"etcd://a:1/x/y", `service "x/y"`, false},
		{"consul://a:1,b:2/web", "consul:// takes one agent address", false},
		{"etcd://a:1/web?tag=x", `unknown parameter "tag"`, false},
		{"consul://a:1/web?dc=x", `unknown parameter "dc"`, false},
	} {
		spec, err := ParseRegistrySpec(tc.in)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.ok && spec.String() != tc.want:
			t.Errorf("%q: parsed as %q", tc.in, spec.String())
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.want)
		}
	}
	if _, err := parseProxyFlags([]string{"--registry", "etcd://a:1/web", "--member", "http://127.0.0.1:1"}); err == nil ||
		!strings.Contains(err.Error(), "give one of --registry, --service or --member") {
		t.Errorf("--registry with --member: %v", err)
	}
}

// TestProxyFollowsEtcd runs the proxy with --registry against a real etcd
// (Debian's etcd-server): it starts with the one registered member, and
// moves to a second one when the first deregisters.
func TestProxyFollowsEtcd(t *testing.T) {
	etcd := etcdtest.Start(t)
	endpoint, cli := etcd.Endpoint, etcd.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	a, b := newMember(t, "a", nil), newMember(t, "b", nil)
	regA, err := etcdreg.Register(ctx, cli, "web", etcdreg.Member{URL: a.URL}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, "--registry", "etcd://"+endpoint+"/web")
	p.waitLine(t, "member: "+a.URL)
	if _, _, h := get(t, p.url+"/"); h.Get("Member") != "a" {
		t.Fatalf("served by %q, want a", h.Get("Member"))
	}
	regB, err := etcdreg.Register(ctx, cli, "web", etcdreg.Member{URL: b.URL}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer regB.Close(context.Background())
	if err := regA.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The registry's change reaches the director through its watch: wait
	// until every request goes to b.
	deadline := time.Now().Add(10 * time.Second)
	for {
		allB := true
		for range 5 {
			if _, _, h := get(t, p.url+"/"); h.Get("Member") != "b" {
				allB = false
			}
		}
		if allB {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the proxy still sends requests to a 10s after a left the registry")
		}
	}
}
