package agent

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseCmdOutput(t *testing.T) {
	good := map[string]float64{
		"3\n":                                3,
		"  0.75  \nrest\n":                   0.75,
		"12":                                 12,
		"1e3\n":                              1000,
		"0\r\n":                              0,
		"42 \n" + strings.Repeat("x", 10000): 42,
	}
	for in, want := range good {
		if got, err := ParseCmdOutput([]byte(in)); err != nil || got != want {
			t.Errorf("ParseCmdOutput(%.20q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := []string{"", "\n3\n", "abc\n", "NaN", "nan", "inf", "+Inf", "-1", "1e10", "0x10", "1_000", "3 4",
		strings.Repeat("1", 100), "1e999", "--1", "\x00"}
	for _, in := range bad {
		if v, err := ParseCmdOutput([]byte(in)); err == nil {
			t.Errorf("ParseCmdOutput(%.20q) = %v, want an error", in, v)
		}
	}
}

func FuzzParseCmdOutput(f *testing.F) {
	for _, s := range []string{"3\n", " 0.5 ", "1e3", "-0", "NaN", "inf", "1e999", "x", "\n", "9999999999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseCmdOutput(b)
		if err != nil {
			if v != 0 {
				t.Errorf("value %v with error %v", v, err)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error of %d bytes: the input is not bounded in it", len(err.Error()))
			}
			return
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > MaxCmdValue {
			t.Errorf("accepted absurd value %v from %q", v, b)
		}
		// A value it accepts survives being printed and read again.
		again, err := ParseCmdOutput([]byte(strconv.FormatFloat(v, 'g', -1, 64) + "\n"))
		if err != nil || again != v {
			t.Errorf("round trip of %v: %v, %v", v, again, err)
		}
	})
}

func TestShellCommand(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte("7\n"+strings.Repeat("y", 1<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, line string
		want       float64
		err        string // substring of the error; "" = success
	}{
		{"number", "echo 2.5", 2.5, ""},
		{"pipeline", "printf '1\\n2\\n3\\n' | wc -l", 3, ""},
		{"big output is cut, first line counts", "cat " + big, 7, ""},
		{"not a number", "echo busy", 0, "not a decimal number"},
		{"empty", "true", 0, "empty"},
		{"fails", "echo oops >&2; exit 3", 0, `exit status 3: "oops"`},
		{"NaN", "echo NaN", 0, "not a decimal number"},
		{"negative", "echo -4", 0, "out of range"},
		{"hangs", "sleep 30", 0, "timed out"},
		{"hangs with a child holding stdout", "(sleep 30; echo 1) & sleep 30", 0, "timed out"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			v, err := ShellCommand{Line: tc.line, Timeout: 300 * time.Millisecond}.Run(context.Background())
			if tc.err == "" {
				if err != nil || v != tc.want {
					t.Fatalf("Run = %v, %v; want %v", v, err, tc.want)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Run = %v, %v; want an error containing %q", v, err, tc.err)
			}
			// The timeout bounds every run, whatever the command does; the
			// bound is loose because the machine is shared.
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("run took %v", d)
			}
		})
	}
}
