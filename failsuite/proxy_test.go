package failsuite

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseListening(t *testing.T) {
	tests := []struct {
		line, want string
		ok         bool
	}{
		{"listening: http://127.0.0.1:41234 (stats /_smartclient/stats, metrics /metrics)", "http://127.0.0.1:41234", true},
		{"listening: http://[::1]:80", "http://[::1]:80", true},
		{"listening: http://127.0.0.1", "", false}, // no port
		{"listening: https://127.0.0.1:1", "", false},
		{"listening: ", "", false},
		{"listening:", "", false},
		{"member: http://10.0.0.1:8080", "", false},
		{"listening: http://127.0.0.1:1/x", "", false},
	}
	for _, tc := range tests {
		got, ok := parseListening(tc.line)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseListening(%q) = %q, %v; want %q, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseListening(f *testing.F) {
	f.Add("listening: http://127.0.0.1:41234 (stats /_smartclient/stats)")
	f.Add("listening: ")
	f.Add("listening: http://[::1")
	f.Fuzz(func(t *testing.T, line string) {
		u, ok := parseListening(line)
		if !ok {
			return
		}
		p, err := url.Parse(u)
		if err != nil || p.Scheme != "http" || p.Port() == "" || !strings.HasPrefix(u, "http://") {
			t.Fatalf("parseListening(%q) accepted %q", line, u)
		}
	})
}
