package cert

import (
	"strings"
	"testing"
)

func TestParseName(t *testing.T) {
	fp := Fingerprint(pubOf(testKey(1)))
	tests := []struct {
		in   string
		want Name
		ok   bool
	}{
		{"service://chat", Name{Service: "chat"}, true},
		{"service://chat.eu-1", Name{Service: "chat.eu-1"}, true},
		{"service://chat~" + fp, Name{Service: "chat", Fingerprint: fp}, true},
		{"service://9", Name{Service: "9"}, true},
		{"service://" + strings.Repeat("a", 63), Name{Service: strings.Repeat("a", 63)}, true},
		{"service://" + strings.Repeat("a", 64), Name{}, false},
		{"chat", Name{}, false},
		{"http://chat", Name{}, false},
		{"service://", Name{}, false},
		{"service://Chat", Name{}, false},
		{"service://-chat", Name{}, false},
		{"service://chat/x", Name{}, false},
		{"service://chat~", Name{}, false},
		{"service://chat~" + strings.ToUpper(fp), Name{}, false},
		{"service://chat~" + fp[:51], Name{}, false},
		{"service://chat~" + fp + "~" + fp, Name{}, false},
		{"service://chat~" + fp[:51] + "1", Name{}, false},
	}
	for _, tt := range tests {
		got, err := ParseName(tt.in)
		if tt.ok != (err == nil) || got != tt.want {
			t.Errorf("ParseName(%q) = %+v, %v", tt.in, got, err)
			continue
		}
		if err != nil {
			wantOnly(t, err, ErrBadName)
		} else if got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}
