package cli

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/registry"
	"github.com/smartclient/smartclient/registry/consulreg"
	"github.com/smartclient/smartclient/registry/etcdreg"
)

// RegistrySpec names a registry that lists a service's members, as the
// proxy's --registry flag gives it:
//
//	etcd://HOST:PORT[,HOST:PORT...]/SERVICE   keys under etcdreg.DefaultPrefix
//	consul://HOST:PORT/SERVICE[?tag=TAG]      Consul's health catalog, passing only
type RegistrySpec struct {
	Kind      string   // "etcd" or "consul"
	Endpoints []string // host:port of the registry's servers or agent
	Service   string
	Tag       string // consul only
}

// ParseRegistrySpec parses a --registry value, naming what is wrong.
func ParseRegistrySpec(s string) (RegistrySpec, error) {
	u, err := url.Parse(s)
	if err != nil {
		return RegistrySpec{}, fmt.Errorf("not a URL: %v", err)
	}
	spec := RegistrySpec{Kind: u.Scheme, Service: strings.Trim(u.Path, "/")}
	switch u.Scheme {
	case "etcd", "consul":
	default:
		return RegistrySpec{}, fmt.Errorf("scheme %q: want etcd:// or consul://", u.Scheme)
	}
	if u.Host == "" {
		return RegistrySpec{}, fmt.Errorf("no host: want %s://HOST:PORT/SERVICE", u.Scheme)
	}
	for _, h := range strings.Split(u.Host, ",") {
		if !strings.Contains(h, ":") || strings.HasSuffix(h, ":") {
			return RegistrySpec{}, fmt.Errorf("endpoint %q: want HOST:PORT", h)
		}
		spec.Endpoints = append(spec.Endpoints, h)
	}
	if spec.Kind == "consul" && len(spec.Endpoints) != 1 {
		return RegistrySpec{}, fmt.Errorf("consul:// takes one agent address, not %d", len(spec.Endpoints))
	}
	if spec.Service == "" || strings.Contains(spec.Service, "/") {
		return RegistrySpec{}, fmt.Errorf("service %q: want one path segment naming the service", spec.Service)
	}
	q := u.Query()
	spec.Tag = q.Get("tag")
	for k := range q {
		if k != "tag" || spec.Kind != "consul" {
			return RegistrySpec{}, fmt.Errorf("unknown parameter %q", k)
		}
	}
	return spec, nil
}

// String is the spec as ParseRegistrySpec reads it.
func (r RegistrySpec) String() string {
	s := r.Kind + "://" + strings.Join(r.Endpoints, ",") + "/" + r.Service
	if r.Tag != "" {
		s += "?tag=" + url.QueryEscape(r.Tag)
	}
	return s
}

// open connects a Source for the spec; closeSrc releases its client.
func (r RegistrySpec) open() (src registry.Source, closeSrc func(), err error) {
	switch r.Kind {
	case "etcd":
		eps := make([]string, len(r.Endpoints))
		for i, e := range r.Endpoints {
			eps[i] = "http://" + e
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
		if err != nil {
			return nil, nil, fmt.Errorf("etcd %s: %w", r, err)
		}
		s, err := etcdreg.New(etcdreg.Config{Client: cli, Service: r.Service})
		if err != nil {
			cli.Close()
			return nil, nil, err
		}
		return s, func() { cli.Close() }, nil
	case "consul":
		s, err := consulreg.New(consulreg.Config{Agent: &api.Config{Address: r.Endpoints[0]}, Service: r.Service, Tag: r.Tag})
		if err != nil {
			return nil, nil, err
		}
		return s, func() {}, nil
	}
	return nil, nil, fmt.Errorf("registry kind %q", r.Kind)
}

// registryDirector waits, until ctx ends or for at most a minute, for the
// registry's first non-empty member list, builds a director from it with
// cfg, and keeps feeding the director the registry's updates. closeAll stops
// the feed, then closes the director and the registry's client.
func registryDirector(ctx context.Context, spec RegistrySpec, cfg director.Config) (d *director.Director, members []balance.Member, closeAll func(), err error) {
	src, closeSrc, err := spec.open()
	if err != nil {
		return nil, nil, nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	first, err := registry.First(fctx, src)
	cancel()
	if err != nil {
		closeSrc()
		return nil, nil, nil, fmt.Errorf("registry %s: no member list: %w", spec, err)
	}
	members = registry.BalanceMembers(first)
	cfg.Epoch = first.Epoch
	if d, err = director.New(cfg, members); err != nil {
		closeSrc()
		return nil, nil, nil, err
	}
	feedCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		registry.Attach(d, src).Run(feedCtx)
	}()
	return d, members, func() {
		stop()
		<-done
		d.Close()
		closeSrc()
	}, nil
}
