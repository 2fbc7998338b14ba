package wire

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

var sentinels = []error{ErrMalformed, ErrVersion, ErrTooLarge, ErrOutOfRange}

// maxErrLen bounds an error message whatever the input; quoting may expand
// each clipped byte to four.
const maxErrLen = 512

// checkErr fails unless err wraps want and no other sentinel, and its
// message stays short whatever the input was.
func checkErr(t *testing.T, in string, err, want error) {
	t.Helper()
	if err == nil {
		t.Errorf("parse %.60q: no error, want %v", in, want)
		return
	}
	if !errors.Is(err, want) {
		t.Errorf("parse %.60q: error %q does not wrap %v", in, err, want)
	}
	checkSentinel(t, in, err)
}

// checkSentinel fails unless err wraps exactly one sentinel and its message
// is bounded.
func checkSentinel(t *testing.T, in string, err error) {
	t.Helper()
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("parse %.60q: error %q wraps %d sentinels, want 1", in, err, n)
	}
	if len(err.Error()) > maxErrLen {
		t.Errorf("parse %.60q: error message is %d bytes: %q", in, len(err.Error()), err)
	}
}

func TestAppendLoad(t *testing.T) {
	tests := []struct {
		l    Load
		want string
	}{
		{Load{TimeMillis: 1732770000123, InFlight: 3, Capacity: 4, Util: 0.75, Epoch: 17},
			"v=1;t=1732770000123;q=3;c=4;u=0.75;e=17"},
		{Load{TimeMillis: 1}, "v=1;t=1;q=0;u=0"},
		{Load{TimeMillis: 5, State: StateDraining}, "v=1;t=5;q=0;u=0;s=draining"},
		{Load{TimeMillis: math.MaxInt64, InFlight: MaxInFlight, Capacity: MaxInFlight, Util: MaxUtil, State: StateDraining, Epoch: math.MaxUint64},
			"v=1;t=9223372036854775807;q=1048576;c=1048576;u=1000;s=draining;e=18446744073709551615"},
		{Load{TimeMillis: 9, Util: 1e-7}, "v=1;t=9;q=0;u=1e-07"},
		{Load{TimeMillis: 9, LatencyMicros: 8200}, "v=1;t=9;q=0;u=0;l=8200"},
		{Load{TimeMillis: 9, Util: math.Nextafter(0.3, 1)}, "v=1;t=9;q=0;u=0.30000000000000004"},
		// Invalid input is written as is, for the receiver to refuse.
		{Load{TimeMillis: -1, InFlight: -2, Util: math.NaN(), State: 7}, "v=1;t=-1;q=-2;u=NaN;s=State(7)"},
	}
	for _, tt := range tests {
		if got := string(AppendLoad(nil, tt.l)); got != tt.want {
			t.Errorf("AppendLoad(%+v) = %q, want %q", tt.l, got, tt.want)
		}
		if got := tt.l.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	if got := string(AppendLoad([]byte("x: "), Load{TimeMillis: 1})); got != "x: v=1;t=1;q=0;u=0" {
		t.Errorf("AppendLoad onto a prefix = %q", got)
	}
}

func TestParseLoad(t *testing.T) {
	tests := []struct {
		in   string
		want Load
	}{
		{"v=1;t=1732770000123;q=3;c=4;u=0.75;s=ok;e=17",
			Load{TimeMillis: 1732770000123, InFlight: 3, Capacity: 4, Util: 0.75, Epoch: 17}},
		{"v=1;t=1", Load{TimeMillis: 1}},
		{"v=1;t=1;s=draining", Load{TimeMillis: 1, State: StateDraining}},
		{"v=1;e=3;u=2.5;q=0;t=7", Load{TimeMillis: 7, Util: 2.5, Epoch: 3}},
		{"v=01;t=0010;q=007", Load{TimeMillis: 10, InFlight: 7}},
		{"v=1;t=1;q=1048576;c=1048576;u=1000", Load{TimeMillis: 1, InFlight: MaxInFlight, Capacity: MaxInFlight, Util: MaxUtil}},
		{"v=1;t=9223372036854775807;e=18446744073709551615", Load{TimeMillis: math.MaxInt64, Epoch: math.MaxUint64}},
		{"v=1;t=1;u=1E+02", Load{TimeMillis: 1, Util: 100}},
		{"v=1;t=1;u=5e-324", Load{TimeMillis: 1, Util: 5e-324}},
		{"v=1;t=1;u=1e-400", Load{TimeMillis: 1}},
		{"v=1;t=1;u=-0", Load{TimeMillis: 1}},
		{"v=1;t=1;u=-0.0e0", Load{TimeMillis: 1}},
		{"v=1;t=1;q=-0;e=-0", Load{TimeMillis: 1}},
		{"v=1;t=1;l=8200", Load{TimeMillis: 1, LatencyMicros: 8200}},
		{"v=1;t=1;l=3600000000", Load{TimeMillis: 1, LatencyMicros: MaxLatencyMicros}},
		// White space around the record and each pair.
		{" \tv=1 ; t=2\t;q=3 ", Load{TimeMillis: 2, InFlight: 3}},
		// Unknown keys of a newer minor version.
		{"v=1;t=1;x=hello;y-z.w_1=a=b;X=1;x2=(1)", Load{TimeMillis: 1}},
	}
	for _, tt := range tests {
		got, err := ParseLoad(tt.in)
		if err != nil {
			t.Errorf("ParseLoad(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseLoad(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if math.Signbit(got.Util) {
			t.Errorf("ParseLoad(%q): u is negative zero", tt.in)
		}
	}
}

func TestParseLoadErrors(t *testing.T) {
	long := "v=1;t=1;x=" + strings.Repeat("a", MaxLoadLen)
	tests := []struct {
		in   string
		want error
	}{
		{long, ErrTooLarge},
		{"", ErrMalformed},
		{"   ", ErrMalformed},
		{"v=1", ErrMalformed},      // no t
		{"v=1;", ErrMalformed},     // empty pair
		{"v=1;t=1;", ErrMalformed}, // trailing ';'
		{"v=1;;t=1", ErrMalformed},
		{"t=1;v=1", ErrMalformed},
		{"V=1;t=1", ErrMalformed},
		{"v=1.0;t=1", ErrMalformed},
		{"v=x;t=1", ErrMalformed},
		{"v=;t=1", ErrMalformed},
		{"v;t=1", ErrMalformed},
		{"v=2;t=1", ErrVersion},
		{"v=0;t=1", ErrVersion},
		{"v=-1;t=1", ErrVersion},
		{"v=99999999999999999999999;t=1", ErrVersion},
		{"v=2;garbage", ErrVersion},
		{"v=1;t=1;v=1", ErrMalformed},
		{"v=1;t=1;t=2", ErrMalformed},
		{"v=1;t=1;q=1;q=1", ErrMalformed},
		{"v=1;t=1;s=ok;s=ok", ErrMalformed},
		{"v=1;t=1;x=1;x=2", ErrMalformed},
		{"v=1;t=1;x=1;q=0;x=1", ErrMalformed},
		{"v=1;t=0", ErrOutOfRange},
		{"v=1;t=-5", ErrOutOfRange},
		{"v=1;t=9223372036854775808", ErrOutOfRange},
		{"v=1;t=99999999999999999999999", ErrOutOfRange},
		{"v=1;t=+5", ErrMalformed},
		{"v=1;t=5ms", ErrMalformed},
		{"v=1;t=0x10", ErrMalformed},
		{"v=1;t=1;q=-1", ErrOutOfRange},
		{"v=1;t=1;l=-1", ErrOutOfRange},
		{"v=1;t=1;l=3600000001", ErrOutOfRange},
		{"v=1;t=1;l=1.5", ErrMalformed},
		{"v=1;t=1;l=1;l=2", ErrMalformed},
		{"v=1;t=1;q=1048577", ErrOutOfRange},
		{"v=1;t=1;c=1048577", ErrOutOfRange},
		{"v=1;t=1;c=-", ErrMalformed},
		{"v=1;t=1;q=1.5", ErrMalformed},
		{"v=1;t=1;u=NaN", ErrOutOfRange},
		{"v=1;t=1;u=nan", ErrOutOfRange},
		{"v=1;t=1;u=Inf", ErrOutOfRange},
		{"v=1;t=1;u=+Inf", ErrOutOfRange},
		{"v=1;t=1;u=-infinity", ErrOutOfRange},
		{"v=1;t=1;u=-0.5", ErrOutOfRange},
		{"v=1;t=1;u=1000.0000001", ErrOutOfRange},
		{"v=1;t=1;u=1e400", ErrOutOfRange},
		{"v=1;t=1;u=-1e400", ErrOutOfRange},
		{"v=1;t=1;u=.5", ErrMalformed},
		{"v=1;t=1;u=5.", ErrMalformed},
		{"v=1;t=1;u=+1", ErrMalformed},
		{"v=1;t=1;u=1_0", ErrMalformed},
		{"v=1;t=1;u=0x1p-2", ErrMalformed},
		{"v=1;t=1;u=1e", ErrMalformed},
		{"v=1;t=1;u=1e+", ErrMalformed},
		{"v=1;t=1;s=busy", ErrOutOfRange},
		{"v=1;t=1;s=OK", ErrOutOfRange},
		{"v=1;t=1;e=-1", ErrOutOfRange},
		{"v=1;t=1;e=18446744073709551616", ErrOutOfRange},
		{"v=1;t=1;e=1a", ErrMalformed},
		// White space only around pairs, and no folded headers.
		{"v=1;t = 1", ErrMalformed},
		{"v=1;t= 1", ErrMalformed},
		{"v=1;t=1;x=a b", ErrMalformed},
		{"v=1;t=1, v=1;t=2", ErrMalformed},
		{"v=1;t=1\n", ErrMalformed},
		{"v=1;t=1;x=\x00", ErrMalformed},
		{"v=1;t=1;x=\xff", ErrMalformed},
		{"v=1;t=1;=1", ErrMalformed},
		{"v=1;t=1;k!=1", ErrMalformed},
		{"v=1;t=1;x=", ErrMalformed},
	}
	for _, tt := range tests {
		l, err := ParseLoad(tt.in)
		checkErr(t, tt.in, err, tt.want)
		if l != (Load{}) {
			t.Errorf("ParseLoad(%q) = %+v with an error, want the zero Load", tt.in, l)
		}
	}
}

// TestParseLoadErrorNamesValue checks that an error names the key and a
// bounded prefix of the value.
func TestParseLoadErrorNamesValue(t *testing.T) {
	in := "v=1;t=1;u=" + strings.Repeat("9", 400)
	_, err := ParseLoad(in)
	checkErr(t, in, err, ErrOutOfRange)
	if msg := err.Error(); !strings.Contains(msg, `u="99999`) || !strings.Contains(msg, `..."`) {
		t.Errorf("error %q does not name u and a clipped value", msg)
	}
}

func TestLoadValidate(t *testing.T) {
	ok := Load{TimeMillis: 1, Util: 1}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%+v): %v", ok, err)
	}
	bad := []Load{
		{},
		{TimeMillis: -1},
		{TimeMillis: 1, InFlight: -1},
		{TimeMillis: 1, InFlight: MaxInFlight + 1},
		{TimeMillis: 1, Capacity: -1},
		{TimeMillis: 1, Capacity: MaxInFlight + 1},
		{TimeMillis: 1, Util: -0.1},
		{TimeMillis: 1, Util: MaxUtil * 1.5},
		{TimeMillis: 1, Util: math.NaN()},
		{TimeMillis: 1, Util: math.Inf(1)},
		{TimeMillis: 1, State: StateDraining + 1},
	}
	for _, l := range bad {
		err := l.Validate()
		if !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Validate(%+v) = %v, want ErrOutOfRange", l, err)
		}
		// What Validate refuses, the receiver refuses too.
		if _, err := ParseLoad(l.String()); err == nil {
			t.Errorf("ParseLoad(%q) accepted an invalid Load", l.String())
		}
	}
}

// randLoad returns a valid Load, biased towards the edges of each range.
func randLoad(r *rand.Rand) Load {
	pick := func(edges []int, max int) int {
		if r.IntN(4) == 0 {
			return edges[r.IntN(len(edges))]
		}
		return r.IntN(max + 1)
	}
	edges := []int{0, 1, MaxInFlight - 1, MaxInFlight}
	l := Load{
		TimeMillis: 1 + r.Int64N(math.MaxInt64),
		InFlight:   pick(edges, MaxInFlight),
		Capacity:   pick(edges, MaxInFlight),
		State:      State(r.IntN(2)),
	}
	switch r.IntN(5) {
	case 0:
		l.Util = []float64{0, 5e-324, 1e-300, 1, MaxUtil, math.Nextafter(MaxUtil, 0)}[r.IntN(6)]
	case 1:
		l.Util = float64(r.IntN(1001))
	default:
		l.Util = r.Float64() * MaxUtil
	}
	switch r.IntN(3) {
	case 0:
	case 1:
		l.Epoch = r.Uint64()
	default:
		l.Epoch = uint64(r.IntN(100))
	}
	if r.IntN(8) == 0 {
		l.TimeMillis = []int64{1, math.MaxInt64}[r.IntN(2)]
	}
	return l
}

func TestLoadRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	for range 20000 {
		l := randLoad(r)
		if err := l.Validate(); err != nil {
			t.Fatalf("randLoad made an invalid %+v: %v", l, err)
		}
		buf = AppendLoad(buf[:0], l)
		if len(buf) > MaxLoadLen {
			t.Fatalf("%q is longer than MaxLoadLen", buf)
		}
		got, err := ParseLoad(string(buf))
		if err != nil {
			t.Fatalf("ParseLoad(%q): %v", buf, err)
		}
		if got != l {
			t.Fatalf("ParseLoad(%q) = %+v, want %+v", buf, got, l)
		}
	}
}

func TestParseLoadAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage counters make allocation counts meaningless")
	}
	for _, in := range []string{
		"v=1;t=1732770000123;q=3;c=4;u=0.75;s=draining;e=17",
		"v=1;t=1;x=1;y=2;z=3",
	} {
		if n := testing.AllocsPerRun(100, func() { _, _ = ParseLoad(in) }); n != 0 {
			t.Errorf("ParseLoad(%q) makes %v allocations, want 0", in, n)
		}
	}
	buf := make([]byte, 0, 128)
	l := Load{TimeMillis: 1732770000123, InFlight: 3, Capacity: 4, Util: 0.75, Epoch: 17}
	if n := testing.AllocsPerRun(100, func() { buf = AppendLoad(buf[:0], l) }); n != 0 {
		t.Errorf("AppendLoad makes %v allocations, want 0", n)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateOK: "ok", StateDraining: "draining", 9: "State(9)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", s, got, want)
		}
	}
}

var benchLoad = "v=1;t=1732770000123;q=3;c=4;u=0.75;s=draining;e=17"

func BenchmarkParseLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseLoad(benchLoad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendLoad(b *testing.B) {
	l := Load{TimeMillis: 1732770000123, InFlight: 3, Capacity: 4, Util: 0.75, State: StateDraining, Epoch: 17}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendLoad(buf[:0], l)
	}
}
