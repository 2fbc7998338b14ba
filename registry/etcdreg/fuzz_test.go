package etcdreg

import (
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/smartclient/smartclient/registry"
	"github.com/smartclient/smartclient/wire"
)

func TestParseValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want registry.Entry // zero URL: an error is expected
	}{
		{`{"url":"http://10.0.0.1:8080"}`, registry.Entry{URL: "http://10.0.0.1:8080"}},
		{`{"url":"http://10.0.0.1:8080","weight":2.5,"zone":"eu-1","state":"up","new":{"x":1}}`,
			registry.Entry{URL: "http://10.0.0.1:8080", Weight: 2.5, Zone: "eu-1", State: "up"}},
		{` {"url":"https://[::1]:443","state":"draining"} `, registry.Entry{URL: "https://[::1]:443", State: "draining"}},
		{`{"url":"http://a:1","weight":0}`, registry.Entry{URL: "http://a:1"}},
		{``, registry.Entry{}},
		{`null`, registry.Entry{}},
		{`{}`, registry.Entry{}},
		{`{"url":"http://a:1"} {}`, registry.Entry{}},
		{`{"url":"http://a:1","weight":-1}`, registry.Entry{}},
		{`{"url":"http://a:1","weight":1e7}`, registry.Entry{}},
		{`{"url":"http://a:1","weight":1e400}`, registry.Entry{}},
		{`{"url":"http://a:1","weight":"2"}`, registry.Entry{}},
		{`{"url":"HTTP://a:1"}`, registry.Entry{}},
		{`{"url":"http://a:1;m=http://evil:1"}`, registry.Entry{}},
		{`{"url":"http://a:1","zone":"a#b"}`, registry.Entry{}},
		{`{"url":"http://a:1","state":"UP"}`, registry.Entry{}},
		{`{"url":"/relative"}`, registry.Entry{}},
	} {
		e, err := ParseValue("k", []byte(tc.in))
		if tc.want.URL == "" {
			if err == nil || !errors.Is(err, registry.ErrBadEntry) {
				t.Errorf("ParseValue(%q) = %+v, %v; want an ErrBadEntry", tc.in, e, err)
			}
			continue
		}
		tc.want.Key = "k"
		if err != nil || e != tc.want {
			t.Errorf("ParseValue(%q) = %+v, %v; want %+v", tc.in, e, err, tc.want)
		}
	}
	big := make([]byte, MaxValueLen+1)
	if _, err := ParseValue("k", big); err == nil {
		t.Error("oversized value accepted")
	}
}

// FuzzParseValue: ParseValue never panics; what it accepts is a member the
// wire format can carry, and it survives a marshal round trip.
func FuzzParseValue(f *testing.F) {
	for _, s := range []string{
		`{"url":"http://10.0.0.1:8080","weight":2,"zone":"eu-1","state":"up"}`,
		`{"url":"http://a:1","state":"draining"}`,
		`{"url":"http://a:1","weight":1e400}`,
		`{"url":"http://[::1]:80","weight":0.000001}`,
		`[`, `null`, `{"url":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseValue("k", b)
		if err != nil {
			if !errors.Is(err, registry.ErrBadEntry) {
				t.Fatalf("error %v does not wrap ErrBadEntry", err)
			}
			return
		}
		if len(b) > MaxValueLen {
			t.Fatalf("accepted %d bytes", len(b))
		}
		if math.IsNaN(e.Weight) || e.Weight < 0 || e.Weight > wire.MaxWeight {
			t.Fatalf("accepted weight %v", e.Weight)
		}
		m := wire.Members{Epoch: 1, Members: []wire.Member{{URL: e.URL, Weight: e.Weight, Zone: e.Zone}}}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted %+v, which wire refuses: %v", e, err)
		}
		if back, err := wire.ParseMembers(m.String()); err != nil || !registry.Equal(back, m) {
			t.Fatalf("wire round trip of %+v: %v, %v", e, back, err)
		}
		again, err := json.Marshal(Member{URL: e.URL, Weight: e.Weight, Zone: e.Zone, State: e.State})
		if err != nil {
			t.Fatal(err)
		}
		if e2, err := ParseValue("k", again); err != nil || e2 != e {
			t.Fatalf("JSON round trip of %+v: %+v, %v", e, e2, err)
		}
	})
}
