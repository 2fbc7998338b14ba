// Package watch is the eager, push form of the paper's load and membership
// updates: a member (or an agent beside it) serves a long-lived
// server-sent-events stream, and a client watching it learns of membership
// changes and load within one network round trip instead of at its next
// request (piggy-backing) or next polling round.
//
// Protocol (text/event-stream, one stream per client, GET only):
//
//	id: 5f3a9c-42
//	event: members
//	data: v=1;e=17;m=http://10.0.0.1:8080;m=http://10.0.0.2:8080
//
//	id: 5f3a9c-43
//	event: load
//	data: http://10.0.0.2:8080 v=1;t=1732770000123;q=3;c=4;u=0.75
//
//	:
//
// A members event carries a wire members record. A load event carries a
// wire load record, preceded by the reporting member's URL and one space
// when it is about a named member; with no URL it is the serving member's
// own load. An id is the hub's incarnation (random per run), '-', and a
// sequence number that increases by one per published event. A client
// reconnecting with Last-Event-ID gets every event after that id if the hub
// still holds them; otherwise (first connection, id too old, or an id of
// another incarnation, e.g. before the member restarted) it first gets a
// snapshot: the latest members record and the
// latest load of every member, all under the newest id. A line holding
// only ":" is a heartbeat, sent every Heartbeat so both ends notice a dead
// connection.
package watch

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/wire"
)

// Path is the conventional path at which a member serves its Hub.
const Path = "/_smartclient/watch"

// HubConfig tunes a Hub. The zero value of each field means the default
// beside it.
type HubConfig struct {
	// Heartbeat is the time between heartbeat comments on an idle stream.
	// Default 15s. A Watcher's IdleTimeout should be a few heartbeats.
	Heartbeat time.Duration
	// History is how many recent events the hub keeps for clients resuming
	// with Last-Event-ID. Default 1024.
	History int
	// ClientBuffer is how many events may wait for one client. A client
	// that falls further behind is disconnected (and counted), so a slow
	// reader never blocks Publish; it reconnects and resumes. Default 256.
	ClientBuffer int
	// MaxClients bounds concurrent streams; more are refused with 503.
	// Default 10000.
	MaxClients int
	// WriteTimeout bounds one write to a client, so a client that stopped
	// reading releases its handler. Default 10s.
	WriteTimeout time.Duration
	// Clock schedules heartbeats. Default clock.Real.
	Clock clock.Clock
	// Incarnation names this run of the hub in event ids, so that ids from
	// before a restart are not mistaken for this run's. Up to 32 letters
	// and digits. Default: 16 random hex digits.
	Incarnation string
}

func (c HubConfig) withDefaults() HubConfig {
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.History <= 0 {
		c.History = 1024
	}
	if c.ClientBuffer <= 0 {
		c.ClientBuffer = 256
	}
	if c.MaxClients <= 0 {
		c.MaxClients = 10000
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if !validIncarnation(c.Incarnation) {
		c.Incarnation = strconv.FormatUint(rand.Uint64()|1<<63, 16)
	}
	return c
}

// HubStats counts what a Hub did.
type HubStats struct {
	Clients   int    // streams open now
	Events    uint64 // events published
	Served    uint64 // streams accepted
	Refused   uint64 // streams refused: MaxClients reached
	Slow      uint64 // streams cut because the client fell ClientBuffer events behind
	Snapshots uint64 // streams started with a snapshot rather than a resumption
	Resumed   uint64 // streams resumed from Last-Event-ID
}

// Hub publishes members and load events to every watching client. It is
// an http.Handler; mount it at Path. Publish methods never block on clients.
type Hub struct {
	cfg HubConfig

	mu      sync.Mutex
	lastID  uint64
	ring    []frame // the last History events, oldest first
	members []byte  // latest members record, nil if none
	loads   map[string][]byte
	clients map[*client]struct{}
	closed  bool

	events, served, refused, slow, snapshots, resumed atomic.Uint64
}

// frame is one published event, framed once for every client.
type frame struct {
	id  uint64
	buf []byte
}

type client struct {
	ch     chan []byte
	kicked chan struct{} // closed when the hub drops the client
}

// NewHub returns a hub with no events.
func NewHub(cfg HubConfig) *Hub {
	return &Hub{
		cfg:     cfg.withDefaults(),
		loads:   make(map[string][]byte),
		clients: make(map[*client]struct{}),
	}
}

// PublishMembers sends a members record to every client. The record is not
// validated: a bad one is refused by the receivers, as with piggy-backing.
func (h *Hub) PublishMembers(m wire.Members) {
	rec := wire.AppendMembers(nil, m)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.members = rec
	h.publishLocked("members", rec)
}

// PublishLoad sends a load record to every client: the serving member's
// own when url is empty, else that of the member with that URL. The hub
// keeps the latest load of at most wire.MaxMembers URLs for snapshots.
func (h *Hub) PublishLoad(url string, l wire.Load) {
	rec := loadData(nil, url, l)
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.loads[url]; ok || len(h.loads) < wire.MaxMembers {
		h.loads[url] = rec
	}
	h.publishLocked("load", rec)
}

// loadData appends a load event's data: "[URL ]RECORD".
func loadData(dst []byte, url string, l wire.Load) []byte {
	if url != "" {
		dst = append(dst, url...)
		dst = append(dst, ' ')
	}
	return wire.AppendLoad(dst, l)
}

func validIncarnation(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// parseID returns the sequence number of an id of this incarnation.
func (h *Hub) parseID(id string) (uint64, bool) {
	inc, seq, ok := strings.Cut(id, "-")
	if !ok || inc != h.cfg.Incarnation {
		return 0, false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	return n, err == nil
}

// appendEvent appends one SSE event. Data never contains a newline: wire
// records are single lines and AppendMembers replaces control bytes.
func appendEvent(dst []byte, inc string, id uint64, kind string, data []byte) []byte {
	dst = append(dst, "id: "...)
	dst = append(dst, inc...)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, "\nevent: "...)
	dst = append(dst, kind...)
	dst = append(dst, "\ndata: "...)
	dst = append(dst, data...)
	return append(dst, "\n\n"...)
}

func (h *Hub) publishLocked(kind string, data []byte) {
	h.lastID++
	f := frame{id: h.lastID, buf: appendEvent(nil, h.cfg.Incarnation, h.lastID, kind, data)}
	if len(h.ring) == h.cfg.History {
		copy(h.ring, h.ring[1:])
		h.ring[len(h.ring)-1] = f
	} else {
		h.ring = append(h.ring, f)
	}
	h.events.Add(1)
	for c := range h.clients {
		select {
		case c.ch <- f.buf:
		default:
			// Behind by ClientBuffer events: cut it rather than wait. It
			// resumes from its last id, from the ring or a snapshot.
			h.dropLocked(c)
			h.slow.Add(1)
		}
	}
}

func (h *Hub) dropLocked(c *client) {
	delete(h.clients, c)
	close(c.kicked)
}

// backlogLocked returns what a client resuming after id (or, if !has,
// connecting afresh) must be sent before live events.
func (h *Hub) backlogLocked(id uint64, has bool) (out []byte, resumed bool) {
	if has && id <= h.lastID {
		oldest := h.lastID + 1 - uint64(len(h.ring)) // id of ring[0]
		if id+1 >= oldest {
			for _, f := range h.ring[id+1-oldest:] {
				out = append(out, f.buf...)
			}
			return out, true
		}
	}
	// A snapshot stands for every event up to lastID; it carries that id
	// so the client resumes after it.
	if h.members != nil {
		out = appendEvent(out, h.cfg.Incarnation, h.lastID, "members", h.members)
	}
	for _, rec := range h.loads {
		out = appendEvent(out, h.cfg.Incarnation, h.lastID, "load", rec)
	}
	return out, false
}

// Close ends every stream and refuses new ones. Publishing after Close is
// harmless.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.clients {
		h.dropLocked(c)
	}
}

// Stats returns the hub's counters.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	n := len(h.clients)
	h.mu.Unlock()
	return HubStats{
		Clients: n, Events: h.events.Load(), Served: h.served.Load(), Refused: h.refused.Load(),
		Slow: h.slow.Load(), Snapshots: h.snapshots.Load(), Resumed: h.resumed.Load(),
	}
}

// ServeHTTP serves one client's stream until the client goes away, falls
// too far behind, or the hub is closed.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "watch: GET only", http.StatusMethodNotAllowed)
		return
	}
	// An id that is not this incarnation's is treated as no id: the
	// client gets a snapshot.
	id, has := h.parseID(r.Header.Get("Last-Event-ID"))

	c := &client{ch: make(chan []byte, h.cfg.ClientBuffer), kicked: make(chan struct{})}
	h.mu.Lock()
	if h.closed || len(h.clients) >= h.cfg.MaxClients {
		h.mu.Unlock()
		h.refused.Add(1)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "watch: too many watchers", http.StatusServiceUnavailable)
		return
	}
	// The backlog and the registration happen under one lock, so every
	// event is either in the backlog or on the channel, never both.
	backlog, resumed := h.backlogLocked(id, has)
	h.clients[c] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if _, ok := h.clients[c]; ok {
			h.dropLocked(c)
		}
		h.mu.Unlock()
	}()
	h.served.Add(1)
	if resumed {
		h.resumed.Add(1)
	} else {
		h.snapshots.Add(1)
	}

	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // let reverse proxies pass events at once
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	beat := make(chan struct{}, 1)
	arm := func() clock.Timer {
		return h.cfg.Clock.AfterFunc(h.cfg.Heartbeat, func() {
			select {
			case beat <- struct{}{}:
			default:
			}
		})
	}
	t := arm()
	defer func() { t.Stop() }()
	// Even an empty backlog is flushed: it sends the header, so the client
	// knows it is connected. The heartbeat is armed first, so that once
	// a client has its backlog the heartbeat period has started.
	if !write(backlog) {
		return
	}
	for {
		select {
		case b := <-c.ch:
			if !write(b) {
				return
			}
		case <-beat:
			t = arm() // before the write, so the period does not drift
			if !write([]byte(":\n")) {
				return
			}
		case <-c.kicked:
			return
		case <-r.Context().Done():
			return
		}
	}
}
