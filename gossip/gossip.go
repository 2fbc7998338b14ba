package gossip

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/smartclient/smartclient/wire"
)

// Config configures a gossip node. The zero value of each field means the
// documented default; Service is required, and URL unless Observer is set.
type Config struct {
	// Name is the node's unique name in the cluster. Default: URL; for an
	// observer, "observer-" and 16 random hex digits.
	Name string
	// Service names the service; nodes of another service seen in the same
	// cluster are ignored and counted. Required.
	Service string
	// URL is this member's own service URL, handed to clients. Required,
	// absolute, at most 255 bytes; empty for an observer.
	URL string
	// Observer makes the node follow the cluster without being a member of
	// the service: it gossips, is probed and sees the members like any node
	// (Members, Views, Watch), but advertises observer metadata (the service
	// name only) that every node leaves out of its Members and Views and
	// counts in Stats.Observers. URL, Zone and Load must be empty; Zone and
	// SetDraining mean nothing for it. A client-side proxy uses it. Default
	// false. See observer.go for why this is metadata and not a separate
	// protocol.
	Observer bool
	// Zone is this member's zone for locality policies. Optional.
	Zone string
	// Load, if set, is called every LoadInterval for the load to advertise.
	// Invalid values are replaced by an empty record and counted.
	Load func() wire.Load
	// Loopback selects memberlist.DefaultLocalConfig (fast timers, for tests
	// and one host); otherwise DefaultLANConfig.
	Loopback bool
	// BindAddr is the gossip address. Default: 127.0.0.1 with Loopback,
	// else 0.0.0.0.
	BindAddr string
	// BindPort is the gossip port; 0 lets the OS choose (see Node.Addr).
	// Commands should pass DefaultPort.
	BindPort int
	// AdvertiseAddr and AdvertisePort, if set, are what peers dial.
	AdvertiseAddr string
	AdvertisePort int
	// LoadInterval bounds how often load is re-advertised. Default: 2s
	// (200ms with Loopback).
	LoadInterval time.Duration
	// DeadRetention is how long dead and left members stay in Views.
	// Default: 1 minute.
	DeadRetention time.Duration
	// Logger receives memberlist's log. Default: discarded.
	Logger *log.Logger
	// Now is the wall clock used for epochs and load times. Default: time.Now.
	Now func() time.Time
	// Tune, if set, may adjust the memberlist configuration last (tests
	// shrink timers with it).
	Tune func(*memberlist.Config)
}

// DefaultPort is memberlist's conventional gossip port.
const DefaultPort = 7946

// Validate reports a configuration error.
func (c *Config) Validate() error {
	if err := checkText("Service", c.Service, maxServiceLen, false); err != nil {
		return err
	}
	if c.Observer {
		if c.URL != "" || c.Zone != "" || c.Load != nil {
			return errors.New("gossip: an Observer has no URL, Zone or Load")
		}
	} else if err := checkURL(c.URL); err != nil {
		return fmt.Errorf("gossip: URL: %v", err)
	}
	if err := checkText("Zone", c.Zone, wire.MaxZoneLen, true); err != nil {
		return err
	}
	if c.BindPort < 0 || c.BindPort > 65535 || c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return errors.New("gossip: ports must be 0..65535")
	}
	if c.LoadInterval < 0 || c.DeadRetention < 0 {
		return errors.New("gossip: intervals must be >= 0")
	}
	return nil
}

// State is a member's state as seen by this node.
type State uint8

const (
	StateAlive State = iota
	StateDraining
	StateDead
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateDraining:
		return "draining"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// MemberView is one member as this node sees it.
type MemberView struct {
	Name  string
	URL   string
	Zone  string
	Load  wire.Load
	State State
}

// Stats counts what the node saw. Bad* counters are peers' metadata
// rejected (the peer is then invisible).
type Stats struct {
	Joins, Updates, Leaves uint64
	BadMeta                uint64 // malformed metadata
	Oversized              uint64 // metadata above memberlist.MetaMaxSize
	BadLoad                uint64 // load record out of range (wire.ErrOutOfRange)
	Foreign                uint64 // metadata of another service
	Observers              uint64 // observers of this service (not members, not errors)
	BadLocalLoad           uint64 // our own Load func returned an invalid load
	EpochBumps             uint64
	MetaUpdates            uint64 // UpdateNode calls
	UpdateErrors           uint64
}

type peer struct {
	m     meta
	state State
	since time.Time
}

type snapshot struct {
	members wire.Members
	views   []MemberView
	next    chan struct{} // closed when a snapshot with another members list replaces this one
}

// Node is a running gossip member.
type Node struct {
	cfg  Config
	list *memberlist.Memberlist
	addr string // host:port peers join, fixed at Start

	mu      sync.Mutex
	peers   map[string]*peer
	maxPeer uint64 // largest epoch seen in a peer's metadata

	metaMu sync.Mutex
	meta   []byte

	draining atomic.Bool
	leaving  atomic.Bool
	snap     atomic.Pointer[snapshot]

	kick     chan struct{}
	syncReq  chan chan struct{} // Join's request for a refresh; the loop closes the channel after it
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	// loop-owned
	epoch    uint64
	lastView string

	joins, updates, leaves, badMeta, oversized, badLoad, foreign, observers atomic.Uint64
	badLocal, bumps, metaUpdates, updateErrs                                atomic.Uint64
}

// Start creates the memberlist node and starts advertising. Join it to a
// cluster with Join.
func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = cfg.URL
		if cfg.Observer {
			name, err := observerName()
			if err != nil {
				return nil, err
			}
			cfg.Name = name
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LoadInterval == 0 {
		cfg.LoadInterval = 2 * time.Second
		if cfg.Loopback {
			cfg.LoadInterval = 200 * time.Millisecond
		}
	}
	if cfg.DeadRetention == 0 {
		cfg.DeadRetention = time.Minute
	}
	n := &Node{
		cfg:     cfg,
		peers:   make(map[string]*peer),
		kick:    make(chan struct{}, 1),
		syncReq: make(chan chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	var mc *memberlist.Config
	if cfg.Loopback {
		mc = memberlist.DefaultLocalConfig()
		mc.BindAddr = "127.0.0.1"
	} else {
		mc = memberlist.DefaultLANConfig()
		mc.BindAddr = "0.0.0.0"
	}
	if cfg.BindAddr != "" {
		mc.BindAddr = cfg.BindAddr
	}
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	mc.Name = cfg.Name
	mc.Delegate = delegate{n}
	mc.Events = events{n}
	mc.Logger = cfg.Logger
	if mc.Logger == nil {
		mc.Logger = log.New(io.Discard, "", 0)
	}
	if cfg.Tune != nil {
		cfg.Tune(mc)
	}
	n.epoch = uint64(cfg.Now().UnixMicro())
	n.setMeta(n.buildMeta())
	list, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	n.list = list
	// memberlist's LocalNode returns a node that memberlist rewrites
	// whenever our loop updates the metadata (UpdateNode); read the address
	// once, before the loop starts.
	ln := list.LocalNode()
	n.addr = net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
	n.refresh()
	go n.loop()
	return n, nil
}

// Addr is the node's gossip address (host:port), for peers' Join.
func (n *Node) Addr() string { return n.addr }

// Join contacts the given peers (host:port) and returns how many answered.
// One reachable peer is enough. When Join returns, Members and Watch
// reflect the state the answering peers sent (memberlist merges it, and
// reports every node in it, before its Join returns).
func (n *Node) Join(peers []string) (int, error) {
	k, err := n.list.Join(peers)
	done := make(chan struct{})
	select {
	case n.syncReq <- done:
		<-done
	case <-n.done: // stopped: there is no view to bring up to date
	}
	return k, err
}

// SetDraining marks this member as draining (or not) and gossips it at once.
// An observer is never listed, so for it SetDraining changes nothing.
func (n *Node) SetDraining(on bool) {
	n.draining.Store(on)
	n.poke()
}

// Members is the clients' view: alive, non-draining members of the service,
// sorted by URL, with the epoch of this node's view.
func (n *Node) Members() wire.Members {
	s := n.snap.Load()
	return wire.Members{Epoch: s.members.Epoch, Members: append([]wire.Member(nil), s.members.Members...)}
}

// MembersFunc adapts Members to smarthttp.Middleware.Members.
func (n *Node) MembersFunc() func() (wire.Members, bool) {
	return func() (wire.Members, bool) {
		m := n.Members()
		return m, len(m.Members) > 0
	}
}

// Views lists every known member of the service, including draining ones
// and, for DeadRetention, dead and left ones; sorted by name.
func (n *Node) Views() []MemberView {
	return append([]MemberView(nil), n.snap.Load().views...)
}

// Stats returns the counters.
func (n *Node) Stats() Stats {
	return Stats{
		Joins: n.joins.Load(), Updates: n.updates.Load(), Leaves: n.leaves.Load(),
		BadMeta: n.badMeta.Load(), Oversized: n.oversized.Load(), BadLoad: n.badLoad.Load(),
		Foreign: n.foreign.Load(), Observers: n.observers.Load(), BadLocalLoad: n.badLocal.Load(), EpochBumps: n.bumps.Load(),
		MetaUpdates: n.metaUpdates.Load(), UpdateErrors: n.updateErrs.Load(),
	}
}

// Leave tells the cluster this member is leaving, waiting up to timeout for
// the message to go out. Call Shutdown afterwards. It first gossips metadata
// with the leaving flag so peers can report StateLeft rather than StateDead;
// that is best effort, because memberlist's own leave message can overtake
// (and invalidate) the metadata update, and then peers report StateDead.
// Either way the member leaves every peer's Members.
func (n *Node) Leave(timeout time.Duration) error {
	n.stopLoop()
	n.leaving.Store(true)
	if !n.cfg.Observer { // nobody lists an observer: nothing to announce
		n.setMeta(n.buildMeta())
		n.metaUpdates.Add(1)
		if err := n.list.UpdateNode(timeout); err != nil {
			n.updateErrs.Add(1)
		}
	}
	return n.list.Leave(timeout)
}

// Shutdown stops the node without a goodbye; peers will detect a failure.
// It is safe to call more than once and after Leave.
func (n *Node) Shutdown() error {
	n.stopLoop()
	return n.list.Shutdown()
}

func (n *Node) stopLoop() {
	n.stopOnce.Do(func() { close(n.stop) })
	<-n.done
}

func (n *Node) poke() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// loop is the node's one goroutine: it recomputes the view after events,
// bumps the epoch on a view change and re-advertises metadata.
func (n *Node) loop() {
	defer close(n.done)
	t := time.NewTicker(n.cfg.LoadInterval)
	defer t.Stop()
	for {
		periodic := false
		var synced chan struct{}
		select {
		case <-n.stop:
			return
		case <-n.kick:
		case synced = <-n.syncReq:
		case <-t.C:
			periodic = true
		}
		changed := n.refresh()
		if synced != nil {
			close(synced)
		}
		if n.cfg.Observer {
			continue // its metadata never changes and carries no epoch
		}
		if changed || periodic && n.cfg.Load != nil || n.metaStale() {
			n.setMeta(n.buildMeta())
			n.metaUpdates.Add(1)
			if err := n.list.UpdateNode(n.cfg.LoadInterval); err != nil {
				n.updateErrs.Add(1)
			}
		}
	}
}

// metaStale reports whether the advertised drain state differs from the
// wanted one.
func (n *Node) metaStale() bool {
	n.metaMu.Lock()
	b := n.meta
	n.metaMu.Unlock()
	m, err := parseMeta(b)
	return err != nil || (m.Load.State == wire.StateDraining) != n.draining.Load()
}

func (n *Node) buildMeta() []byte {
	if n.cfg.Observer {
		return appendMeta(nil, meta{Service: n.cfg.Service, Observer: true})
	}
	now := n.cfg.Now()
	var l wire.Load
	if n.cfg.Load != nil {
		l = n.cfg.Load()
		l.State = wire.StateOK
		l.Epoch = 0
		if l.TimeMillis <= 0 {
			l.TimeMillis = now.UnixMilli()
		}
		if l.Validate() != nil {
			n.badLocal.Add(1)
			l = wire.Load{}
		}
	}
	if l.TimeMillis <= 0 {
		l.TimeMillis = now.UnixMilli()
	}
	if n.draining.Load() || n.leaving.Load() {
		l.State = wire.StateDraining
	}
	n.mu.Lock()
	l.Epoch = n.epoch
	n.mu.Unlock()
	return appendMeta(nil, meta{Service: n.cfg.Service, URL: n.cfg.URL, Zone: n.cfg.Zone, Load: l, Leaving: n.leaving.Load()})
}

func (n *Node) setMeta(b []byte) {
	n.metaMu.Lock()
	n.meta = b
	n.metaMu.Unlock()
}

// refresh rebuilds the snapshot from the peer table, bumping the epoch if
// the clients' view changed. It reports whether it bumped.
func (n *Node) refresh() bool {
	now := n.cfg.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	self := n.peers[n.cfg.Name]
	if self != nil {
		// Our own drain state is known before it has gossiped round.
		self.state = StateAlive
		if n.draining.Load() {
			self.state = StateDraining
		}
	}
	views := make([]MemberView, 0, len(n.peers))
	var ms []wire.Member
	for name, p := range n.peers {
		if (p.state == StateDead || p.state == StateLeft) && now.Sub(p.since) > n.cfg.DeadRetention {
			delete(n.peers, name)
			continue
		}
		views = append(views, MemberView{Name: name, URL: p.m.URL, Zone: p.m.Zone, Load: p.m.Load, State: p.state})
		if p.state == StateAlive {
			ms = append(ms, wire.Member{URL: p.m.URL, Zone: p.m.Zone})
		}
	}
	sort.Slice(views, func(i, j int) bool { return views[i].Name < views[j].Name })
	sort.Slice(ms, func(i, j int) bool { return ms[i].URL < ms[j].URL })
	var key []byte
	for _, m := range ms {
		key = append(key, m.URL...)
		key = append(key, 0)
		key = append(key, m.Zone...)
		key = append(key, 0)
	}
	changed := string(key) != n.lastView
	if changed {
		n.lastView = string(key)
		n.epoch = max(n.epoch+1, uint64(now.UnixMicro()), n.maxPeer+1)
		n.bumps.Add(1)
	}
	old := n.snap.Load()
	next := make(chan struct{})
	if old != nil && !changed {
		next = old.next
	}
	n.snap.Store(&snapshot{members: wire.Members{Epoch: n.epoch, Members: ms}, views: views, next: next})
	if old != nil && changed {
		close(old.next) // after the Store, so a woken Watch sees the new view
	}
	return changed
}

// observe records a memberlist event. It runs on memberlist's goroutines
// with memberlist's node lock held, so it must not call into memberlist.
func (n *Node) observe(nd *memberlist.Node, kind int) {
	switch kind {
	case evJoin:
		n.joins.Add(1)
	case evUpdate:
		n.updates.Add(1)
	case evLeave:
		n.leaves.Add(1)
	}
	defer n.poke()
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.cfg.Now()
	if kind == evLeave {
		if p := n.peers[nd.Name]; p != nil {
			p.state = StateDead
			if p.m.Leaving {
				p.state = StateLeft
			}
			p.since = now
		}
		return
	}
	m, err := parseMeta(nd.Meta)
	switch {
	case err == nil && m.Service != n.cfg.Service:
		n.foreign.Add(1)
	case err == nil && m.Observer:
		if nd.Name != n.cfg.Name {
			n.observers.Add(1)
		}
	case errors.Is(err, errMetaTooLarge), errors.Is(err, wire.ErrTooLarge):
		n.oversized.Add(1)
	case errors.Is(err, wire.ErrOutOfRange):
		n.badLoad.Add(1)
	case err != nil:
		n.badMeta.Add(1)
	}
	if err != nil || m.Service != n.cfg.Service || m.Observer {
		// Not a member: never keep a peer that turned bad or became an observer.
		delete(n.peers, nd.Name)
		return
	}
	st := StateAlive
	if m.Load.State == wire.StateDraining {
		st = StateDraining
	}
	if nd.Name != n.cfg.Name && m.Load.Epoch > n.maxPeer {
		n.maxPeer = m.Load.Epoch
	}
	n.peers[nd.Name] = &peer{m: m, state: st, since: now}
}

const (
	evJoin = iota
	evUpdate
	evLeave
)

type events struct{ n *Node }

func (e events) NotifyJoin(nd *memberlist.Node)   { e.n.observe(nd, evJoin) }
func (e events) NotifyUpdate(nd *memberlist.Node) { e.n.observe(nd, evUpdate) }
func (e events) NotifyLeave(nd *memberlist.Node)  { e.n.observe(nd, evLeave) }

type delegate struct{ n *Node }

func (d delegate) NodeMeta(limit int) []byte {
	d.n.metaMu.Lock()
	defer d.n.metaMu.Unlock()
	if len(d.n.meta) > limit {
		return nil // cannot happen: Validate bounds every field
	}
	return append([]byte(nil), d.n.meta...)
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}
