package gossip

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/smartclient/smartclient/wire"
)

func fastTimers(c *memberlist.Config) {
	c.ProbeInterval = 50 * time.Millisecond
	c.ProbeTimeout = 25 * time.Millisecond
	c.GossipInterval = 10 * time.Millisecond
	c.SuspicionMult = 2
	c.TCPTimeout = 200 * time.Millisecond
	c.PushPullInterval = 300 * time.Millisecond // anti-entropy repairs lost UDP gossip
}

func start(t *testing.T, i int, load func() wire.Load) *Node {
	t.Helper()
	n, err := Start(Config{
		Service: "svc", URL: fmt.Sprintf("http://127.0.0.1:%d/", 8000+i), Zone: fmt.Sprintf("z%d", i%2),
		Loopback: true, Load: load, LoadInterval: 50 * time.Millisecond, Tune: fastTimers,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	return n
}

// waitFor polls cond on a ticker until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	deadline := time.After(5 * time.Second)
	for !cond() {
		select {
		case <-tk.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func urls(m wire.Members) string {
	var s []string
	for _, mb := range m.Members {
		s = append(s, mb.URL)
	}
	return strings.Join(s, ",")
}

func stateOf(n *Node, url string) (State, bool) {
	for _, v := range n.Views() {
		if v.URL == url {
			return v.State, true
		}
	}
	return 0, false
}

func TestCluster(t *testing.T) {
	load := func() wire.Load { return wire.Load{InFlight: 3, Capacity: 10, Util: 0.3} }
	nodes := []*Node{start(t, 0, load), start(t, 1, load), start(t, 2, nil), start(t, 3, nil)}
	for _, n := range nodes[1:] {
		if _, err := n.Join([]string{nodes[0].Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	all := "http://127.0.0.1:8000/,http://127.0.0.1:8001/,http://127.0.0.1:8002/,http://127.0.0.1:8003/"
	seen := map[*Node]uint64{}
	// checkEpochs asserts each node's epoch never goes backwards.
	checkEpochs := func() {
		for _, n := range nodes {
			e := n.Members().Epoch
			if e < seen[n] {
				t.Fatalf("epoch went back: %d < %d", e, seen[n])
			}
			seen[n] = e
		}
	}
	converged := func(live []*Node, want string) func() bool {
		return func() bool {
			checkEpochs()
			for _, n := range live {
				if urls(n.Members()) != want {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "all see all", converged(nodes, all))
	if got := nodes[3].Members().Members[0].Zone; got != "z0" {
		t.Errorf("zone = %q", got)
	}
	waitFor(t, "load gossiped", func() bool {
		for _, v := range nodes[3].Views() {
			if v.URL == "http://127.0.0.1:8001/" && v.Load.InFlight == 3 && v.Load.Capacity == 10 {
				return true
			}
		}
		return false
	})
	maxEpoch := func(ns []*Node) uint64 {
		var m uint64
		for _, n := range ns {
			m = max(m, n.Members().Epoch)
		}
		return m
	}
	// Every view change must give every node an epoch above all epochs
	// published before it.
	before := maxEpoch(nodes)
	nodes[3].SetDraining(true)
	noDrain := "http://127.0.0.1:8000/,http://127.0.0.1:8001/,http://127.0.0.1:8002/"
	waitFor(t, "drain visible", converged(nodes, noDrain))
	waitFor(t, "drain state", func() bool { s, _ := stateOf(nodes[0], "http://127.0.0.1:8003/"); return s == StateDraining })
	for _, n := range nodes {
		if n.Members().Epoch <= before {
			t.Errorf("epoch %d not above %d after drain", n.Members().Epoch, before)
		}
	}

	before = maxEpoch(nodes)
	if err := nodes[3].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	nodes[3].Shutdown()
	// Left vs dead is best effort (see Node.Leave); disappearing is not.
	waitFor(t, "left", func() bool {
		s, ok := stateOf(nodes[0], "http://127.0.0.1:8003/")
		return ok && (s == StateLeft || s == StateDead)
	})

	before = maxEpoch(nodes[:3])
	nodes[2].Shutdown() // no goodbye: must be detected as failed
	live := nodes[:2]
	waitFor(t, "failure detected", converged(live, "http://127.0.0.1:8000/,http://127.0.0.1:8001/"))
	waitFor(t, "dead state", func() bool { s, _ := stateOf(nodes[0], "http://127.0.0.1:8002/"); return s == StateDead })
	for _, n := range live {
		if n.Members().Epoch <= before {
			t.Errorf("epoch %d not above %d after failure", n.Members().Epoch, before)
		}
	}
	if m, ok := nodes[0].MembersFunc()(); !ok || len(m.Members) != 2 {
		t.Errorf("MembersFunc = %v %v", m, ok)
	}
	for _, n := range nodes {
		n.Shutdown()
	}
	buf := make([]byte, 1<<20)
	if s := string(buf[:runtime.Stack(buf, true)]); strings.Contains(s, "gossip.(*Node).loop") {
		t.Errorf("loop goroutine left behind:\n%s", s)
	}
}

// rawDelegate is a peer that gossips whatever metadata it is given.
type rawDelegate struct{ meta []byte }

func (d rawDelegate) NodeMeta(int) []byte           { return d.meta }
func (rawDelegate) NotifyMsg([]byte)                {}
func (rawDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (rawDelegate) LocalState(bool) []byte          { return nil }
func (rawDelegate) MergeRemoteState([]byte, bool)   {}

func TestBadPeers(t *testing.T) {
	n := start(t, 0, nil)
	absurd := append([]byte{1, 0, 3, 's', 'v', 'c', 10}, "http://x/a"...)
	absurd = append(append(absurd, 0), "v=1;t=5;q=-1;u=NaN"...)
	foreign := appendMeta(nil, meta{Service: "other", URL: "http://x/", Load: wire.Load{TimeMillis: 1}})
	for i, m := range [][]byte{[]byte("garbage"), absurd, foreign, {1, 0, 200}} {
		c := memberlist.DefaultLocalConfig()
		fastTimers(c)
		c.Name = fmt.Sprintf("bad%d", i)
		c.BindAddr, c.BindPort = "127.0.0.1", 0
		c.Delegate = rawDelegate{m}
		c.Logger = n.cfg.Logger
		c.LogOutput = nil
		l, err := memberlist.Create(withQuietLog(c))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Shutdown() })
		if _, err := l.Join([]string{n.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "bad peers counted", func() bool {
		s := n.Stats()
		return s.BadMeta >= 2 && s.BadLoad >= 1 && s.Foreign >= 1
	})
	if got := urls(n.Members()); got != "http://127.0.0.1:8000/" {
		t.Errorf("members = %q, want only self", got)
	}
	if len(n.Views()) != 1 {
		t.Errorf("views = %v", n.Views())
	}
}

func withQuietLog(c *memberlist.Config) *memberlist.Config {
	c.LogOutput = nil
	c.Logger = nil
	c.LogOutput = discard{}
	return c
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestMetaRoundTripAndRejects(t *testing.T) {
	good := meta{Service: "svc", URL: "http://h:1/p", Zone: "eu", Leaving: true,
		Load: wire.Load{TimeMillis: 7, InFlight: 2, Util: 0.5, State: wire.StateDraining, Epoch: 9}}
	got, err := parseMeta(appendMeta(nil, good))
	if err != nil || got != good {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	enc := appendMeta(nil, good)
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errMetaMalformed},
		{"version", append([]byte{2}, enc[1:]...), errMetaMalformed},
		{"flags", append([]byte{1, 0x80}, enc[2:]...), errMetaMalformed},
		{"overrun", []byte{1, 0, 50, 'a'}, errMetaMalformed},
		{"oversized", make([]byte, memberlist.MetaMaxSize+1), errMetaTooLarge},
		{"relative url", appendMeta(nil, meta{Service: "s", URL: "/x", Load: good.Load}), errMetaMalformed},
		{"zone separator", appendMeta(nil, meta{Service: "s", URL: "http://h/", Zone: "a;b", Load: good.Load}), errMetaMalformed},
		{"no load", enc[:len(enc)-len(wire.AppendLoad(nil, good.Load))], wire.ErrMalformed},
		{"absurd load", append(enc[:len(enc)-len(wire.AppendLoad(nil, good.Load))], "v=1;t=1;u=1e300"...), wire.ErrOutOfRange},
	}
	for _, tt := range tests {
		if _, err := parseMeta(tt.b); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}
