package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/smartclient/smartclient/bootstrap"
	"github.com/smartclient/smartclient/cache"
	"github.com/smartclient/smartclient/cert"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/resolve"
)

// serviceFlags are the flags that name a service instead of its members:
// --service, --root (repeatable), the trust flags, --cache-dir, --no-cache,
// --grace and --stale. `proxy` and `resolve` share them.
type serviceFlags struct {
	name     string
	roots    []string
	trust    trustFlags
	cacheDir string
	noCache  bool
	grace    time.Duration
	stale    string
}

func (s *serviceFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.name, "service", "", "service://NAME[~FINGERPRINT]: find the members in the service's signed certificate")
	s.registerRest(fs)
}

func (s *serviceFlags) registerRest(fs *flag.FlagSet) {
	fs.Func("root", "where the certificate is published: https://HOST/…, http://…, dns://SERVER/ZONE, file:///DIR or a directory (repeatable)", func(v string) error {
		s.roots = append(s.roots, v)
		return nil
	})
	s.trust.register(fs)
	fs.StringVar(&s.cacheDir, "cache-dir", "", "cache directory (default: the user's cache directory/smartclient)")
	fs.BoolVar(&s.noCache, "no-cache", false, "neither read nor write the on-disk cache")
	fs.DurationVar(&s.grace, "grace", resolve.DefaultGrace, "after the first valid answer, how long to wait for a newer version from slower roots")
	fs.StringVar(&s.stale, "stale", "serve", "expired cached certificate and no root answering: serve (with a warning) or refuse")
}

// config turns the flags into a bootstrap configuration.
func (s *serviceFlags) config() (bootstrap.Config, error) {
	if _, err := cert.ParseName(s.name); err != nil {
		return bootstrap.Config{}, usagef("%v", err)
	}
	roots, err := resolve.ParseRoots(s.roots)
	if err != nil {
		return bootstrap.Config{}, usagef("--root: %v", err)
	}
	trust, err := s.trust.load()
	if err != nil {
		return bootstrap.Config{}, err
	}
	cfg := bootstrap.Config{
		Name: s.name, Roots: roots, Trust: trust,
		CacheDir: s.cacheDir, NoCache: s.noCache, Grace: s.grace,
	}
	switch s.stale {
	case "serve":
		cfg.Stale = bootstrap.ServeStale
	case "refuse":
		cfg.Stale = bootstrap.RefuseStale
	default:
		return cfg, usagef("--stale %q: want serve or refuse", s.stale)
	}
	if s.grace < 0 {
		return cfg, usagef("--grace %v: must be >= 0", s.grace)
	}
	if len(roots) == 0 && s.noCache {
		return cfg, usagef("no --root and --no-cache: nowhere to find the certificate")
	}
	return cfg, nil
}

func (p *Proxy) certificate() (*cert.Certificate, string) {
	return p.boot.Certificate()
}

// runResolve resolves a service name through its roots, as a client would,
// and prints what it found. It uses and updates the cache unless
// --no-cache: a cached version is the floor (no rollback).
func runResolve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("resolve")
	var s serviceFlags
	s.registerRest(fs)
	pos, err := splitArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return helpError{fs: fs, usage: resolveUsage}
	}
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one service://NAME, got %d arguments", len(pos))
	}
	s.name = pos[0]
	cfg, err := s.config()
	if err != nil {
		return err
	}
	name, _ := cert.ParseName(s.name)
	if len(cfg.Roots) == 0 {
		return usagef("no --root: give at least one place the certificate is published")
	}
	ver := &cert.Verifier{Trust: cfg.Trust}
	r := &resolve.Resolver{Roots: cfg.Roots, Verify: ver.VersionFunc(name), Grace: cfg.Grace}
	var store *cache.Store
	if !cfg.NoCache {
		dir, err := cache.Dir(cfg.CacheDir)
		if err != nil {
			return err
		}
		store = &cache.Store{Dir: dir}
		if data, err := store.Get(name.Service, cache.KindCert); err == nil {
			stale := cert.Verifier{Trust: cfg.Trust, AllowExpired: true}
			if c, err := stale.Verify(data, name); err == nil {
				r.MinVersion = c.Version
			}
		}
	}
	res, err := r.Resolve(ctx, name.Service)
	printOutcomes(stdout, res.Outcomes)
	if err != nil {
		return err
	}
	c, err := ver.Verify(res.Data, name)
	if err != nil {
		return err
	}
	if store != nil {
		if err := store.Put(name.Service, cache.KindCert, res.Data); err != nil {
			fmt.Fprintf(stderr, "smartclient resolve: caching: %v\n", err)
		}
	}
	fmt.Fprintf(stdout, "service: %s\nversion: %d\nsource: %s\nexpires: %s\n", c.Service, c.Version, res.Source, c.ExpiresAt.Format(time.RFC3339))
	for _, m := range c.MemberList {
		fmt.Fprintf(stdout, "member: %s\n", m.URL)
	}
	return nil
}

func printOutcomes(w io.Writer, outs []resolve.Outcome) {
	for _, o := range outs {
		switch {
		case o.Err != nil:
			fmt.Fprintf(w, "root %s: %v (%v)\n", o.Root, o.Err, o.Elapsed.Round(time.Millisecond))
		default:
			fmt.Fprintf(w, "root %s: version %d (%v)\n", o.Root, o.Version, o.Elapsed.Round(time.Millisecond))
		}
	}
}

// leaveToCertificate clears the director settings that fs's command line
// did not set (--policy, --max-attempts), so that the service
// certificate's choices apply: the certificate chooses what the command
// line leaves unsaid.
func leaveToCertificate(fs *flag.FlagSet, c *director.Config) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["policy"] {
		c.Policy = ""
	}
	if !set["max-attempts"] {
		c.MaxAttempts = 0
	}
}
