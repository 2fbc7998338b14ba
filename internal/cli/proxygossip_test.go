package cli

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/smartclient/smartclient/gossip"
	"github.com/smartclient/smartclient/wire"
)

// fastGossip shrinks memberlist's timers so that failures and changes
// spread within a test's patience.
func fastGossip(c *memberlist.Config) {
	c.ProbeInterval = 50 * time.Millisecond
	c.ProbeTimeout = 25 * time.Millisecond
	c.GossipInterval = 10 * time.Millisecond
	c.SuspicionMult = 2
	c.TCPTimeout = 200 * time.Millisecond
	c.PushPullInterval = 300 * time.Millisecond
}

// gossipMember starts a gossip node advertising m's URL for service web on
// a loopback port (port 0: any), and joins it through peers.
func gossipMember(t *testing.T, m *testMember, port int, peers ...string) *gossip.Node {
	t.Helper()
	n, err := gossip.Start(gossip.Config{Service: "web", URL: m.URL, Loopback: true, BindPort: port, Tune: fastGossip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	if len(peers) > 0 {
		if _, err := n.Join(peers); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// waitUntil polls cond every 20ms until it holds, failing after 10s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tk.C:
		case <-deadline:
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// proxyMembers is the director's member list, from the stats page.
func proxyMembers(t *testing.T, base string) []string {
	var out []string
	for _, m := range fetchStats(t, base).Members {
		out = append(out, m.URL)
	}
	slices.Sort(out)
	return out
}

func sorted(urls ...string) []string {
	s := slices.Clone(urls)
	slices.Sort(s)
	return s
}

// servedBy sends n GETs through the proxy and returns who served them.
func servedBy(t *testing.T, base string, n int) map[string]int {
	t.Helper()
	by := map[string]int{}
	for i := range n {
		code, body, h := get(t, base+"/x")
		if code != 200 {
			t.Fatalf("request %d: status %d: %s", i, code, body)
		}
		by[h.Get("Member")]++
	}
	return by
}

// onlyMembers fails unless every node lists exactly want: the proxy's
// observer never appears, and is counted as an observer.
func onlyMembers(t *testing.T, want []string, nodes ...*gossip.Node) {
	t.Helper()
	for _, n := range nodes {
		var got []string
		for _, m := range n.Members().Members {
			got = append(got, m.URL)
		}
		if !slices.Equal(got, want) {
			t.Errorf("a member lists %v, want %v", got, want)
		}
		for _, v := range n.Views() {
			if v.URL == "" || strings.HasPrefix(v.Name, "observer-") {
				t.Errorf("a member's views list the observer: %+v", v)
			}
		}
		if s := n.Stats(); s.BadMeta != 0 || s.Foreign != 0 {
			t.Errorf("a member counted the observer as bad or foreign: %+v", s)
		}
	}
}

// TestProxyFollowsGossip runs `smartclient proxy --gossip-join` against
// real gossip members: it serves through the members it learns, stops
// sending to one that drains or leaves, starts on one that joins, and never
// appears in the members' lists.
func TestProxyFollowsGossip(t *testing.T) {
	a, b, c := newMember(t, "a", nil), newMember(t, "b", nil), newMember(t, "c", nil)
	na := gossipMember(t, a, 0)
	nb := gossipMember(t, b, 0, na.Addr())
	ab := sorted(a.URL, b.URL)
	waitUntil(t, "a and b see each other", func() bool {
		return len(na.Members().Members) == 2 && len(nb.Members().Members) == 2
	})

	p := startProxy(t, "--gossip-join", na.Addr(), "--gossip-service", "service://web", "--policy", "round-robin")
	out := p.stdout.String()
	for _, want := range []string{"member: " + a.URL + "\n", "member: " + b.URL + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("start-up output lacks %q:\n%s", want, out)
		}
	}
	if by := servedBy(t, p.url, 10); by["a"] != 5 || by["b"] != 5 {
		t.Errorf("served by %v, want 5 each (round robin)", by)
	}
	waitUntil(t, "members count the observer", func() bool { return na.Stats().Observers > 0 && nb.Stats().Observers > 0 })
	onlyMembers(t, ab, na, nb)

	// b drains: the proxy stops sending to it.
	nb.SetDraining(true)
	waitUntil(t, "the proxy drops draining b", func() bool { return slices.Equal(proxyMembers(t, p.url), []string{a.URL}) })
	if by := servedBy(t, p.url, 6); by["a"] != 6 {
		t.Errorf("after b drained, served by %v, want a only", by)
	}

	// c joins (through b): the proxy starts sending to it.
	nc := gossipMember(t, c, 0, nb.Addr())
	waitUntil(t, "the proxy adds c", func() bool { return slices.Equal(proxyMembers(t, p.url), sorted(a.URL, c.URL)) })
	if by := servedBy(t, p.url, 10); by["a"] != 5 || by["c"] != 5 {
		t.Errorf("after c joined, served by %v, want a and c 5 each", by)
	}

	// a leaves, b is back: the proxy follows.
	nb.SetDraining(false)
	if err := na.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	na.Shutdown()
	bc := sorted(b.URL, c.URL)
	waitUntil(t, "the proxy drops a and takes b back", func() bool { return slices.Equal(proxyMembers(t, p.url), bc) })
	if by := servedBy(t, p.url, 10); by["b"] != 5 || by["c"] != 5 {
		t.Errorf("after a left, served by %v, want b and c 5 each", by)
	}
	waitUntil(t, "b and c agree", func() bool { return len(nb.Members().Members) == 2 && len(nc.Members().Members) == 2 })
	onlyMembers(t, bc, nb, nc)

	// The proxy leaves the cluster on shutdown.
	if code := p.stop(t); code != 0 {
		t.Fatalf("proxy exit status %d: %s", code, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "gossip: left the cluster") {
		t.Errorf("no leave in the log:\n%s", p.stderr)
	}
	onlyMembers(t, bc, nb, nc)
}

// reservePort finds a loopback port free for TCP and UDP and leaves it
// free: a gossip peer that is not there yet.
func reservePort(t *testing.T) int {
	t.Helper()
	for range 10 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		tl.Close()
		if err == nil {
			ul.Close()
			return port
		}
	}
	t.Fatal("no loopback port free for both TCP and UDP")
	return 0
}

// With no peer answering, the proxy still starts, says so in its log and
// answers 503 (stats still work), without failing.
func TestProxyGossipUnreachablePeer(t *testing.T) {
	peer := "127.0.0.1:" + strconv.Itoa(reservePort(t))
	p := startProxy(t, "--gossip-join", peer, "--gossip-service", "web")
	if log := p.stderr.String(); !strings.Contains(log, "gossip: no peer answered") || !strings.Contains(log, "no member of \"web\" known yet") {
		t.Errorf("log does not say no peer answered:\n%s", log)
	}
	resp, err := client.Get(p.url + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" {
		t.Errorf("status %d, Retry-After %q; want 503, 5", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if st := fetchStats(t, p.url); st.Requests != 0 {
		t.Errorf("the director saw %d requests, want none", st.Requests)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit status %d", code)
	}
}

// The proxy keeps trying its peers in the background, and serves once the
// cluster appears.
func TestProxyGossipJoinsLater(t *testing.T) {
	port := reservePort(t)
	cfg, err := parseProxyFlags([]string{"--gossip-join", "127.0.0.1:" + strconv.Itoa(port), "--gossip-service", "web"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gossip.JoinRetry = 50 * time.Millisecond
	logw := &syncBuffer{}
	px, err := NewProxy(context.Background(), cfg, logw)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- px.Serve(ctx, ln) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + ln.Addr().String()
	if code, body, _ := get(t, base+"/x"); code != http.StatusServiceUnavailable || !strings.Contains(body, "127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("before the cluster: status %d %q, want 503 naming the peer", code, body)
	}

	a := newMember(t, "a", nil)
	na := gossipMember(t, a, port)
	waitUntil(t, "the proxy serves through a", func() bool {
		code, _, h := get(t, base+"/x")
		return code == 200 && h.Get("Member") == "a"
	})
	if !strings.Contains(logw.String(), "gossip: joined the cluster") {
		t.Errorf("log lacks the join:\n%s", logw)
	}
	waitUntil(t, "a counts the observer", func() bool { return na.Stats().Observers > 0 })
	onlyMembers(t, []string{a.URL}, na)
}

func TestProxyGossipFlags(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	j := []string{"proxy", "--gossip-join", "127.0.0.1:7946"}
	with := func(more ...string) []string { return append(slices.Clone(j), more...) }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no service", j, "--gossip-join needs --gossip-service NAME"},
		{"bad service", with("--gossip-service", "Web!"), `--gossip-service "Web!": want NAME or service://NAME`},
		{"fingerprint", with("--gossip-service", "service://web~"+strings.Repeat("a", 52)), "without a fingerprint"},
		{"registry", with("--gossip-service", "web", "--registry", "etcd://a:1/web"), "--gossip-join and --registry cannot be combined"},
		{"member", with("--gossip-service", "web", "--member", "http://127.0.0.1:1"), "--gossip-join and --member cannot be combined"},
		{"service", with("--gossip-service", "web", "--service", "service://web"), "--gossip-join and --service cannot be combined"},
		{"learn", with("--gossip-service", "web", "--learn-members"), "--gossip-join and --learn-members cannot be combined"},
		{"no port", []string{"proxy", "--gossip-service", "web", "--gossip-join", "h"}, `--gossip-join "h": want HOST:PORT`},
		{"comma list", []string{"proxy", "--gossip-service", "web", "--gossip-join", "a:1,b:2"}, "repeat --gossip-join for more peers"},
		{"port 0", []string{"proxy", "--gossip-service", "web", "--gossip-join", "h:0"}, "a port in 1..65535"},
		{"bind name", with("--gossip-service", "web", "--gossip-bind", "localhost:0"), `--gossip-bind "localhost:0": want IP:PORT`},
		{"bind port", with("--gossip-service", "web", "--gossip-bind", "127.0.0.1:99999"), `--gossip-bind "127.0.0.1:99999": want IP:PORT`},
		{"bind alone", []string{"proxy", "--member", "http://127.0.0.1:1", "--gossip-bind", "127.0.0.1:0"}, "--gossip-bind needs --gossip-join"},
		{"service alone", []string{"proxy", "--member", "http://127.0.0.1:1", "--gossip-service", "web"}, "--gossip-service needs --gossip-join"},
		{"bind busy", with("--gossip-service", "web", "--gossip-bind", busy.Addr().String(), "--listen", "127.0.0.1:0"), "--gossip-bind " + busy.Addr().String() + ": gossip:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(tc.args...)
			if code != ExitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, ExitUsage, tc.want)
			}
		})
	}

	cfg, err := parseProxyFlags([]string{"--gossip-join", "10.0.0.1:7946", "--gossip-join", "127.0.0.1:1", "--gossip-service", "service://web"})
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.Gossip; g.Service != "web" || !slices.Equal(g.Join, []string{"10.0.0.1:7946", "127.0.0.1:1"}) || g.BindAddr != "0.0.0.0" || g.BindPort != 0 {
		t.Errorf("spec = %+v", g)
	}
	for _, tc := range []struct {
		peers []string
		want  string
	}{
		{[]string{"127.0.0.1:1", "localhost:2", "[::1]:3"}, "127.0.0.1:0"},
		{[]string{"127.0.0.1:1", "10.0.0.1:2"}, "0.0.0.0:0"},
		{[]string{"gossip.example:7946"}, "0.0.0.0:0"},
	} {
		if got := DefaultGossipBind(tc.peers); got != tc.want {
			t.Errorf("DefaultGossipBind(%v) = %s, want %s", tc.peers, got, tc.want)
		}
	}
}

// vetGossip leaves out what the wire format cannot carry, and keeps order.
func TestVetGossip(t *testing.T) {
	m, skipped, dropped := vetGossip(wire.Members{Epoch: 9, Members: []wire.Member{
		{URL: "http://b:1"}, {URL: "HTTP://x:1"}, {URL: "http://a:1", Zone: "z"},
	}})
	want := []wire.Member{{URL: "http://a:1", Zone: "z"}, {URL: "http://b:1"}}
	if m.Epoch != 9 || !slices.Equal(m.Members, want) || len(skipped) != 1 || dropped != 0 {
		t.Errorf("vetGossip = %+v, %v, %d", m, skipped, dropped)
	}
}
