package etcdreg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/watch"
)

// Registration is a member's key in etcd, kept alive by a lease. Make it
// with Register.
type Registration struct {
	cli *clientv3.Client
	key string
	url string
	ttl int64 // seconds

	mu     sync.Mutex
	value  string // the JSON Member, written again after a lost lease
	lease  clientv3.LeaseID
	closed bool

	renewals atomic.Uint64
	errs     atomic.Uint64
	cancel   context.CancelFunc
	done     chan struct{}
}

// Register publishes m as a member of service under DefaultPrefix (see
// MemberKey), with a lease of ttl (rounded up to whole seconds, at least
// 1s; etcd may raise it to its own minimum), and keeps the lease alive until
// ctx ends or Close is called.
//
// If the lease is lost anyway — etcd was unreachable for longer than ttl —
// the registration grants a new lease and writes the key again as soon as
// etcd answers, with the latest value given to Update.
//
// When ctx ends the keep-alives stop but the key stays until its lease
// expires, as after a crash; Close removes it at once. Register returns
// an error if the first write fails or m would be refused by a Source.
func Register(ctx context.Context, cli *clientv3.Client, service string, m Member, ttl time.Duration) (*Registration, error) {
	if err := checkName(service); err != nil {
		return nil, err
	}
	return RegisterKey(ctx, cli, MemberKey(DefaultPrefix, service, m.URL), m, ttl)
}

// RegisterKey is Register under a key of the caller's choosing, for
// another prefix or naming scheme.
func RegisterKey(ctx context.Context, cli *clientv3.Client, key string, m Member, ttl time.Duration) (*Registration, error) {
	if cli == nil {
		return nil, errors.New("etcdreg: Register: nil client")
	}
	if len(key) == 0 || len(key) > MaxKeyLen {
		return nil, fmt.Errorf("etcdreg: Register: key of %d bytes, want 1..%d", len(key), MaxKeyLen)
	}
	if ttl <= 0 || ttl > 24*time.Hour {
		return nil, fmt.Errorf("etcdreg: Register: ttl %v: want (0, 24h]", ttl)
	}
	value, err := encode(key, m)
	if err != nil {
		return nil, err
	}
	r := &Registration{
		cli: cli, key: key, url: m.URL, value: value,
		ttl:  int64(math.Ceil(ttl.Seconds())),
		done: make(chan struct{}),
	}
	if err := r.grant(ctx); err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	go r.keepAlive(kctx)
	return r, nil
}

// encode marshals m and checks it the way a Source will parse it, so a
// server learns at once that clients would skip its entry.
func encode(key string, m Member) (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("etcdreg: Register: %w", err)
	}
	if _, err := ParseValue(key, b); err != nil {
		return "", fmt.Errorf("etcdreg: Register: %w", err)
	}
	return string(b), nil
}

// grant takes a new lease and writes the key under it.
func (r *Registration) grant(ctx context.Context) error {
	g, err := r.cli.Grant(ctx, r.ttl)
	if err != nil {
		return fmt.Errorf("etcdreg: grant lease for %s: %w", r.key, err)
	}
	r.mu.Lock()
	value := r.value
	r.mu.Unlock()
	if _, err := r.cli.Put(ctx, r.key, value, clientv3.WithLease(g.ID)); err != nil {
		// Do not leave the fresh lease to expire on its own.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		r.cli.Revoke(rctx, g.ID)
		cancel()
		return fmt.Errorf("etcdreg: write %s: %w", r.key, err)
	}
	r.mu.Lock()
	r.lease = g.ID
	r.mu.Unlock()
	return nil
}

// keepAlive keeps the lease alive, taking a new one when it is lost.
func (r *Registration) keepAlive(ctx context.Context) {
	defer close(r.done)
	failures := 0
	var b watch.Backoff
	for {
		ch, err := r.cli.KeepAlive(ctx, r.Lease())
		if err == nil {
			for range ch {
				failures = 0
			}
		}
		if ctx.Err() != nil {
			return
		}
		// The channel closed with ctx alive: the lease expired or was
		// revoked, or etcd was unreachable for a whole TTL.
		for {
			failures++
			if !sleep(ctx, b.Delay(failures, rand.Float64())) {
				return
			}
			if err := r.grant(ctx); err == nil {
				r.renewals.Add(1)
				break
			}
			r.errs.Add(1)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	done := make(chan struct{})
	t := clock.Real{}.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return true
	case <-ctx.Done():
		t.Stop()
		return false
	}
}

// Key returns the member's key.
func (r *Registration) Key() string { return r.key }

// Lease returns the current lease.
func (r *Registration) Lease() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// Renewals counts the times the lease was lost and the key written again
// under a new one.
func (r *Registration) Renewals() uint64 { return r.renewals.Load() }

// Update writes a new value under the current lease, for example State
// StateDraining before a graceful stop, and keeps it for any later
// re-registration. The URL may not change: it names the key.
func (r *Registration) Update(ctx context.Context, m Member) error {
	if m.URL != r.url {
		return fmt.Errorf("etcdreg: Update: URL %q, registered as %q", clip(m.URL), clip(r.url))
	}
	value, err := encode(r.key, m)
	if err != nil {
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return errors.New("etcdreg: Update after Close")
	}
	r.value = value
	lease := r.lease
	r.mu.Unlock()
	if _, err := r.cli.Put(ctx, r.key, value, clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("etcdreg: write %s: %w", r.key, err)
	}
	return nil
}

// Close stops the keep-alives and revokes the lease, which deletes the key
// at once. It is safe to call more than once.
func (r *Registration) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	<-r.done
	if _, err := r.cli.Revoke(ctx, r.Lease()); err != nil {
		return fmt.Errorf("etcdreg: revoke lease of %s: %w", r.key, err)
	}
	return nil
}
