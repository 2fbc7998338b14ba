package gossip

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/wire"
)

func startObserver(t *testing.T, service string) *Node {
	t.Helper()
	n, err := Start(Config{Service: service, Observer: true, Loopback: true, Tune: fastTimers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	return n
}

// An observer sees the serving nodes and Watch wakes on each change, while
// no node (the observer included) ever lists it.
func TestObserver(t *testing.T) {
	a, b := start(t, 0, nil), start(t, 1, nil)
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	both := "http://127.0.0.1:8000/,http://127.0.0.1:8001/"
	waitFor(t, "members see each other", func() bool { return urls(a.Members()) == both && urls(b.Members()) == both })

	o := startObserver(t, "svc")
	if !strings.HasPrefix(o.cfg.Name, "observer-") {
		t.Errorf("observer's default name %q", o.cfg.Name)
	}
	if got := urls(o.Members()); got != "" {
		t.Fatalf("observer lists %q before joining, want nothing (not even itself)", got)
	}
	view, changed := o.Watch()
	if _, err := o.Join([]string{b.Addr()}); err != nil {
		t.Fatal(err)
	}
	if got := urls(o.Members()); got != both {
		t.Errorf("when Join returned, the observer listed %q, want %q", got, both)
	}
	// Watch is the notification: the test waits on it, not on a timer.
	for urls(view) != both {
		select {
		case <-changed:
		case <-time.After(5 * time.Second):
			t.Fatalf("observer's Watch never showed both members; last %q", urls(view))
		}
		next, ch := o.Watch()
		if next.Epoch <= view.Epoch {
			t.Fatalf("Watch woke with epoch %d after %d", next.Epoch, view.Epoch)
		}
		view, changed = next, ch
	}
	if len(o.Views()) != 2 {
		t.Errorf("observer's views = %+v, want the 2 members", o.Views())
	}
	waitFor(t, "members count the observer", func() bool { return a.Stats().Observers > 0 && b.Stats().Observers > 0 })
	for _, n := range []*Node{a, b} {
		if got := urls(n.Members()); got != both {
			t.Errorf("member lists %q, want %q", got, both)
		}
		if len(n.Views()) != 2 {
			t.Errorf("member views = %+v, want the 2 members", n.Views())
		}
		if s := n.Stats(); s.BadMeta != 0 || s.Foreign != 0 {
			t.Errorf("observer counted as bad or foreign: %+v", s)
		}
	}
	if s := o.Stats(); s.Observers != 0 || s.BadMeta != 0 {
		t.Errorf("observer counted itself: %+v", s)
	}

	// A drain reaches the observer through Watch.
	b.SetDraining(true)
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not wake on a drain")
	}
	waitFor(t, "drain seen", func() bool { return urls(o.Members()) == "http://127.0.0.1:8000/" })

	// The observer leaves; the members never listed it, and their lists
	// stay the same.
	if err := o.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	o.Shutdown()
	if got := urls(a.Members()); got != "http://127.0.0.1:8000/" {
		t.Errorf("after the observer left, a lists %q", got)
	}
}

// An observer of another service is foreign, not an observer.
func TestObserverOfAnotherService(t *testing.T) {
	a := start(t, 0, nil)
	o := startObserver(t, "other")
	if _, err := o.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "foreign observer counted", func() bool { return a.Stats().Foreign > 0 })
	if s := a.Stats(); s.Observers != 0 {
		t.Errorf("foreign observer counted as an observer: %+v", s)
	}
	if got := urls(o.Members()); got != "" {
		t.Errorf("observer of another service lists %q", got)
	}
}

func TestObserverMeta(t *testing.T) {
	enc := appendMeta(nil, meta{Service: "svc", Observer: true})
	got, err := parseMeta(enc)
	if err != nil || got != (meta{Service: "svc", Observer: true}) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	// Parsers before observers refused every flag but flagLeaving, so an
	// older node drops an observer as malformed instead of listing it.
	if enc[1]&^flagLeaving == 0 {
		t.Errorf("observer flags %#x would pass an older parser", enc[1])
	}
	member := appendMeta(nil, meta{Service: "svc", URL: "http://h/", Load: wire.Load{TimeMillis: 1}})
	for name, b := range map[string][]byte{
		"with url":     append(append([]byte{1, flagObserver, 3, 's', 'v', 'c', 4}, "http"...), 0),
		"with zone":    {1, flagObserver, 3, 's', 'v', 'c', 0, 1, 'z'},
		"with load":    append(append([]byte(nil), enc...), "v=1;t=1"...),
		"leaving":      append([]byte{1, flagObserver | flagLeaving}, enc[2:]...),
		"no service":   {1, flagObserver, 0, 0, 0},
		"member+flag":  append([]byte{1, flagObserver}, member[2:]...),
		"unknown flag": append([]byte{1, 4}, enc[2:]...),
	} {
		if _, err := parseMeta(b); !errors.Is(err, errMetaMalformed) {
			t.Errorf("%s: err = %v, want malformed", name, err)
		}
	}
}

func TestObserverConfig(t *testing.T) {
	for _, c := range []Config{
		{Service: "svc", Observer: true, URL: "http://h/"},
		{Service: "svc", Observer: true, Zone: "z"},
		{Service: "svc", Observer: true, Load: func() wire.Load { return wire.Load{} }},
		{Observer: true},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	if err := (&Config{Service: "svc", Observer: true}).Validate(); err != nil {
		t.Errorf("a plain observer: %v", err)
	}
}
