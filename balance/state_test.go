package balance_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
)

func TestSaveRestore(t *testing.T) {
	tau := float64(10 * time.Second)
	ms := []balance.Member{
		{URL: "http://a:80", Weight: 2, Zone: "eu"},
		{URL: "http://b:80"},
		{URL: "http://c:80", Zone: "us"},
	}
	src := newBalancer(t, balance.Config{}, members(1))
	if ok, err := src.SetMembers(42, ms); !ok || err != nil {
		t.Fatal(ok, err)
	}
	now := 100 * sec
	for i, e := range src.Endpoints() {
		src.Acquire(e)
		src.Done(e, now, time.Duration(i+1)*7*time.Millisecond, balance.Success)
	}
	data, err := src.Save(now + sec)
	if err != nil {
		t.Fatal(err)
	}

	dst := newBalancer(t, balance.Config{}, members(5))
	if ok, err := dst.SetMembers(99, members(5)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	later := 500 * sec
	if err := dst.Restore(data, later); err != nil {
		t.Fatal(err)
	}
	// Restore wins whatever the epochs.
	if dst.Epoch() != 42 {
		t.Errorf("epoch %d, want 42", dst.Epoch())
	}
	got := dst.Endpoints()
	if len(got) != len(ms) {
		t.Fatalf("%d members restored", len(got))
	}
	for i, e := range got {
		if e.Member != ms[i] {
			t.Errorf("member %d = %+v, want %+v", i, e.Member, ms[i])
		}
		// The estimate as of the save is the estimate as of the restore.
		want := src.Endpoints()[i].Cost(now+sec, tau)
		if c := e.Cost(later, tau); c != want {
			t.Errorf("%s: cost %v, want %v", e.Member.URL, c, want)
		}
	}
	if len(dst.Snapshot().Endpoints) != 3 {
		t.Errorf("snapshot not rebuilt")
	}
	// Save of the restored balancer says the same thing.
	again, err := dst.Save(later)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Errorf("re-saved state differs:\n%s\n%s", data, again)
	}
}

// TestSaveLongLatency: whatever a balancer saves, it can restore, even
// after attempts that took longer than the restore limit on costs (a long
// stream counts as one slow attempt).
func TestSaveLongLatency(t *testing.T) {
	b := newBalancer(t, balance.Config{}, members(2))
	e := b.Endpoints()[0]
	b.Acquire(e)
	b.Done(e, sec, 3*time.Hour, balance.Success)
	data, err := b.Save(sec)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(data, sec); err != nil {
		t.Fatalf("cannot restore own state: %v", err)
	}
	if c := e.Cost(sec, 0); c <= 0 {
		t.Fatal(c)
	}
}

func TestRestoreRefusesBadState(t *testing.T) {
	good := `{"version":1,"epoch":3,"members":[{"url":"http://a:80","cost_ns":1000}]}`
	if _, err := balance.ParseState([]byte(good)); err != nil {
		t.Fatalf("good state refused: %v", err)
	}
	huge := `{"version":1,"epoch":3,"members":[{"url":"http://a:80","cost_ns":1000}],"pad":"` +
		strings.Repeat("x", balance.MaxStateSize) + `"}`
	for _, bad := range []string{
		``,
		`{`,
		`null`,
		`[]`,
		`{"version":2,"epoch":3,"members":[{"url":"http://a:80","cost_ns":1000}]}`,
		`{"epoch":3,"members":[{"url":"http://a:80","cost_ns":1000}]}`,
		`{"version":1,"epoch":3,"members":[]}`,
		`{"version":1,"epoch":3}`,
		`{"version":1,"epoch":-1,"members":[{"url":"http://a:80","cost_ns":1000}]}`,
		`{"version":1,"epoch":3,"members":[{"url":"","cost_ns":1000}]}`,
		`{"version":1,"epoch":3,"members":[{"url":"http://a:80","cost_ns":1},{"url":"http://a:80","cost_ns":2}]}`,
		`{"version":1,"epoch":3,"members":[{"url":"http://a:80","cost_ns":-1}]}`,
		`{"version":1,"epoch":3,"members":[{"url":"http://a:80","cost_ns":1e20}]}`,
		`{"version":1,"epoch":3,"members":[{"url":"http://a:80","cost_ns":"NaN"}]}`,
		`{"version":1,"epoch":3,"members":[{"url":"http://a:80","weight":-2,"cost_ns":1}]}`,
		`{"version":1,"epoch":3,"members":[{"url":"http://a:80","weight":1e999,"cost_ns":1}]}`,
		huge,
	} {
		b := newBalancer(t, balance.Config{Policy: policy.P2C{}}, members(3))
		b.SetMembers(7, members(3))
		snap, eps := b.Snapshot(), b.Endpoints()
		costs := make([]float64, len(eps))
		for i, e := range eps {
			costs[i] = e.Cost(sec, 1)
		}
		err := b.Restore([]byte(bad), sec)
		if !errors.Is(err, balance.ErrBadState) {
			t.Errorf("Restore(%.80q) = %v, want ErrBadState", bad, err)
		}
		if b.Snapshot() != snap || !slices.Equal(b.Endpoints(), eps) || b.Epoch() != 7 {
			t.Errorf("Restore(%.80q) changed the member list", bad)
		}
		for i, e := range eps {
			if e.Cost(sec, 1) != costs[i] {
				t.Errorf("Restore(%.80q) changed a cost", bad)
			}
		}
	}
}

// FuzzParseState: ParseState never panics, and state it accepts survives a
// restore and a save unchanged.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"version":1,"epoch":3,"members":[{"url":"http://a:80","weight":2,"zone":"eu","cost_ns":1000}]}`))
	f.Add([]byte(`{"version":1,"epoch":18446744073709551615,"members":[{"url":"x","cost_ns":0},{"url":"y","cost_ns":3.5e12}]}`))
	f.Add([]byte(`{"version":1,"members":[{"url":"\u00ff\ud800","weight":-0,"cost_ns":-0}],"extra":[1,2]}`))
	f.Add([]byte(`{"Version":1,"MEMBERS":[{"URL":"a","url":"b","cost_ns":1}]}`))
	f.Add([]byte(`{"version":1,"epoch":3,"members":[{"url":"a","cost_ns":1},{"url":"a","cost_ns":1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := balance.ParseState(data)
		if err != nil {
			if !errors.Is(err, balance.ErrBadState) {
				t.Fatalf("error %v does not wrap ErrBadState", err)
			}
			return
		}
		b, err := balance.New(balance.Config{Policy: policy.P2C{}}, members(1), newRand(1))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Restore(data, 5); err != nil {
			t.Fatalf("ParseState accepted what Restore refuses: %v", err)
		}
		saved, err := b.Save(5)
		if err != nil {
			t.Fatalf("Save after Restore: %v", err)
		}
		s2, err := balance.ParseState(saved)
		if err != nil {
			t.Fatalf("re-saved state refused: %v\n%s", err, saved)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip changed the state:\n%+v\n%+v", s, s2)
		}
		// And a second round trip is byte-for-byte stable.
		again, _ := json.Marshal(s2)
		if !bytes.Equal(again, saved) {
			t.Fatalf("saved state not canonical:\n%s\n%s", saved, again)
		}
	})
}

func ExampleBalancer_Save() {
	b, _ := balance.New(balance.Config{Policy: policy.P2C{}}, []balance.Member{{URL: "http://a:80", Zone: "eu"}}, newRand(1))
	data, _ := b.Save(0)
	fmt.Println(string(data))
	// Output: {"version":1,"epoch":0,"members":[{"url":"http://a:80","zone":"eu","cost_ns":10000000}]}
}
