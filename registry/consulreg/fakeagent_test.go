package consulreg

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// fakeAgent serves the one Consul HTTP endpoint the source uses,
// GET /v1/health/service/NAME, with the semantics Consul documents for it
// (there is no Consul server on this machine to test against):
//
//   - index=N makes the query block until the service's index exceeds N,
//     or until wait (default 5m, at most 10m) plus up to wait/16 of
//     jitter has passed; index=0 or absent answers at once.
//   - X-Consul-Index is the service's index: the raft index of the last
//     write that touched an instance of the service or its checks, or, for
//     a service never written, the store's index; never below 1.
//   - passing=1 drops instances with any check not "passing".
//   - tag=T keeps instances with tag T.
//   - A snapshot restore replaces the state, sets the index back to the
//     snapshot's, and releases every blocked query at once ("abandon"),
//     which then answers with the lower index.
type fakeAgent struct {
	srv *httptest.Server

	mu        sync.Mutex
	index     uint64            // the store's raft index
	svcIndex  map[string]uint64 // per-service index
	instances map[string]instance
	changed   chan struct{} // closed and replaced on every write
	abandon   chan struct{} // closed and replaced on a restore

	// Knobs for misbehaving agents.
	ignorePassing atomic.Bool  // answer failing instances despite passing=1
	zeroIndex     atomic.Bool  // send X-Consul-Index: 0 (an old Consul bug)
	padding       atomic.Int64 // bytes of meta to add to each instance
	hang          atomic.Bool  // accept queries and never answer

	queries   atomic.Int64
	zeroQs    atomic.Int64  // queries without index (or index=0)
	lastIndex atomic.Uint64 // index= of the last query
	blocked   atomic.Int64  // queries blocking now
}

type instance struct {
	node      api.Node
	svc       api.AgentService
	checks    api.HealthChecks
	serviceIx uint64
}

func newFakeAgent(t *testing.T) *fakeAgent {
	f := &fakeAgent{
		index:     1,
		svcIndex:  make(map[string]uint64),
		instances: make(map[string]instance),
		changed:   make(chan struct{}),
		abandon:   make(chan struct{}),
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAgent) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// write applies fn as one raft write touching service.
func (f *fakeAgent) write(service string, fn func()) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index++
	fn()
	f.svcIndex[service] = f.index
	close(f.changed)
	f.changed = make(chan struct{})
	return f.index
}

// register adds or replaces an instance with one service check of status.
func (f *fakeAgent) register(node api.Node, svc api.AgentService, status string) uint64 {
	svc.Weights = cmpOr(svc.Weights, api.AgentWeights{Passing: 1, Warning: 1})
	return f.write(svc.Service, func() {
		f.instances[node.Node+"/"+svc.ID] = instance{
			node: node, svc: svc,
			checks: api.HealthChecks{
				{Node: node.Node, CheckID: "serfHealth", Name: "Serf Health Status", Status: api.HealthPassing},
				{Node: node.Node, CheckID: "service:" + svc.ID, Name: "Service check", Status: status, ServiceID: svc.ID, ServiceName: svc.Service},
			},
		}
	})
}

func cmpOr(w, def api.AgentWeights) api.AgentWeights {
	if w == (api.AgentWeights{}) {
		return def
	}
	return w
}

// setStatus sets the service check of an instance.
func (f *fakeAgent) setStatus(nodeName, id, status string) uint64 {
	f.mu.Lock()
	in := f.instances[nodeName+"/"+id]
	f.mu.Unlock()
	return f.write(in.svc.Service, func() {
		checks := slices.Clone(in.checks)
		checks[1] = &api.HealthCheck{Node: nodeName, CheckID: "service:" + id, Status: status, ServiceID: id, ServiceName: in.svc.Service}
		in.checks = checks
		f.instances[nodeName+"/"+id] = in
	})
}

func (f *fakeAgent) deregister(nodeName, id string) uint64 {
	f.mu.Lock()
	in := f.instances[nodeName+"/"+id]
	f.mu.Unlock()
	return f.write(in.svc.Service, func() { delete(f.instances, nodeName+"/"+id) })
}

// snapshot is a copy of the state, as `consul snapshot save` takes.
type snapshot struct {
	index     uint64
	svcIndex  map[string]uint64
	instances map[string]instance
}

func (f *fakeAgent) snapshot() snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := snapshot{index: f.index, svcIndex: make(map[string]uint64), instances: make(map[string]instance)}
	for k, v := range f.svcIndex {
		s.svcIndex[k] = v
	}
	for k, v := range f.instances {
		s.instances[k] = v
	}
	return s
}

// restore installs s, as `consul snapshot restore` does: indexes go back.
func (f *fakeAgent) restore(s snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index, f.svcIndex, f.instances = s.index, s.svcIndex, s.instances
	close(f.abandon)
	f.abandon = make(chan struct{})
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeAgent) serve(w http.ResponseWriter, r *http.Request) {
	const prefix = "/v1/health/service/"
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, prefix) {
		http.NotFound(w, r)
		return
	}
	name, err := url.PathUnescape(strings.TrimPrefix(r.URL.Path, prefix))
	if err != nil || name == "" {
		http.Error(w, "Missing service name", http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	var minIndex uint64
	if s := q.Get("index"); s != "" {
		if minIndex, err = strconv.ParseUint(s, 10, 64); err != nil {
			http.Error(w, "Invalid index", http.StatusBadRequest)
			return
		}
	}
	wait := 5 * time.Minute
	if s := q.Get("wait"); s != "" {
		if wait, err = time.ParseDuration(s); err != nil {
			http.Error(w, "Invalid wait time", http.StatusBadRequest)
			return
		}
	}
	wait = min(wait, 10*time.Minute)
	wait += rand.N(wait/16 + 1)
	_, passing := q["passing"]
	if v := q.Get("passing"); v == "0" || v == "false" {
		passing = false
	}
	tags := q["tag"]
	if f.hang.Load() {
		f.blocked.Add(1)
		<-r.Context().Done()
		f.blocked.Add(-1)
		return
	}
	f.queries.Add(1)
	f.lastIndex.Store(minIndex)
	if minIndex == 0 {
		f.zeroQs.Add(1)
	}

	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for {
		f.mu.Lock()
		idx, ok := f.svcIndex[name]
		if !ok {
			idx = f.index
		}
		idx = max(idx, 1)
		changed, abandon := f.changed, f.abandon
		body := f.answer(name, passing, tags)
		f.mu.Unlock()
		if minIndex == 0 || idx > minIndex {
			f.reply(w, idx, body)
			return
		}
		f.blocked.Add(1)
		select {
		case <-changed:
			f.blocked.Add(-1)
			continue
		case <-abandon:
			f.blocked.Add(-1)
			// The state store was replaced: answer at once with it.
			f.mu.Lock()
			idx, ok := f.svcIndex[name]
			if !ok {
				idx = f.index
			}
			body := f.answer(name, passing, tags)
			f.mu.Unlock()
			f.reply(w, max(idx, 1), body)
			return
		case <-timeout.C:
			f.blocked.Add(-1)
			f.reply(w, idx, body)
			return
		case <-r.Context().Done():
			f.blocked.Add(-1)
			return
		}
	}
}

// answer lists the service's instances; f.mu is held.
func (f *fakeAgent) answer(name string, passing bool, tags []string) []*api.ServiceEntry {
	out := []*api.ServiceEntry{}
	keys := make([]string, 0, len(f.instances))
	for k := range f.instances {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	pad := f.padding.Load()
	for _, k := range keys {
		in := f.instances[k]
		if in.svc.Service != name {
			continue
		}
		if passing && !f.ignorePassing.Load() && slices.ContainsFunc(in.checks, func(c *api.HealthCheck) bool { return c.Status != api.HealthPassing }) {
			continue
		}
		if slices.ContainsFunc(tags, func(t string) bool { return !slices.Contains(in.svc.Tags, t) }) {
			continue // every tag asked for must be there
		}
		node, svc := in.node, in.svc
		if pad > 0 {
			svc.Meta = map[string]string{"pad": strings.Repeat("x", int(pad))}
			for k, v := range in.svc.Meta {
				svc.Meta[k] = v
			}
		}
		out = append(out, &api.ServiceEntry{Node: &node, Service: &svc, Checks: in.checks})
	}
	return out
}

func (f *fakeAgent) reply(w http.ResponseWriter, idx uint64, body []*api.ServiceEntry) {
	if f.zeroIndex.Load() {
		idx = 0
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Consul-Index", strconv.FormatUint(idx, 10))
	h.Set("X-Consul-KnownLeader", "true")
	h.Set("X-Consul-LastContact", "0")
	json.NewEncoder(w).Encode(body)
}
