package agent

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/smartclient/smartclient/gossip"
	"github.com/smartclient/smartclient/wire"
)

func fastGossip(c *memberlist.Config) {
	c.ProbeInterval = 50 * time.Millisecond
	c.ProbeTimeout = 25 * time.Millisecond
	c.GossipInterval = 10 * time.Millisecond
	c.SuspicionMult = 2
	c.TCPTimeout = 200 * time.Millisecond
	c.PushPullInterval = 300 * time.Millisecond
}

func gossipConfig() *gossip.Config {
	return &gossip.Config{Loopback: true, LoadInterval: fast, Tune: fastGossip}
}

// getMembers fetches /members and parses it.
func getMembers(t *testing.T, base string) (wire.Members, int) {
	t.Helper()
	resp, err := loadClient.Get(base + MembersPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, wire.MaxMembersLen+1))
	if resp.StatusCode != http.StatusOK {
		return wire.Members{}, resp.StatusCode
	}
	m, err := wire.ParseMembers(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("members %q: %v", b, err)
	}
	if h := resp.Header.Get(wire.MembersHeader); h != strings.TrimSpace(string(b)) {
		t.Errorf("header %q, body %q", h, b)
	}
	return m, resp.StatusCode
}

func memberURLs(m wire.Members) string {
	var s []string
	for _, x := range m.Members {
		s = append(s, x.URL)
	}
	return strings.Join(s, " ")
}

// Two agents gossip: each hands out both members, the load record carries
// the membership epoch, and a member whose target fails leaves the list
// handed to clients.
func TestGossip(t *testing.T) {
	ta, tb := newTCPTarget(t), newTCPTarget(t)
	a, baseA := startAgent(t, Config{Target: ta.addr, Service: "service://web", Interval: fast, Gossip: gossipConfig()})
	_, baseB := startAgent(t, Config{Target: tb.addr, Service: "service://web", Interval: fast, Gossip: gossipConfig(),
		Join: []string{a.GossipAddr()}})
	urlA, urlB := "http://"+ta.addr, "http://"+tb.addr
	both := strings.Join(sortedPair(urlA, urlB), " ")

	waitFor(t, "both agents to list both members", func() bool {
		ma, _ := getMembers(t, baseA)
		mb, _ := getMembers(t, baseB)
		return memberURLs(ma) == both && memberURLs(mb) == both
	})
	r, _, l := getLoad(t, baseA)
	m, err := wire.ParseMembers(r.Members)
	if err != nil || l.Epoch == 0 || m.Epoch != l.Epoch {
		t.Errorf("load epoch %d, members %q (%v)", l.Epoch, r.Members, err)
	}

	tb.down()
	waitFor(t, "a to drop b, whose target is down", func() bool {
		ma, _ := getMembers(t, baseA)
		return memberURLs(ma) == urlA
	})
	tb.up()
	waitFor(t, "a to list b again", func() bool {
		ma, _ := getMembers(t, baseA)
		return memberURLs(ma) == both
	})
}

func sortedPair(a, b string) []string {
	if a > b {
		return []string{b, a}
	}
	return []string{a, b}
}

func TestMembersWithoutGossip(t *testing.T) {
	tt := newTCPTarget(t)
	_, base := startAgent(t, Config{Target: tt.addr, Interval: fast})
	if _, code := getMembers(t, base); code != http.StatusNotFound {
		t.Errorf("/members without gossip: status %d", code)
	}
	if r, raw, _ := getLoad(t, base); r.Members != "" || raw["members"] != nil {
		t.Errorf("members without gossip: %q", r.Members)
	}
}
