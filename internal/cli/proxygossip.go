package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/cert"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/gossip"
	"github.com/smartclient/smartclient/registry"
	"github.com/smartclient/smartclient/wire"
)

// GossipSpec is how the proxy follows a gossip cluster (--gossip-join): it
// joins as an observer (gossip.Config.Observer), so no member ever lists
// it, and feeds the members it sees to its director through
// registry.Attach, vetted and ordered by epoch as a registry's lists are.
type GossipSpec struct {
	// Service is the gossip service name the members advertise (the NAME
	// of the agents' --service service://NAME). Required.
	Service string
	// Join lists peers (host:port) to join through; one answer is enough.
	// Required.
	Join []string
	// BindAddr and BindPort are where the observer gossips; members must
	// reach it there. Default: DefaultGossipBind(Join).
	BindAddr string
	BindPort int
	// JoinRetry is the pause between join attempts while the observer
	// knows no serving member (none answered yet, or the whole cluster
	// went away). Default 5s.
	JoinRetry time.Duration
	// FirstWait bounds how long NewProxy waits for the first member list
	// after a join succeeded; the proxy then serves anyway, answering 503
	// until a list arrives. Default 5s.
	FirstWait time.Duration
	// LeaveTimeout bounds the goodbye to the cluster on shutdown. Default 1s.
	LeaveTimeout time.Duration
	// Tune, if set, adjusts the gossip configuration last (tests shrink
	// memberlist's timers with it).
	Tune func(*gossip.Config)
}

// awaitingGossip is the director's one member until gossip names a real
// one: a director cannot be empty. The gate answers every request itself
// meanwhile, so nothing is ever sent to it; .invalid never resolves
// (RFC 6761) in case something did.
const awaitingGossip = "http://awaiting-gossip.invalid"

// DefaultGossipBind is the proxy's gossip address when --gossip-bind is not
// given: 127.0.0.1:0 when every peer is a loopback address or localhost
// (the cluster is on this host), otherwise 0.0.0.0:0 (every interface, and
// memberlist advertises the host's private address), because the members
// must reach the observer to gossip with it. Port 0 is any free port.
func DefaultGossipBind(peers []string) string {
	for _, p := range peers {
		h, _, _ := net.SplitHostPort(p)
		if ip, err := netip.ParseAddr(h); h != "localhost" && (err != nil || !ip.IsLoopback()) {
			return "0.0.0.0:0"
		}
	}
	return "127.0.0.1:0"
}

// gossipFlags are the proxy's --gossip-* flags.
//
// The service name has its own flag instead of coming from --service
// service://NAME, as it does for the agent: on the proxy --service means
// "bootstrap from the service's signed certificate" (roots, trust, pins,
// cache), and the certificate's versions and gossip's epochs are two
// membership authorities whose epochs cannot be compared. --gossip-service
// takes NAME or service://NAME, so the agents' value can be pasted.
type gossipFlags struct {
	join    memberList // repeatable, like --member and the agent's --join
	bind    string
	service string
}

func (g *gossipFlags) register(fs *flag.FlagSet) {
	fs.Var(&g.join, "gossip-join", "follow a gossip cluster as an observer: peer HOST:PORT to join (repeat for more; one answer is enough)")
	fs.StringVar(&g.bind, "gossip-bind", "", "with --gossip-join: IP:PORT to gossip on, which members must reach (default 127.0.0.1:0 if every peer is on loopback, else 0.0.0.0:0; port 0: any free port)")
	fs.StringVar(&g.service, "gossip-service", "", "with --gossip-join: the service to follow, NAME or service://NAME as its agents' --service")
}

// spec checks the gossip flags and their conflicts with the other
// membership flags of fs. It returns nil, nil without --gossip-join.
func (g *gossipFlags) spec(fs *flag.FlagSet) (*GossipSpec, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if len(g.join) == 0 {
		for _, f := range []string{"gossip-bind", "gossip-service"} {
			if set[f] {
				return nil, usagef("--%s needs --gossip-join HOST:PORT", f)
			}
		}
		return nil, nil
	}
	// One membership authority: a registry's index, a certificate's
	// version and gossip's epoch do not order each other's lists.
	for _, f := range []string{"registry", "service", "member", "learn-members"} {
		if set[f] {
			return nil, usagef("--gossip-join and --%s cannot be combined: the proxy takes its members from one source (--member, --service, --registry or --gossip-join)", f)
		}
	}
	spec := &GossipSpec{Join: g.join}
	for _, p := range g.join {
		h, port, err := net.SplitHostPort(p)
		if n, perr := strconv.Atoi(port); err != nil || h == "" || perr != nil || n < 1 || n > 65535 {
			return nil, usagef("--gossip-join %q: want HOST:PORT with a port in 1..65535 (repeat --gossip-join for more peers)", p)
		}
	}
	switch name := g.service; {
	case name == "":
		return nil, usagef("--gossip-join needs --gossip-service NAME: the service whose members to follow")
	case strings.HasPrefix(name, cert.Scheme):
		n, err := cert.ParseName(name)
		if err != nil || n.Fingerprint != "" {
			return nil, usagef("--gossip-service %q: want NAME or service://NAME, without a fingerprint", name)
		}
		spec.Service = n.Service
	case !cert.ValidServiceName(name):
		return nil, usagef("--gossip-service %q: want NAME or service://NAME, NAME as [a-z0-9][a-z0-9.-]{0,62}", name)
	default:
		spec.Service = name
	}
	bind := g.bind
	if bind == "" {
		bind = DefaultGossipBind(g.join)
	}
	h, port, err := net.SplitHostPort(bind)
	n, perr := strconv.Atoi(port)
	if _, iperr := netip.ParseAddr(h); err != nil || perr != nil || n < 0 || n > 65535 || iperr != nil {
		return nil, usagef("--gossip-bind %q: want IP:PORT, e.g. 0.0.0.0:%d (port 0: any free port)", bind, gossip.DefaultPort)
	}
	spec.BindAddr, spec.BindPort = h, n
	return spec, nil
}

// gossipFollower runs the proxy's observer node, its director, the feed
// between them and the background join.
type gossipFollower struct {
	spec GossipSpec
	node *gossip.Node
	dir  *director.Director
	feed *registry.Feed
	// initial is the member list the director started with; empty when it
	// started with awaitingGossip.
	initial []balance.Member
	log     *log.Logger

	firstTry   chan struct{} // closed after the first join attempt
	joinedOnce atomic.Bool
	ready      atomic.Bool // the director holds a gossiped list

	stop      chan struct{}
	stopFeed  context.CancelFunc
	feedDone  chan struct{}
	joinDone  chan struct{}
	closeOnce sync.Once
}

// followGossip starts an observer node, joins the cluster in the
// background, waits (up to spec.FirstWait, or until ctx ends) for a first
// member list, and builds the director from it, or from awaitingGossip if
// none came. A join that fails is logged and retried, not returned: the
// proxy starts anyway and answers 503 until it knows a member. It returns
// an error only if the node cannot start (a bad or busy --gossip-bind).
func followGossip(ctx context.Context, spec GossipSpec, dcfg director.Config, logw io.Writer) (*gossipFollower, error) {
	if spec.JoinRetry <= 0 {
		spec.JoinRetry = 5 * time.Second
	}
	if spec.FirstWait <= 0 {
		spec.FirstWait = 5 * time.Second
	}
	if spec.LeaveTimeout <= 0 {
		spec.LeaveTimeout = time.Second
	}
	if spec.BindAddr == "" {
		h, p, _ := net.SplitHostPort(DefaultGossipBind(spec.Join))
		spec.BindAddr = h
		spec.BindPort, _ = strconv.Atoi(p)
	}
	ip, _ := netip.ParseAddr(spec.BindAddr)
	gc := gossip.Config{
		Service: spec.Service, Observer: true,
		BindAddr: spec.BindAddr, BindPort: spec.BindPort, Loopback: ip.IsLoopback(),
	}
	if spec.Tune != nil {
		spec.Tune(&gc)
	}
	node, err := gossip.Start(gc)
	if err != nil {
		return nil, fmt.Errorf("--gossip-bind %s: %w", net.JoinHostPort(spec.BindAddr, strconv.Itoa(spec.BindPort)), err)
	}
	f := &gossipFollower{
		spec:     spec,
		node:     node,
		log:      log.New(logw, "smartclient proxy: ", log.LstdFlags),
		firstTry: make(chan struct{}),
		stop:     make(chan struct{}),
		feedDone: make(chan struct{}),
		joinDone: make(chan struct{}),
	}
	f.log.Printf("gossip: following service %q as an observer on %s, joining through %s", spec.Service, node.Addr(), strings.Join(spec.Join, ", "))
	go f.joinLoop()

	first := f.waitFirst(ctx)
	members := registry.BalanceMembers(first)
	if len(members) > 0 {
		dcfg.Epoch = first.Epoch
		f.initial = members
		f.ready.Store(true)
	} else {
		members = []balance.Member{{URL: awaitingGossip}}
		f.log.Printf("gossip: no member of %q known yet; answering %d until one is", spec.Service, http.StatusServiceUnavailable)
	}
	if f.dir, err = director.New(dcfg, members); err != nil {
		close(f.stop)
		node.Shutdown()
		<-f.joinDone
		return nil, err
	}
	f.feed = registry.Attach(f.dir, gossipSource{node: node, log: f.log})
	feedCtx, stopFeed := context.WithCancel(context.Background())
	f.stopFeed = stopFeed
	go func() {
		defer close(f.feedDone)
		f.feed.Run(feedCtx)
	}()
	return f, nil
}

// waitFirst waits for the first join attempt and, if it reached the
// cluster, for a non-empty (vetted) member list, up to FirstWait or until
// ctx ends. It returns an empty list if none came. gossip.Node.Join
// returns only once the node's view holds what the peers sent, so a
// joined proxy starts with the whole list, not the first member of it.
func (f *gossipFollower) waitFirst(ctx context.Context) wire.Members {
	deadline := time.NewTimer(f.spec.FirstWait)
	defer deadline.Stop()
	select {
	case <-f.firstTry:
		if !f.joinedOnce.Load() {
			return wire.Members{}
		}
	case <-deadline.C:
		return wire.Members{}
	case <-ctx.Done():
		return wire.Members{}
	}
	for {
		view, changed := f.node.Watch()
		if m, _, _ := vetGossip(view); len(m.Members) > 0 {
			return m
		}
		select {
		case <-changed:
		case <-deadline.C:
			return wire.Members{}
		case <-ctx.Done():
			return wire.Members{}
		}
	}
}

// joinLoop joins at once, then again every JoinRetry while the node knows
// no serving member, so that a proxy started before its cluster, or one
// that outlived every member it knew, finds the cluster through the peers
// it was given. It logs when the outcome changes, not on every attempt.
func (f *gossipFollower) joinLoop() {
	defer close(f.joinDone)
	last := ""
	try := func() {
		n, err := f.node.Join(f.spec.Join)
		select {
		case <-f.stop:
			return // closing: the outcome no longer matters
		default:
		}
		outcome := "joined"
		if n == 0 {
			outcome = "no peer answered"
			if err != nil {
				outcome += ": " + strings.Join(strings.Fields(err.Error()), " ")
			}
		} else {
			f.joinedOnce.Store(true)
		}
		if outcome != last {
			if n > 0 {
				f.log.Printf("gossip: joined the cluster through %d of %d peers", n, len(f.spec.Join))
			} else {
				f.log.Printf("gossip: %s; retrying every %v", outcome, f.spec.JoinRetry)
			}
		}
		last = outcome
	}
	try()
	close(f.firstTry)
	for {
		view, changed := f.node.Watch()
		if len(view.Members) > 0 {
			select {
			case <-f.stop:
				return
			case <-changed:
				continue
			}
		}
		t := time.NewTimer(f.spec.JoinRetry)
		select {
		case <-f.stop:
			t.Stop()
			return
		case <-changed:
			t.Stop()
		case <-t.C:
			try()
		}
	}
}

// wrap returns h behind a gate that answers 503 until the director holds a
// gossiped member list, so nothing goes to awaitingGossip. On a nil
// follower (no gossip) it returns h itself.
func (f *gossipFollower) wrap(h http.Handler) http.Handler {
	if f == nil {
		return h
	}
	retry := strconv.Itoa(int(math.Ceil(f.spec.JoinRetry.Seconds())))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.ready.Load() {
			if f.feed.Learned.Load() == 0 {
				w.Header().Set("Retry-After", retry)
				http.Error(w, fmt.Sprintf("smartclient proxy: no member of %q known yet: gossip has not reached the cluster through %s",
					f.spec.Service, strings.Join(f.spec.Join, ", ")), http.StatusServiceUnavailable)
				return
			}
			f.ready.Store(true)
		}
		h.ServeHTTP(w, r)
	})
}

// close stops the feed and the join loop, leaves the cluster (so members
// drop the observer at once instead of suspecting it), and closes the
// director. A join attempt still dialling a silent peer (memberlist's
// TCPTimeout, 10s on a LAN) is not waited for beyond LeaveTimeout: it
// fails once the node is shut down. Safe to call more than once.
func (f *gossipFollower) close() {
	f.closeOnce.Do(func() {
		close(f.stop)
		f.stopFeed()
		<-f.feedDone
		t := time.NewTimer(f.spec.LeaveTimeout)
		select {
		case <-f.joinDone:
		case <-t.C:
		}
		t.Stop()
		if err := f.node.Leave(f.spec.LeaveTimeout); err != nil {
			f.log.Printf("gossip: leaving: %v", err)
		}
		f.node.Shutdown()
		f.dir.Close()
		f.log.Printf("gossip: left the cluster")
	})
}

// gossipSource is a registry.Source over an observer node's view: Watch
// emits the view at once (with Reset, as the Source contract asks of a
// first update) and again whenever gossip changes it. The node's epoch
// only grows, so the director orders the lists as it orders a registry's.
type gossipSource struct {
	node *gossip.Node
	log  *log.Logger
}

func (s gossipSource) Watch(ctx context.Context, emit func(registry.Update)) error {
	reset := true
	var last wire.Members
	for {
		view, changed := s.node.Watch()
		m, skipped, dropped := vetGossip(view)
		if len(skipped) > 0 || dropped > 0 {
			s.log.Printf("gossip: left out %d member(s) that fail the member checks (first: %v) and %d over wire's bounds", len(skipped), firstErr(skipped), dropped)
		}
		if reset || !registry.Equal(m, last) {
			emit(registry.Update{Members: m, Reset: reset})
			reset, last = false, m
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

func firstErr(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}

// vetGossip puts a gossiped view through the checks every registry entry
// goes through (registry.Check, then registry.Build): gossip checks
// metadata against its own limits, which are not exactly the wire's.
// skipped holds the errors of the members left out; dropped counts valid
// members over the bounds.
func vetGossip(view wire.Members) (m wire.Members, skipped []error, dropped int) {
	entries := make([]registry.Entry, 0, len(view.Members))
	for _, mb := range view.Members {
		e := registry.Entry{Key: mb.URL, URL: mb.URL, Weight: mb.Weight, Zone: mb.Zone}
		if err := registry.Check(e); err != nil {
			skipped = append(skipped, err)
			continue
		}
		entries = append(entries, e)
	}
	m, dropped = registry.Build(view.Epoch, entries)
	return m, skipped, dropped
}
