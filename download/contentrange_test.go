package download

import (
	"strings"
	"testing"
)

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ContentRange
		err  string // substring of the error; "" means success
	}{
		{"bytes 0-99/1000", ContentRange{0, 99, 1000}, ""},
		{"bytes 0-0/1", ContentRange{0, 0, 1}, ""},
		{"BYTES 5-9/*", ContentRange{5, 9, -1}, ""},
		{"  bytes  10-19/20 ", ContentRange{10, 19, 20}, ""},
		{"bytes */0", ContentRange{-1, -1, 0}, ""},
		{"bytes */1234", ContentRange{-1, -1, 1234}, ""},
		{"bytes 0-9223372036854775806/9223372036854775807", ContentRange{0, 9223372036854775806, 9223372036854775807}, ""},
		{"", ContentRange{}, `want "bytes`},
		{"bytes", ContentRange{}, `want "bytes`},
		{"items 0-1/2", ContentRange{}, `want "bytes`},
		{"bytes 0-1", ContentRange{}, "no /TOTAL"},
		{"bytes */*", ContentRange{}, "neither range nor total"},
		{"bytes 5/10", ContentRange{}, "no FIRST-LAST"},
		{"bytes 9-5/10", ContentRange{}, "FIRST after LAST"},
		{"bytes 0-10/10", ContentRange{}, "LAST not below TOTAL"},
		{"bytes -1-5/10", ContentRange{}, "not a decimal"},
		{"bytes +1-5/10", ContentRange{}, "not a decimal"},
		{"bytes 0-5/+10", ContentRange{}, "not a decimal"},
		{"bytes 0x1-5/10", ContentRange{}, "not a decimal"},
		{"bytes 1_0-50/100", ContentRange{}, "not a decimal"},
		{"bytes 0-5/99999999999999999999", ContentRange{}, "not a decimal"},
		{"bytes 0-9223372036854775808/*", ContentRange{}, "not a decimal"},
		{"bytes 0-1/2, bytes 3-4/5", ContentRange{}, "not a decimal"},
		{"bytes 0 - 1/2", ContentRange{}, "not a decimal"},
	} {
		got, err := ParseContentRange(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParseContentRange(%q): %v", tc.in, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("ParseContentRange(%q) = %+v, want %+v", tc.in, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseContentRange(%q) = %+v, %v; want error with %q", tc.in, got, err, tc.err)
		}
	}
}

func TestRangeHeader(t *testing.T) {
	for _, tc := range []struct {
		from, to int64
		want     string
	}{{0, 1, "bytes=0-0"}, {0, 1 << 20, "bytes=0-1048575"}, {100, -1, "bytes=100-"}} {
		if got := rangeHeader(tc.from, tc.to); got != tc.want {
			t.Errorf("rangeHeader(%d, %d) = %q, want %q", tc.from, tc.to, got, tc.want)
		}
	}
}

// FuzzParseContentRange: whatever a mirror sends, the parser either refuses
// it or returns a range that is consistent and formats back to itself.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{
		"bytes 0-99/1000", "bytes */0", "bytes 5-9/*", "bytes 9-5/10", "bytes 0-10/10",
		"bytes -1-5/10", "bytes 0-9223372036854775806/9223372036854775807", " bytes  1-2/3 ",
		"bytes */*", "", "bytes 0-5/99999999999999999999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseContentRange(s)
		if err != nil {
			if len(err.Error()) > 200 {
				t.Fatalf("error too long (%d bytes) for network input", len(err.Error()))
			}
			return
		}
		if c.Unsatisfied() {
			if c.Last != -1 || c.Total < 0 {
				t.Fatalf("%q: unsatisfied range %+v", s, c)
			}
		} else if c.First < 0 || c.First > c.Last || (c.Total >= 0 && c.Last >= c.Total) {
			t.Fatalf("%q: inconsistent range %+v", s, c)
		}
		again, err := ParseContentRange(c.String())
		if err != nil || again != c {
			t.Fatalf("%q: %+v formats as %q, which parses as %+v, %v", s, c, c.String(), again, err)
		}
	})
}
