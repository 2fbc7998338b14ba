// Package consulreg is the Consul adapter of package registry: a Source
// that follows the healthy instances of a service in Consul's catalog,
// through the official API client (github.com/hashicorp/consul/api).
//
// # What is read
//
// The source runs blocking queries on the health endpoint,
// GET /v1/health/service/NAME?passing=1&index=N&wait=W, so only instances
// whose checks all pass are listed, and each answer comes as soon as the
// service changes (or after W). Each instance becomes one member:
//
//	URL     Service.Meta["url"] if set; otherwise
//	        Service.Meta["scheme"] (default "http") + "://" +
//	        Service.Address (or, if empty, Node.Address) + ":" + Service.Port
//	Weight  Service.Meta["weight"] if set (a decimal), otherwise
//	        Service.Weights.Passing (Consul's own weight, 1 by default)
//	Zone    Service.Meta["zone"], otherwise Node.Meta["zone"]
//	State   Service.Meta["state"]: "draining" or "down" leave it out
//
// An instance whose checks do not all pass is left out even if the agent
// returned it (defence in depth against an agent that ignores passing=1).
//
// # Epochs and index resets
//
// The epoch of an update is the X-Consul-Index of the answer. Consul's
// documentation for blocking queries asks clients to handle three cases,
// and the source does:
//
//   - The index can go backwards (a snapshot restore on the servers, or a
//     change in how the servers compute it). The source then starts again
//     from index 0 and marks the update Reset, so a director attached with
//     registry.Attach takes the new view although its epoch is lower.
//   - The index should never be 0, but old servers have returned 0; it is
//     treated as 1 so the next query still blocks.
//   - Answers can come back at once repeatedly (an index that does not
//     move, a flapping check); queries are spaced at least MinInterval apart.
package consulreg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/registry"
	"github.com/smartclient/smartclient/registry/internal/tally"
	"github.com/smartclient/smartclient/watch"
)

// Meta keys read from a service instance (and, for zone, its node).
const (
	MetaURL    = "url"
	MetaScheme = "scheme"
	MetaWeight = "weight"
	MetaZone   = "zone"
	MetaState  = "state"
)

// Config configures a Source. The zero value of each optional field means
// the default beside it.
type Config struct {
	// Agent says how to reach the Consul agent: address, scheme, TLS,
	// token, datacenter. Default api.DefaultConfig(), which reads the
	// CONSUL_HTTP_* environment variables. The source copies it.
	Agent *api.Config
	// Service is the service's name in the catalog. Required.
	Service string
	// Tag, if set, lists only instances with this tag.
	Tag string

	// Wait is how long one blocking query may wait for a change; Consul
	// adds up to 1/16 of it. Default 5m, Consul's own; at most 10m. A
	// query still unanswered max(Wait/8, 2s) after that is abandoned and
	// counted as an error.
	Wait time.Duration
	// MinInterval spaces queries, so an agent that answers at once cannot
	// make the source spin. Default 100ms; negative means none.
	MinInterval time.Duration
	// MaxResponseBytes bounds one answer; a larger one is an error.
	// Default 16 MiB. It does not apply to a unix:// agent address, for
	// which the api package builds its own HTTP client.
	MaxResponseBytes int64
	// Backoff paces retries after failures. Defaults as watch.Backoff.
	Backoff watch.Backoff
	// Clock times backoffs and spacing. Default clock.Real.
	Clock clock.Clock
	// OnSkip, if set, is told about each instance refused as malformed. It
	// is called on Watch's goroutine and must not block.
	OnSkip func(id string, err error)
}

func (c Config) withDefaults() Config {
	if c.Wait == 0 {
		c.Wait = 5 * time.Minute
	}
	if c.MinInterval == 0 {
		c.MinInterval = 100 * time.Millisecond
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = 16 << 20
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	return c
}

// Validate reports the first field outside its range.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Service == "" || len(c.Service) > 256 || strings.ContainsAny(c.Service, "/?#% "):
		return fmt.Errorf("consulreg: Service %q: want 1..256 bytes without '/', '?', '#', '%%' or space", c.Service)
	case c.Wait < time.Millisecond || c.Wait > 10*time.Minute:
		return fmt.Errorf("consulreg: Wait %v: want 1ms..10m", c.Wait)
	case c.MaxResponseBytes < 1<<10:
		return fmt.Errorf("consulreg: MaxResponseBytes %d: want >= 1024", c.MaxResponseBytes)
	}
	return nil
}

// Source follows one service in Consul's catalog. It implements
// registry.Source.
type Source struct {
	cfg    Config
	health *api.Health
	t      tally.Tally
}

// New returns a Source for cfg. It makes its own API client from
// cfg.Agent, with a response size limit.
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var ac api.Config
	if cfg.Agent != nil {
		ac = *cfg.Agent
	} else {
		ac = *api.DefaultConfig()
	}
	if ac.HttpClient == nil {
		if ac.Transport == nil {
			ac.Transport = api.DefaultConfig().Transport
		}
		hc, err := api.NewHttpClient(ac.Transport, ac.TLSConfig)
		if err != nil {
			return nil, fmt.Errorf("consulreg: %w", err)
		}
		ac.HttpClient = hc
	} else {
		hc := *ac.HttpClient
		ac.HttpClient = &hc
	}
	rt := ac.HttpClient.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	ac.HttpClient.Transport = limitTransport{rt: rt, max: cfg.MaxResponseBytes}
	c, err := api.NewClient(&ac)
	if err != nil {
		return nil, fmt.Errorf("consulreg: %w", err)
	}
	return &Source{cfg: cfg, health: c.Health()}, nil
}

// Stats returns the source's counters.
func (s *Source) Stats() registry.Stats { return s.t.Stats() }

// Watch implements registry.Source.
func (s *Source) Watch(ctx context.Context, emit func(registry.Update)) error {
	var (
		waitIndex uint64 // index for the next query; 0 asks without blocking
		lastIndex uint64 // index of the last answer
		last      registry.Update
		started   bool
		failures  int
		lastStart time.Time
	)
	for {
		if started && s.cfg.MinInterval > 0 {
			if !tally.Sleep(ctx, s.cfg.Clock, s.cfg.MinInterval-s.cfg.Clock.Now().Sub(lastStart)) {
				return ctx.Err()
			}
		}
		lastStart = s.cfg.Clock.Now()
		// An agent that accepts a query and never answers must not stall
		// the source: give up some time after Consul's own wait would end.
		qctx, cancel := context.WithTimeout(ctx, s.cfg.Wait+s.cfg.Wait/16+max(s.cfg.Wait/8, 2*time.Second))
		q := (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: s.cfg.Wait}).WithContext(qctx)
		entries, meta, err := s.health.Service(s.cfg.Service, s.cfg.Tag, true, q)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			s.t.Error(fmt.Errorf("consulreg: query %s: %w", s.cfg.Service, err))
			failures++
			if !tally.Sleep(ctx, s.cfg.Clock, s.cfg.Backoff.Delay(failures, rand.Float64())) {
				return ctx.Err()
			}
			continue
		}
		failures = 0
		s.t.Reads.Add(1)

		index := meta.LastIndex
		if index == 0 {
			// Never valid after a query (Consul's documentation says to
			// use 1): 0 would make the next query return at once.
			index = 1
		}
		reset, next := !started, index
		if started && index < lastIndex {
			// The index went backwards: start again from 0, as Consul's
			// documentation says, and make the consumer take this view.
			reset, next = true, 0
		}
		started = true
		lastIndex, waitIndex = index, next

		m, dropped := registry.Build(index, s.entries(entries))
		s.t.Dropped.Add(uint64(dropped))
		if !reset && registry.Equal(m, last.Members) {
			continue
		}
		last = registry.Update{Members: m, Reset: reset}
		s.t.Emitted(last)
		emit(last)
	}
}

// entries vets the instances of one answer, counting what it leaves out.
func (s *Source) entries(ses []*api.ServiceEntry) []registry.Entry {
	out := make([]registry.Entry, 0, len(ses))
	for _, se := range ses {
		e, err := Entry(se)
		if err != nil {
			s.t.Skipped.Add(1)
			if f := s.cfg.OnSkip; f != nil {
				f(e.Key, err)
			}
			continue
		}
		if !registry.Serving(e) || se.Checks.AggregatedStatus() != api.HealthPassing {
			s.t.Excluded.Add(1)
			continue
		}
		out = append(out, e)
	}
	return out
}

// Entry turns one instance into a checked registry entry (see the package
// comment for the mapping). Its Key is the node and service ID, which
// name the instance in the catalog; on error the returned Entry carries
// only that Key.
func Entry(se *api.ServiceEntry) (registry.Entry, error) {
	if se == nil || se.Service == nil {
		return registry.Entry{}, fmt.Errorf("%w: instance without a service", registry.ErrBadEntry)
	}
	svc := se.Service
	var node api.Node
	if se.Node != nil {
		node = *se.Node
	}
	e := registry.Entry{Key: node.Node + "/" + svc.ID}
	key := registry.Entry{Key: e.Key}
	if u, ok := svc.Meta[MetaURL]; ok {
		e.URL = u
	} else {
		addr := svc.Address
		if addr == "" {
			addr = node.Address
		}
		if !isHost(addr) || svc.Port <= 0 || svc.Port > 65535 {
			return key, fmt.Errorf("%w: %s: address %q port %d: want a host and a port in 1..65535", registry.ErrBadEntry, clip(e.Key), clip(addr), svc.Port)
		}
		scheme := "http"
		if sc, ok := svc.Meta[MetaScheme]; ok {
			scheme = sc
		}
		e.URL = scheme + "://" + net.JoinHostPort(addr, strconv.Itoa(svc.Port))
	}
	if w, ok := svc.Meta[MetaWeight]; ok {
		f, err := parseWeight(w)
		if err != nil {
			return key, fmt.Errorf("%w: %s: %v", registry.ErrBadEntry, clip(e.Key), err)
		}
		e.Weight = f
	} else if svc.Weights.Passing > 0 {
		e.Weight = float64(svc.Weights.Passing)
	}
	if z, ok := svc.Meta[MetaZone]; ok {
		e.Zone = z
	} else {
		e.Zone = node.Meta[MetaZone]
	}
	e.State = svc.Meta[MetaState]
	if err := registry.Check(e); err != nil {
		return key, err
	}
	return e, nil
}

// isHost reports whether s is an IP address without a zone or a DNS
// name, so that it cannot smuggle a path, user or query into the URL.
func isHost(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Zone() == ""
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// parseWeight reads a decimal weight; registry.Check bounds its value.
func parseWeight(s string) (float64, error) {
	if len(s) > 32 {
		return 0, fmt.Errorf("weight %q is too long", clip(s))
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || strings.ContainsAny(s, "xXpP_") {
		return 0, fmt.Errorf("weight %q is not a decimal number", s)
	}
	return f, nil
}

// limitTransport fails any response body longer than max, so a broken or
// hostile agent cannot make the source read without bound.
type limitTransport struct {
	rt  http.RoundTripper
	max int64
}

func (l limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > l.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, resp.ContentLength, l.max)
	}
	resp.Body = &limitBody{rc: resp.Body, left: l.max}
	return resp, nil
}

// ErrTooLarge is the error for an answer over Config.MaxResponseBytes.
var ErrTooLarge = errors.New("consulreg: answer too large")

type limitBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body at the limit from a longer one.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitBody) Close() error { return b.rc.Close() }

func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
