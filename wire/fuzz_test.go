package wire

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func FuzzParseLoad(f *testing.F) {
	for _, s := range []string{
		"v=1;t=1732770000123;q=3;c=4;u=0.75;s=ok;e=17",
		"v=1;t=1;q=1048576;c=1048576;u=1000;s=draining;e=18446744073709551615",
		"v=1;t=9223372036854775807;u=5e-324",
		"v=1;t=1;u=1.7976931348623157e308",
		"v=1;t=1;u=-0",
		"v=1;t=1;u=1e-400",
		"v=1;t=1;u=NaN",
		"v=1;t=1;u=0x1p-2",
		"v=1;t=1;u=1_0",
		" \tv=1 ; t=2\t;q=3 ",
		"v=1;t=1;x=a=b;y-z.w_1=(1)",
		"v=1;t=1;x=1;x=2",
		"v=01;t=0010;q=-0",
		"v=2;t=1",
		"v=99999999999999999999;t=1",
		"t=1;v=1",
		"v=1;t=1;",
		"v=1;t=1, v=1;t=2",
		"v=1;t=1;q=-1;c=1048577;e=18446744073709551616",
		"v=1;t=1;s=busy",
		"",
		"v=1;t=1;x=" + strings.Repeat("a", MaxLoadLen-10),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLoad(s)
		if err != nil {
			checkSentinel(t, s, err)
			if len(s) > MaxLoadLen && !errors.Is(err, ErrTooLarge) {
				t.Errorf("ParseLoad of %d bytes: %v, want ErrTooLarge", len(s), err)
			}
			if l != (Load{}) {
				t.Errorf("ParseLoad(%q) = %v with an error", s, l)
			}
			return
		}
		if len(s) > MaxLoadLen {
			t.Fatalf("ParseLoad accepted %d bytes", len(s))
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("ParseLoad(%q) = %#v, which is out of bounds: %v", s, l, err)
		}
		if math.Signbit(l.Util) {
			t.Fatalf("ParseLoad(%q): u is negative zero", s)
		}
		enc := AppendLoad(nil, l)
		if len(enc) > MaxLoadLen {
			t.Fatalf("%#v encodes to %d bytes", l, len(enc))
		}
		l2, err := ParseLoad(string(enc))
		if err != nil {
			t.Fatalf("ParseLoad(%q), re-encoded from %q: %v", enc, s, err)
		}
		if l2 != l {
			t.Fatalf("round trip of %q through %q: %#v, want %#v", s, enc, l2, l)
		}
		if enc2 := AppendLoad(nil, l2); !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding is not canonical: %q then %q", enc, enc2)
		}
	})
}

func FuzzParseMembers(f *testing.F) {
	for _, s := range []string{
		"v=1;e=17;m=http://10.0.0.1:8080#w=2#z=eu-1;m=http://10.0.0.2:8080",
		"v=1;e=0",
		"v=1;e=18446744073709551615;m=tcp://h#w=1000000",
		"v=1;e=1;m=tcp://h#w=5e-324#z=" + strings.Repeat("z", MaxZoneLen),
		"v=1;e=1;m=x+y.z-1://u:p@[fe80::1%25eth0]:7/p?q=1",
		"v=1;e=1;m=https://a.example:443/p?q=1#z=Z.9_x-y#w=1e-3",
		" v=1 ;\te=3 ; m=grpc://[::1]:9 ",
		"v=1;e=1;n=2;m=http://h#p=1#q=a=b#w=3;o=(x)",
		"v=1;e=1;m=http://h;m=http://h",
		"v=1;e=1;m=http://h#w=1#w=2",
		"v=1;e=1;m=http://h#w=0",
		"v=1;e=1;m=http://h#w=1e5",
		"v=1;e=1;m=http://h#w=NaN",
		"v=1;e=1;m=http://h#z=eu/1",
		"v=1;e=1;m=http://h:",
		"v=1;e=1;m=http://:80",
		"v=1;e=1;m=HTTP://h",
		"v=1;e=1;m=h:80",
		"v=1;e=1;m=http://[::1",
		"v=1;e=1;m=http://h/%zz",
		"v=1;e=1;m=http://h#",
		"v=1;e=1;m=http://a, v=1;e=2;m=http://b",
		"v=2;e=1",
		"v=1;m=http://h",
		"v=1;e=1;m=http://h/" + strings.Repeat("p", MaxURLLen),
		manyMembers(20),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMembers(s)
		if err != nil {
			checkSentinel(t, s, err)
			if len(s) > MaxMembersLen && !errors.Is(err, ErrTooLarge) {
				t.Errorf("ParseMembers of %d bytes: %v, want ErrTooLarge", len(s), err)
			}
			if !reflect.DeepEqual(m, Members{}) {
				t.Errorf("ParseMembers(%q) = %#v with an error", s, m)
			}
			return
		}
		if len(s) > MaxMembersLen || len(m.Members) > MaxMembers {
			t.Fatalf("ParseMembers accepted %d bytes, %d members", len(s), len(m.Members))
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("ParseMembers(%q) = %#v, which is out of bounds: %v", s, m, err)
		}
		if m.Members != nil && len(m.Members) == 0 {
			t.Fatalf("ParseMembers(%q) returned an empty, non-nil member list", s)
		}
		enc := AppendMembers(nil, m)
		if len(enc) > MaxMembersLen || len(enc) != m.encodedLen() {
			t.Fatalf("%#v encodes to %d bytes, encodedLen %d", m, len(enc), m.encodedLen())
		}
		m2, err := ParseMembers(string(enc))
		if err != nil {
			t.Fatalf("ParseMembers(%q), re-encoded from %q: %v", enc, s, err)
		}
		if !reflect.DeepEqual(m2, m) {
			t.Fatalf("round trip of %q through %q: %#v, want %#v", s, enc, m2, m)
		}
		if enc2 := AppendMembers(nil, m2); !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding is not canonical: %q then %q", enc, enc2)
		}
	})
}
