package consulreg

import (
	"errors"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/smartclient/smartclient/registry"
	"github.com/smartclient/smartclient/wire"
)

func TestEntry(t *testing.T) {
	for _, tc := range []struct {
		name string
		se   *api.ServiceEntry
		want registry.Entry // zero URL: an error is expected
	}{
		{"service address", &api.ServiceEntry{Node: &api.Node{Node: "n", Address: "10.0.0.9"}, Service: &api.AgentService{ID: "s", Address: "10.0.0.1", Port: 80}},
			registry.Entry{Key: "n/s", URL: "http://10.0.0.1:80"}},
		{"node address", &api.ServiceEntry{Node: &api.Node{Node: "n", Address: "10.0.0.9"}, Service: &api.AgentService{ID: "s", Port: 80}},
			registry.Entry{Key: "n/s", URL: "http://10.0.0.9:80"}},
		{"ipv6", &api.ServiceEntry{Node: &api.Node{Node: "n"}, Service: &api.AgentService{ID: "s", Address: "::1", Port: 443, Meta: map[string]string{"scheme": "https"}}},
			registry.Entry{Key: "n/s", URL: "https://[::1]:443"}},
		{"url meta wins", &api.ServiceEntry{Node: &api.Node{Node: "n"}, Service: &api.AgentService{ID: "s", Meta: map[string]string{"url": "grpc://svc.example:9000"}}},
			registry.Entry{Key: "n/s", URL: "grpc://svc.example:9000"}},
		{"weights and zones", &api.ServiceEntry{Node: &api.Node{Node: "n", Meta: map[string]string{"zone": "node-z"}}, Service: &api.AgentService{ID: "s", Address: "h", Port: 1, Weights: api.AgentWeights{Passing: 7}}},
			registry.Entry{Key: "n/s", URL: "http://h:1", Weight: 7, Zone: "node-z"}},
		{"meta beats both", &api.ServiceEntry{Node: &api.Node{Node: "n", Meta: map[string]string{"zone": "node-z"}}, Service: &api.AgentService{ID: "s", Address: "h", Port: 1, Weights: api.AgentWeights{Passing: 7}, Meta: map[string]string{"weight": "0.5", "zone": "svc-z", "state": "draining"}}},
			registry.Entry{Key: "n/s", URL: "http://h:1", Weight: 0.5, Zone: "svc-z", State: "draining"}},
		{"no service", &api.ServiceEntry{Node: &api.Node{Node: "n"}}, registry.Entry{}},
		{"nil", nil, registry.Entry{}},
		{"no node, no address", &api.ServiceEntry{Service: &api.AgentService{ID: "s", Port: 1}}, registry.Entry{}},
		{"negative port", &api.ServiceEntry{Service: &api.AgentService{ID: "s", Address: "h", Port: -1}}, registry.Entry{}},
		{"weight with spaces", &api.ServiceEntry{Service: &api.AgentService{ID: "s", Address: "h", Port: 1, Meta: map[string]string{"weight": " 1"}}}, registry.Entry{}},
		{"weight inf", &api.ServiceEntry{Service: &api.AgentService{ID: "s", Address: "h", Port: 1, Meta: map[string]string{"weight": "Inf"}}}, registry.Entry{}},
		{"address with a slash", &api.ServiceEntry{Service: &api.AgentService{ID: "s", Address: "h/x", Port: 1}}, registry.Entry{}},
	} {
		e, err := Entry(tc.se)
		if tc.want.URL == "" {
			if err == nil || !errors.Is(err, registry.ErrBadEntry) {
				t.Errorf("%s: Entry = %+v, %v; want an ErrBadEntry", tc.name, e, err)
			}
			continue
		}
		if err != nil || e != tc.want {
			t.Errorf("%s: Entry = %+v, %v; want %+v", tc.name, e, err, tc.want)
		}
	}
}

// FuzzEntry: whatever an agent sends in an instance's address, port and
// meta, Entry never panics, and what it accepts the wire format carries.
func FuzzEntry(f *testing.F) {
	f.Add("10.0.0.1", "", 80, "", "", "", "", "", "")
	f.Add("", "10.0.0.2", 8080, "https", "2", "eu-1", "up", "", "z")
	f.Add("::1", "", 443, "", "NaN", "", "draining", "", "")
	f.Add("h", "", 1, "", "", "", "", "http://x:1", "")
	f.Add("a;b", "", 65536, "HTTP", "-0", "a b", "?", "://", "")
	f.Fuzz(func(t *testing.T, addr, nodeAddr string, port int, scheme, weight, zone, state, u, nodeZone string) {
		meta := map[string]string{}
		for k, v := range map[string]string{MetaScheme: scheme, MetaWeight: weight, MetaZone: zone, MetaState: state, MetaURL: u} {
			if v != "" {
				meta[k] = v
			}
		}
		se := &api.ServiceEntry{
			Node:    &api.Node{Node: "n", Address: nodeAddr, Meta: map[string]string{MetaZone: nodeZone}},
			Service: &api.AgentService{ID: "s", Address: addr, Port: port, Meta: meta},
		}
		e, err := Entry(se)
		if err != nil {
			if !errors.Is(err, registry.ErrBadEntry) {
				t.Fatalf("error %v does not wrap ErrBadEntry", err)
			}
			return
		}
		m := wire.Members{Epoch: 1, Members: []wire.Member{{URL: e.URL, Weight: e.Weight, Zone: e.Zone}}}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted %+v, which wire refuses: %v", e, err)
		}
		if back, err := wire.ParseMembers(m.String()); err != nil || !registry.Equal(back, m) {
			t.Fatalf("wire round trip of %+v: %v, %v", e, back, err)
		}
	})
}
