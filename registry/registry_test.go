package registry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		e  Entry
		ok bool
	}{
		{Entry{URL: "http://10.0.0.1:80"}, true},
		{Entry{URL: "http://10.0.0.1:80", Weight: 2, Zone: "eu-1", State: StateUp}, true},
		{Entry{URL: "http://h:1", State: StateDraining}, true},
		{Entry{URL: "http://h:1", State: StateDown}, true},
		{Entry{URL: "http://h:1", State: "UP"}, false},
		{Entry{URL: ""}, false},
		{Entry{URL: "h:1"}, false},
		{Entry{URL: "http://h:1", Weight: -1}, false},
		{Entry{URL: "http://h:1", Weight: math.NaN()}, false},
		{Entry{URL: "http://h:1", Weight: math.Inf(1)}, false},
		{Entry{URL: "http://h:1", Weight: wire.MaxWeight * 2}, false},
		{Entry{URL: "http://h:1", Zone: "a;b"}, false},
		{Entry{URL: "http://h:1", Zone: strings.Repeat("z", wire.MaxZoneLen+1)}, false},
		{Entry{URL: "http://h:1/" + strings.Repeat("p", wire.MaxURLLen)}, false},
	} {
		err := Check(tc.e)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrBadEntry) {
			t.Errorf("Check(%+v) = %v, want ok=%v", tc.e, err, tc.ok)
		}
	}
	if !Serving(Entry{}) || !Serving(Entry{State: StateUp}) || Serving(Entry{State: StateDraining}) || Serving(Entry{State: StateDown}) {
		t.Error("Serving")
	}
}

func TestBuild(t *testing.T) {
	m, dropped := Build(7, []Entry{
		{Key: "k3", URL: "http://b:1", Zone: "z3"},
		{Key: "k1", URL: "http://b:1", Zone: "z1"},
		{Key: "k2", URL: "http://a:1", Weight: 2},
	})
	want := []wire.Member{{URL: "http://a:1", Weight: 2}, {URL: "http://b:1", Zone: "z1"}}
	if m.Epoch != 7 || !slices.Equal(m.Members, want) || dropped != 1 {
		t.Fatalf("Build = %+v, %d", m, dropped)
	}
	if m, d := Build(3, nil); m.Members != nil || m.Epoch != 3 || d != 0 {
		t.Fatalf("Build(nil) = %+v, %d", m, d)
	}

	// Too many members: the smallest URLs are kept.
	var es []Entry
	for i := range wire.MaxMembers + 10 {
		es = append(es, Entry{Key: "k", URL: fmt.Sprintf("http://h%05d:1", i)})
	}
	m, dropped = Build(1, es)
	if len(m.Members) != wire.MaxMembers || dropped != 10 || m.Members[0].URL != "http://h00000:1" {
		t.Fatalf("Build of %d: %d members, %d dropped", len(es), len(m.Members), dropped)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}

	// Long URLs: the encoded record stays within wire.MaxMembersLen.
	es = es[:0]
	for i := range 200 {
		es = append(es, Entry{URL: fmt.Sprintf("http://h%03d:1/%s", i, strings.Repeat("p", 480)), Weight: 1.5, Zone: "zone"})
	}
	m, dropped = Build(1, es)
	if err := m.Validate(); err != nil || dropped == 0 || len(m.Members)+dropped != 200 {
		t.Fatalf("Build of long URLs: %d members, %d dropped, %v", len(m.Members), dropped, err)
	}
	if _, err := wire.ParseMembers(m.String()); err != nil {
		t.Fatal(err)
	}
}

func newDirector(t *testing.T, cfg director.Config, urls ...string) *director.Director {
	t.Helper()
	var ms []balance.Member
	for _, u := range urls {
		ms = append(ms, balance.Member{URL: u})
	}
	d, err := director.New(cfg, ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func update(epoch uint64, reset bool, urls ...string) Update {
	u := Update{Reset: reset, Members: wire.Members{Epoch: epoch}}
	for _, x := range urls {
		u.Members.Members = append(u.Members.Members, wire.Member{URL: x})
	}
	return u
}

func members(d *director.Director) []string {
	var out []string
	for _, e := range d.Balancer().Endpoints() {
		out = append(out, e.Member.URL)
	}
	slices.Sort(out)
	return out
}

type counts struct{ learned, resets, stale, rejected, empty uint64 }

func feedCounts(f *Feed) counts {
	return counts{f.Learned.Load(), f.Resets.Load(), f.Stale.Load(), f.Rejected.Load(), f.Empty.Load()}
}

// TestFeedApply walks a feed through each rule, checking the director's
// list, its epoch and the counters after every step.
func TestFeedApply(t *testing.T) {
	var refuse bool
	d := newDirector(t, director.Config{Epoch: 10, AcceptMembers: func(m wire.Members) error {
		if refuse {
			return errors.New("refused")
		}
		return nil
	}}, "http://start:1")
	f := Attach(d, nil)
	steps := []struct {
		name   string
		u      Update
		refuse bool
		urls   []string
		epoch  uint64
		c      counts
	}{
		{"stale", update(10, false, "http://a:1"), false, []string{"http://start:1"}, 10, counts{stale: 1}},
		{"newer", update(11, false, "http://a:1"), false, []string{"http://a:1"}, 11, counts{learned: 1, stale: 1}},
		{"refused", update(12, false, "http://b:1"), true, []string{"http://a:1"}, 11, counts{learned: 1, stale: 1, rejected: 1}},
		{"reset below", update(3, true, "http://c:1"), false, []string{"http://c:1"}, 3, counts{learned: 2, resets: 1, stale: 1, rejected: 1}},
		{"follows the new sequence", update(4, false, "http://c:1", "http://d:1"), false, []string{"http://c:1", "http://d:1"}, 4, counts{learned: 3, resets: 1, stale: 1, rejected: 1}},
		{"empty", update(5, false), false, []string{"http://c:1", "http://d:1"}, 4, counts{learned: 3, resets: 1, stale: 1, rejected: 1, empty: 1}},
		// An empty reset cannot be applied; the reset carries to the next
		// update, which is applied although its epoch is below 4.
		{"empty reset", update(1, true), false, []string{"http://c:1", "http://d:1"}, 4, counts{learned: 3, resets: 1, stale: 1, rejected: 1, empty: 2}},
		{"after an empty reset", update(2, false, "http://e:1"), false, []string{"http://e:1"}, 2, counts{learned: 4, resets: 2, stale: 1, rejected: 1, empty: 2}},
		// A refused reset carries too.
		{"refused reset", update(1, true, "http://f:1"), true, []string{"http://e:1"}, 2, counts{learned: 4, resets: 2, stale: 1, rejected: 2, empty: 2}},
		{"after a refused reset", update(1, false, "http://g:1"), false, []string{"http://g:1"}, 1, counts{learned: 5, resets: 3, stale: 1, rejected: 2, empty: 2}},
		{"stale again", update(1, false, "http://h:1"), false, []string{"http://g:1"}, 1, counts{learned: 5, resets: 3, stale: 2, rejected: 2, empty: 2}},
	}
	for _, s := range steps {
		refuse = s.refuse
		f.Apply(s.u)
		if got := members(d); !slices.Equal(got, s.urls) {
			t.Fatalf("%s: members %v, want %v", s.name, got, s.urls)
		}
		if got := d.Balancer().Epoch(); got != s.epoch {
			t.Fatalf("%s: epoch %d, want %d", s.name, got, s.epoch)
		}
		if got := feedCounts(f); got != s.c {
			t.Fatalf("%s: counts %+v, want %+v", s.name, got, s.c)
		}
	}
}

// script is a Source that emits fixed updates, then waits for ctx.
type script struct {
	updates []Update
	err     error
}

func (s script) Watch(ctx context.Context, emit func(Update)) error {
	for _, u := range s.updates {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		emit(u)
	}
	if s.err != nil {
		return s.err
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestFirst(t *testing.T) {
	ctx := context.Background()
	m, err := First(ctx, script{updates: []Update{update(1, true), update(2, false, "http://a:1"), update(3, false, "http://b:1")}})
	if err != nil || m.Epoch != 2 || len(m.Members) != 1 || m.Members[0].URL != "http://a:1" {
		t.Fatalf("First = %+v, %v", m, err)
	}
	boom := errors.New("boom")
	if _, err := First(ctx, script{updates: []Update{update(1, true)}, err: boom}); !errors.Is(err, boom) {
		t.Fatalf("First = %v, want boom", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := First(cctx, script{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("First = %v, want Canceled", err)
	}
}

func TestRun(t *testing.T) {
	d := newDirector(t, director.Config{}, "http://start:1")
	boom := errors.New("boom")
	f := Attach(d, script{updates: []Update{update(5, true, "http://a:1")}, err: boom})
	if err := f.Run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Run = %v", err)
	}
	if got := members(d); !slices.Equal(got, []string{"http://a:1"}) || d.Balancer().Epoch() != 5 {
		t.Fatalf("members %v epoch %d", got, d.Balancer().Epoch())
	}
}
