package wire

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestAppendMembers(t *testing.T) {
	tests := []struct {
		m    Members
		want string
	}{
		{Members{Epoch: 17, Members: []Member{
			{URL: "http://10.0.0.1:8080", Weight: 2, Zone: "eu-1"},
			{URL: "http://10.0.0.2:8080"},
		}}, "v=1;e=17;m=http://10.0.0.1:8080#w=2#z=eu-1;m=http://10.0.0.2:8080"},
		{Members{}, "v=1;e=0"},
		{Members{Epoch: 1, Members: []Member{{URL: "tcp://h:1", Weight: 0.5}, {URL: "grpc://[::1]:9", Zone: "z"}}},
			"v=1;e=1;m=tcp://h:1#w=0.5;m=grpc://[::1]:9#z=z"},
		{Members{Epoch: 1, Members: []Member{{URL: "http://h", Weight: MaxWeight}}}, "v=1;e=1;m=http://h#w=1e+06"},
		// Bytes that would reframe the record become ','.
		{Members{Epoch: 1, Members: []Member{{URL: "http://a;m=http://evil", Zone: "eu#w=9"}}},
			"v=1;e=1;m=http://a,m=http://evil#z=eu,w=9"},
		{Members{Epoch: 1, Members: []Member{{URL: "http://a\r\nX: y"}}}, "v=1;e=1;m=http://a,,X:,y"},
	}
	for _, tt := range tests {
		if got := string(AppendMembers(nil, tt.m)); got != tt.want {
			t.Errorf("AppendMembers(%#v) = %q, want %q", tt.m, got, tt.want)
		}
		if got := tt.m.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
		if got := tt.m.encodedLen(); got != len(tt.want) {
			t.Errorf("encodedLen() = %d, want %d", got, len(tt.want))
		}
	}
}

func TestParseMembers(t *testing.T) {
	tests := []struct {
		in   string
		want Members
	}{
		{"v=1;e=17;m=http://10.0.0.1:8080#w=2#z=eu-1;m=http://10.0.0.2:8080",
			Members{Epoch: 17, Members: []Member{
				{URL: "http://10.0.0.1:8080", Weight: 2, Zone: "eu-1"},
				{URL: "http://10.0.0.2:8080"},
			}}},
		{"v=1;e=0", Members{}},
		{"v=1;x=m=;e=18446744073709551615", Members{Epoch: math.MaxUint64}},
		{" v=1 ;\te=3 ; m=https://a.example:443/p?q=1#z=Z.9_x-y#w=1e-3 ",
			Members{Epoch: 3, Members: []Member{{URL: "https://a.example:443/p?q=1", Weight: 0.001, Zone: "Z.9_x-y"}}}},
		{"v=1;e=1;m=tcp://h#w=1000000", Members{Epoch: 1, Members: []Member{{URL: "tcp://h", Weight: MaxWeight}}}},
		{"v=1;e=1;m=tcp://h#w=5e-324", Members{Epoch: 1, Members: []Member{{URL: "tcp://h", Weight: 5e-324}}}},
		{"v=1;e=1;m=x+y.z-1://u:p@[fe80::1%25eth0]:7", Members{Epoch: 1, Members: []Member{{URL: "x+y.z-1://u:p@[fe80::1%25eth0]:7"}}}},
		// Unknown keys and attributes of a newer minor version.
		{"v=1;e=1;n=2;m=http://h#p=1#q=a=b#w=3;o=(x)", Members{Epoch: 1, Members: []Member{{URL: "http://h", Weight: 3}}}},
		{"v=1;e=1;m=http://a#p=1;m=http://b#p=1", Members{Epoch: 1, Members: []Member{{URL: "http://a"}, {URL: "http://b"}}}},
		{"v=1;e=1;m=http://h#z=" + strings.Repeat("z", MaxZoneLen),
			Members{Epoch: 1, Members: []Member{{URL: "http://h", Zone: strings.Repeat("z", MaxZoneLen)}}}},
		{"v=1;e=1;m=http://h/" + strings.Repeat("p", MaxURLLen-len("http://h/")),
			Members{Epoch: 1, Members: []Member{{URL: "http://h/" + strings.Repeat("p", MaxURLLen-len("http://h/"))}}}},
	}
	for _, tt := range tests {
		got, err := ParseMembers(tt.in)
		if err != nil {
			t.Errorf("ParseMembers(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseMembers(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

// manyMembers returns a record of n members m0..m{n-1} at epoch 1.
func manyMembers(n int) string {
	var b strings.Builder
	b.WriteString("v=1;e=1")
	for i := range n {
		fmt.Fprintf(&b, ";m=http://m%d", i)
	}
	return b.String()
}

func TestParseMembersErrors(t *testing.T) {
	longURL := "http://h/" + strings.Repeat("p", MaxURLLen)
	// Fits MaxMembersLen as written, with fewer than MaxMembers members,
	// but each "1e5" re-encodes as "100000".
	var grows strings.Builder
	grows.WriteString("v=1;e=1")
	for i := 0; grows.Len() < MaxMembersLen-80; i++ {
		fmt.Fprintf(&grows, ";m=http://%04x/%s#w=1e5", i, strings.Repeat("p", 60))
	}
	tests := []struct {
		in   string
		want error
	}{
		{"v=1;e=1;x=" + strings.Repeat("a", MaxMembersLen), ErrTooLarge},
		{manyMembers(MaxMembers + 1), ErrTooLarge},
		{"v=1;e=1;m=" + longURL, ErrTooLarge},
		{grows.String(), ErrTooLarge},
		{"", ErrMalformed},
		{"e=1;v=1", ErrMalformed},
		{"v=2;e=1", ErrVersion},
		{"v=1.5;e=1", ErrMalformed},
		{"v=1", ErrMalformed},
		{"v=1;m=http://h", ErrMalformed}, // no e
		{"v=1;e=1;", ErrMalformed},
		{"v=1;e=1;e=2", ErrMalformed},
		{"v=1;e=1;v=1", ErrMalformed},
		{"v=1;e=1;x=1;x=1", ErrMalformed},
		{"v=1;e=x", ErrMalformed},
		{"v=1;e=-1", ErrOutOfRange},
		{"v=1;e=18446744073709551616", ErrOutOfRange},
		{"v=1;e=1;m=", ErrMalformed},
		{"v=1;e=1;m=http://h;m=http://h", ErrMalformed},
		{"v=1;e=1;m=http://h#w=1;m=http://h#z=a", ErrMalformed},
		{manyMembers(40) + ";m=http://m39", ErrMalformed},
		// URLs.
		{"v=1;e=1;m=h:80", ErrMalformed},
		{"v=1;e=1;m=10.0.0.1:80", ErrMalformed},
		{"v=1;e=1;m=/path", ErrMalformed},
		{"v=1;e=1;m=mailto:a@b", ErrMalformed},
		{"v=1;e=1;m=HTTP://h", ErrMalformed},
		{"v=1;e=1;m=1http://h", ErrMalformed},
		{"v=1;e=1;m=http:/h", ErrMalformed},
		{"v=1;e=1;m=http://", ErrMalformed},
		{"v=1;e=1;m=http:///p", ErrMalformed},
		{"v=1;e=1;m=http://:80", ErrMalformed},
		{"v=1;e=1;m=http://h:", ErrMalformed},
		{"v=1;e=1;m=http://h:port", ErrMalformed},
		{"v=1;e=1;m=http://[::1", ErrMalformed},
		{"v=1;e=1;m=http://h/%zz", ErrMalformed},
		{"v=1;e=1;m=http://a,b", ErrMalformed},
		{"v=1;e=1;m=http://a b", ErrMalformed},
		{"v=1;e=1;m=http://a\x7f", ErrMalformed},
		{"v=1;e=1;m=http://é", ErrMalformed},
		{"v=1;e=1;m=http://h #w=1", ErrMalformed},
		// Attributes.
		{"v=1;e=1;m=http://h#", ErrMalformed},
		{"v=1;e=1;m=http://h#w", ErrMalformed},
		{"v=1;e=1;m=http://h#w=", ErrMalformed},
		{"v=1;e=1;m=http://h#=1", ErrMalformed},
		{"v=1;e=1;m=http://h#w=1#w=1", ErrMalformed},
		{"v=1;e=1;m=http://h#z=a#z=a", ErrMalformed},
		{"v=1;e=1;m=http://h#p=1#p=1", ErrMalformed},
		{"v=1;e=1;m=http://h#w=x", ErrMalformed},
		{"v=1;e=1;m=http://h#w=0x1p1", ErrMalformed},
		{"v=1;e=1;m=http://h#w=0", ErrOutOfRange},
		{"v=1;e=1;m=http://h#w=-0", ErrOutOfRange},
		{"v=1;e=1;m=http://h#w=1e-400", ErrOutOfRange},
		{"v=1;e=1;m=http://h#w=-1", ErrOutOfRange},
		{"v=1;e=1;m=http://h#w=1000000.0000001", ErrOutOfRange},
		{"v=1;e=1;m=http://h#w=NaN", ErrOutOfRange},
		{"v=1;e=1;m=http://h#w=Inf", ErrOutOfRange},
		{"v=1;e=1;m=http://h#w=1e999", ErrOutOfRange},
		{"v=1;e=1;m=http://h#z=" + strings.Repeat("z", MaxZoneLen+1), ErrOutOfRange},
		{"v=1;e=1;m=http://h#z=eu/1", ErrMalformed},
		{"v=1;e=1;m=http://h#z=eu:1", ErrMalformed},
		// A folded header.
		{"v=1;e=1;m=http://a, v=1;e=2;m=http://b", ErrMalformed},
	}
	for _, tt := range tests {
		m, err := ParseMembers(tt.in)
		checkErr(t, tt.in, err, tt.want)
		if !reflect.DeepEqual(m, Members{}) {
			t.Errorf("ParseMembers(%.60q) = %#v with an error, want the zero Members", tt.in, m)
		}
	}
}

func TestParseMembersLimits(t *testing.T) {
	m, err := ParseMembers(manyMembers(MaxMembers))
	if err != nil {
		t.Fatalf("ParseMembers with MaxMembers members: %v", err)
	}
	if len(m.Members) != MaxMembers {
		t.Fatalf("got %d members, want %d", len(m.Members), MaxMembers)
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestMembersValidate(t *testing.T) {
	ok := Members{Epoch: 1, Members: []Member{{URL: "http://h", Weight: 1, Zone: "a"}, {URL: "http://i"}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%v): %v", ok, err)
	}
	one := func(mb Member) Members { return Members{Epoch: 1, Members: []Member{mb}} }
	many := make([]Member, MaxMembers+1)
	for i := range many {
		many[i].URL = fmt.Sprintf("http://m%d", i)
	}
	// Few members, but together too long to encode.
	long := make([]Member, 200)
	for i := range long {
		long[i].URL = fmt.Sprintf("http://m%d/%s", i, strings.Repeat("p", 400))
	}
	tests := []struct {
		m    Members
		want error
	}{
		{Members{Members: many}, ErrTooLarge},
		{Members{Members: long}, ErrTooLarge},
		{one(Member{URL: "http://h/" + strings.Repeat("p", MaxURLLen)}), ErrTooLarge},
		{one(Member{}), ErrMalformed},
		{one(Member{URL: "h:80"}), ErrMalformed},
		{one(Member{URL: "http://h;x=1"}), ErrMalformed},
		{one(Member{URL: "http://h#w=1"}), ErrMalformed},
		{one(Member{URL: "http://h", Weight: -1}), ErrOutOfRange},
		{one(Member{URL: "http://h", Weight: MaxWeight * 2}), ErrOutOfRange},
		{one(Member{URL: "http://h", Weight: math.NaN()}), ErrOutOfRange},
		{one(Member{URL: "http://h", Weight: math.Inf(1)}), ErrOutOfRange},
		{one(Member{URL: "http://h", Zone: "a b"}), ErrMalformed},
		{one(Member{URL: "http://h", Zone: "a#w=1"}), ErrMalformed},
		{one(Member{URL: "http://h", Zone: strings.Repeat("z", MaxZoneLen+1)}), ErrOutOfRange},
		{Members{Members: []Member{{URL: "http://h"}, {URL: "http://h", Weight: 2}}}, ErrMalformed},
	}
	for _, tt := range tests {
		s := tt.m.String()
		checkErr(t, s, tt.m.Validate(), tt.want)
		// What Validate refuses, the receiver refuses too.
		if _, err := ParseMembers(s); err == nil {
			t.Errorf("ParseMembers(%.60q) accepted an invalid Members", s)
		}
	}
}

// randMembers returns a valid Members of up to max members.
func randMembers(r *rand.Rand, max int) Members {
	schemes := []string{"http", "https", "tcp", "grpc", "h2c", "x+y.z-1"}
	hosts := []func() string{
		func() string { return fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), r.IntN(256)) },
		func() string { return fmt.Sprintf("[fd00::%x]", r.IntN(1<<16)) },
		func() string { return fmt.Sprintf("node-%d.svc.example", r.IntN(1000)) },
		func() string { return "localhost" },
	}
	tails := []string{"", "/", "/api/v1", "/p?x=1&y=%20", "/~u/a-b_c.d"}
	m := Members{Epoch: r.Uint64()}
	if r.IntN(2) == 0 {
		m.Epoch = uint64(r.IntN(10))
	}
	n := r.IntN(max + 1)
	seen := make(map[string]bool)
	for len(m.Members) < n {
		u := schemes[r.IntN(len(schemes))] + "://" + hosts[r.IntN(len(hosts))]()
		if r.IntN(3) != 0 {
			u += fmt.Sprintf(":%d", r.IntN(65536))
		}
		u += tails[r.IntN(len(tails))]
		if seen[u] {
			continue
		}
		seen[u] = true
		mb := Member{URL: u}
		switch r.IntN(4) {
		case 0:
		case 1:
			mb.Weight = []float64{5e-324, 1e-9, 1, 0.5, MaxWeight, math.Nextafter(MaxWeight, 0)}[r.IntN(6)]
		case 2:
			mb.Weight = float64(1 + r.IntN(100))
		default:
			mb.Weight = math.Nextafter(0, 1) + r.Float64()*MaxWeight
		}
		if r.IntN(2) == 0 {
			const zc = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
			z := make([]byte, 1+r.IntN(MaxZoneLen))
			for i := range z {
				z[i] = zc[r.IntN(len(zc))]
			}
			mb.Zone = string(z)
		}
		m.Members = append(m.Members, mb)
	}
	if len(m.Members) == 0 {
		m.Members = nil
	}
	return m
}

func TestMembersRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		max := 4
		if i%100 == 0 {
			max = 300
		}
		m := randMembers(r, max)
		if err := m.Validate(); err != nil {
			t.Fatalf("randMembers made an invalid %v: %v", m, err)
		}
		s := m.String()
		if len(s) != m.encodedLen() {
			t.Fatalf("encodedLen() = %d, want %d", m.encodedLen(), len(s))
		}
		got, err := ParseMembers(s)
		if err != nil {
			t.Fatalf("ParseMembers(%q): %v", s, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("ParseMembers(%q) = %#v, want %#v", s, got, m)
		}
	}
}

func benchMembers() string {
	m := Members{Epoch: 17}
	for i := range 16 {
		m.Members = append(m.Members, Member{URL: fmt.Sprintf("http://10.0.0.%d:8080", i+1), Weight: float64(1 + i%3), Zone: fmt.Sprintf("eu-%d", i%2)})
	}
	return m.String()
}

func BenchmarkParseMembers(b *testing.B) {
	s := benchMembers()
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseMembers(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendMembers(b *testing.B) {
	m, err := ParseMembers(benchMembers())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMembers(buf[:0], m)
	}
}
