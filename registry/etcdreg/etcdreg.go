// Package etcdreg is the etcd adapter of package registry: a Source that
// watches the members of a service in etcd, and Register, with which a
// server publishes itself there under a lease.
//
// # Layout
//
// Each member is one key under the service's prefix,
//
//	/smartclient/services/NAME/members/ESCAPED-URL
//
// whose value is a JSON Member ({"url","weight","zone","state"}). Servers
// write their key with a lease and keep the lease alive (Register), so the
// key of a crashed server disappears when its lease expires, after at most
// its TTL. A member that is draining or down stays registered with that
// state and is left out of the list.
//
// # Epochs and resumption
//
// The epoch of an update is etcd's store revision when the update was read:
// it grows with every write to the cluster, so it orders views across
// clients and across restarts of the client. The source lists the prefix at
// revision R, then watches from R+1; if the watch breaks the etcd client
// resumes it from the last revision it delivered, and if that revision has
// been compacted meanwhile the source lists again. A revision below the
// last one seen, or another cluster ID, means the cluster was replaced or
// restored from a backup: the next update has Reset set. Because a watch on
// a restored cluster may wait for revisions it will reach only much later,
// the source also asks for the cluster's revision every CheckInterval.
package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/registry"
	"github.com/smartclient/smartclient/registry/internal/tally"
	"github.com/smartclient/smartclient/watch"
	"github.com/smartclient/smartclient/wire"
)

// Config configures a Source. The zero value of each optional field means
// the default beside it.
type Config struct {
	// Client talks to etcd. Required. The source does not close it.
	Client *clientv3.Client
	// Service is the service's name: 1..MaxNameLen bytes of [A-Za-z0-9._-].
	// Required.
	Service string
	// Prefix is the root of all services. Default DefaultPrefix. It must
	// start and end with '/'.
	Prefix string

	// MaxKeys bounds the keys read by one list of the service. Keys beyond
	// it are not read and count as Dropped. Default 4 × wire.MaxMembers.
	MaxKeys int
	// PageSize is the number of keys read per range request while listing.
	// Default 256.
	PageSize int
	// RequestTimeout bounds each range request. Default 10s.
	RequestTimeout time.Duration
	// CheckInterval is how often the source asks etcd for its revision to
	// notice a cluster restored to an older revision (see the package
	// comment). Default 30s; negative disables it.
	CheckInterval time.Duration
	// Backoff paces retries after failures. Defaults as watch.Backoff.
	Backoff watch.Backoff
	// Clock times backoffs and checks. Default clock.Real.
	Clock clock.Clock
	// OnSkip, if set, is told about each entry refused as malformed. It is
	// called on Watch's goroutine and must not block.
	OnSkip func(key string, err error)
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = 4 * wire.MaxMembers
	}
	if c.PageSize == 0 {
		c.PageSize = 256
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = 30 * time.Second
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
	case c.Client == nil:
		return errors.New("etcdreg: Config.Client is nil")
	case c.MaxKeys < 1 || c.MaxKeys > 1<<20:
		return fmt.Errorf("etcdreg: MaxKeys %d: want 1..%d", c.MaxKeys, 1<<20)
	case c.PageSize < 1 || c.PageSize > 10000:
		return fmt.Errorf("etcdreg: PageSize %d: want 1..10000", c.PageSize)
	case c.RequestTimeout < 0:
		return fmt.Errorf("etcdreg: RequestTimeout %v: want >= 0", c.RequestTimeout)
	}
	if err := checkName(c.Service); err != nil {
		return err
	}
	return checkPrefix(c.Prefix)
}

// Source watches one service's members in etcd. It implements
// registry.Source.
type Source struct {
	cfg    Config
	prefix string // the service's members prefix
	t      tally.Tally
}

// New returns a Source for cfg.
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Source{cfg: cfg, prefix: membersPrefix(cfg.Prefix, cfg.Service)}, nil
}

// Stats returns the source's counters.
func (s *Source) Stats() registry.Stats { return s.t.Stats() }

// view is the state of one Watch call.
type view struct {
	s       *Source
	emit    func(registry.Update)
	started bool
	rev     int64  // revision of the last view read
	cluster uint64 // cluster ID of the last view read
	reset   bool   // the next update must be a Reset
	last    wire.Members
	members map[string]registry.Entry // serving, checked entries by key
	full    bool                      // a key was refused because members was full
}

// errRelist ends a watch session so that the service is listed again.
var errRelist = errors.New("etcdreg: list again")

// Watch implements registry.Source.
func (s *Source) Watch(ctx context.Context, emit func(registry.Update)) error {
	v := &view{s: s, emit: emit, reset: true}
	failures := 0
	for {
		progressed, err := v.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if progressed {
			failures = 0
		}
		if errors.Is(err, errRelist) {
			continue
		}
		if err == nil {
			err = errors.New("etcdreg: watch closed")
		}
		s.t.Error(err)
		failures++
		if !tally.Sleep(ctx, s.cfg.Clock, s.cfg.Backoff.Delay(failures, rand.Float64())) {
			return ctx.Err()
		}
	}
}

// session lists the service and watches it until the watch breaks or a
// list is needed. progressed reports whether the watch got anywhere (an
// answer or a passed check), so that a session that fails at once backs
// off further each time.
func (v *view) session(ctx context.Context) (progressed bool, err error) {
	s := v.s
	if err := v.list(ctx); err != nil {
		return false, err
	}
	v.publish()

	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cfg.Client.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(v.rev+1))

	var (
		check <-chan struct{}
		timer clock.Timer
	)
	arm := func() {
		if s.cfg.CheckInterval > 0 {
			c := make(chan struct{})
			timer = s.cfg.Clock.AfterFunc(s.cfg.CheckInterval, func() { close(c) })
			check = c
		}
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	arm()
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-check:
			if err := v.check(ctx); err != nil {
				return true, err
			}
			progressed = true
			arm()
		case wr, ok := <-wch:
			if !ok {
				return progressed, nil
			}
			if wr.CompactRevision != 0 {
				// Our revision was compacted away while the watch was
				// disconnected: what happened meanwhile is lost, so list.
				return true, errRelist
			}
			if err := wr.Err(); err != nil {
				return progressed, err
			}
			progressed = true
			if h := wr.Header; h != nil && v.moved(h.Revision, h.ClusterId) {
				return true, errRelist
			}
			if wr.IsProgressNotify() || wr.Created || len(wr.Events) == 0 {
				continue
			}
			s.t.Reads.Add(1)
			for _, ev := range wr.Events {
				if v.apply(ev) {
					return true, errRelist
				}
			}
			if h := wr.Header; h != nil {
				v.rev = h.Revision
			} else {
				v.rev = wr.Events[len(wr.Events)-1].Kv.ModRevision
			}
			v.publish()
		}
	}
}

// moved reports whether a response with this revision and cluster ID
// comes from a cluster that went back or was replaced, and marks the next
// update as a Reset if so. A zero cluster ID (a proxy that does not fill
// it) is not compared.
func (v *view) moved(rev int64, cluster uint64) bool {
	if !v.started || rev >= v.rev && (cluster == 0 || v.cluster == 0 || cluster == v.cluster) {
		return false
	}
	v.reset = true
	return true
}

// list reads every key of the service at one revision.
func (v *view) list(ctx context.Context) error {
	s := v.s
	members := make(map[string]registry.Entry)
	full := false
	end := clientv3.GetPrefixRangeEnd(s.prefix)
	key := s.prefix
	var rev int64
	var cluster uint64
	read := 0
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(int64(min(s.cfg.PageSize, s.cfg.MaxKeys-read)))}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		resp, err := s.cfg.Client.Get(rctx, key, opts...)
		cancel()
		if err != nil {
			return fmt.Errorf("etcdreg: list %s: %w", s.prefix, err)
		}
		if rev == 0 {
			rev, cluster = resp.Header.Revision, resp.Header.ClusterId
		}
		for _, kv := range resp.Kvs {
			read++
			if e, ok := v.entry(kv); ok {
				if len(members) == wire.MaxMembers {
					full = true
					s.t.Dropped.Add(1)
					continue
				}
				members[e.Key] = e
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		if read >= s.cfg.MaxKeys {
			// The rest is not read at all; count it once.
			s.t.Dropped.Add(uint64(max(resp.Count-int64(len(resp.Kvs)), 0)))
			full = true
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	s.t.Reads.Add(1)
	v.moved(rev, cluster)
	v.started = true
	v.rev, v.cluster = rev, cluster
	v.members, v.full = members, full
	return nil
}

// check asks etcd for its revision and cluster ID, cheaply, and asks for a
// list if the cluster went back or was replaced.
func (v *view) check(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, v.s.cfg.RequestTimeout)
	defer cancel()
	resp, err := v.s.cfg.Client.Get(rctx, v.s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		// The watch is still up; a failed check is counted, not fatal.
		v.s.t.Error(fmt.Errorf("etcdreg: revision check: %w", err))
		return nil
	}
	if v.moved(resp.Header.Revision, resp.Header.ClusterId) {
		return errRelist
	}
	return nil
}

// entry vets one key-value; ok is false for a key to leave out.
func (v *view) entry(kv interface {
	GetKey() []byte
	GetValue() []byte
}) (registry.Entry, bool) {
	s := v.s
	key := kv.GetKey()
	if len(key) > MaxKeyLen {
		v.skip(string(key[:64]), fmt.Errorf("%w: key is %d bytes, limit %d", registry.ErrBadEntry, len(key), MaxKeyLen))
		return registry.Entry{}, false
	}
	e, err := ParseValue(string(key), kv.GetValue())
	if err != nil {
		v.skip(string(key), err)
		return registry.Entry{}, false
	}
	if !registry.Serving(e) {
		s.t.Excluded.Add(1)
		return registry.Entry{}, false
	}
	return e, true
}

func (v *view) skip(key string, err error) {
	v.s.t.Skipped.Add(1)
	if f := v.s.cfg.OnSkip; f != nil {
		f(key, err)
	}
}

// apply applies one watch event; relist reports that a key was dropped
// for lack of room earlier and room was just made, so only a list can say
// which key belongs in.
func (v *view) apply(ev *clientv3.Event) (relist bool) {
	key := string(ev.Kv.Key)
	_, had := v.members[key]
	delete(v.members, key)
	if ev.Type == clientv3.EventTypePut {
		if e, ok := v.entry(ev.Kv); ok {
			if len(v.members) == wire.MaxMembers {
				v.full = true
				v.s.t.Dropped.Add(1)
			} else {
				v.members[key] = e
			}
		}
	}
	_, has := v.members[key]
	return v.full && had && !has
}

// publish emits the current view if it changed or must be a Reset.
func (v *view) publish() {
	es := make([]registry.Entry, 0, len(v.members))
	for _, e := range v.members {
		es = append(es, e)
	}
	m, dropped := registry.Build(uint64(v.rev), es)
	v.s.t.Dropped.Add(uint64(dropped))
	if !v.reset && registry.Equal(m, v.last) {
		return
	}
	u := registry.Update{Members: m, Reset: v.reset}
	v.reset = false
	v.last = m
	v.s.t.Emitted(u)
	v.emit(u)
}
