package frontend

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseIdent(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Banner
		err  error
	}{
		{"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\r\n", Banner{"2.0", "OpenSSH_9.2p1", "Debian-2+deb12u6"}, nil},
		{"SSH-2.0-OpenSSH_9.2p1\n", Banner{"2.0", "OpenSSH_9.2p1", ""}, nil},
		{"SSH-1.99-Cisco-1.25", Banner{}, ErrNotSSH}, // '-' in the software version
		{"SSH-1.99-Cisco_1.25", Banner{"1.99", "Cisco_1.25", ""}, nil},
		{"SSH-2.0-dropbear_2022.83 with comments here", Banner{"2.0", "dropbear_2022.83", "with comments here"}, nil},
		{"SSH-1.5-OldServer", Banner{}, ErrOldProtocol},
		{"SSH-3.0-Future", Banner{}, ErrNotSSH},
		{"SSH-2.0-", Banner{}, ErrNotSSH},
		{"SSH-2.0", Banner{}, ErrNotSSH},
		{"SSH--x", Banner{}, ErrNotSSH},
		{"SSH-2.0-a\tb", Banner{}, ErrNotSSH},
		{"SSH-2.0-ok bad\x01comment", Banner{}, ErrNotSSH},
		{"SSH-2.0-ok caf\xc3\xa9", Banner{}, ErrNotSSH},
		{"HTTP/1.1 400 Bad Request\r\n", Banner{}, ErrNotSSH},
		{"", Banner{}, ErrNotSSH},
		{"SSH-2.0-" + strings.Repeat("x", 245), Banner{"2.0", strings.Repeat("x", 245), ""}, nil}, // 253 + CR LF = 255
		{"SSH-2.0-" + strings.Repeat("x", 246), Banner{}, ErrBannerTooLong},
	} {
		got, err := ParseIdent(tc.line)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("ParseIdent(%q) = %+v, %v; want %+v, %v", tc.line, got, err, tc.want, tc.err)
		}
		if err == nil && got.String() != strings.TrimRight(tc.line, "\r\n") {
			t.Errorf("String() = %q", got.String())
		}
	}
}

func TestReadBanner(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     string // the banner's String, or "" for an error
		err      error
	}{
		{"openssh", "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\r\n", "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6", nil},
		{"then kex data", "SSH-2.0-x\r\n\x00\x00\x04\x1c\x0a\x14binary", "SSH-2.0-x", nil},
		{"preamble lines", "Welcome\r\nto the cluster\r\nSSH-2.0-x\r\n", "SSH-2.0-x", nil},
		{"lf only", "SSH-2.0-x\n", "SSH-2.0-x", nil},
		{"no line end", "SSH-2.0-x", "", ErrNotSSH},
		{"empty", "", "", ErrNotSSH},
		{"http", "HTTP/1.1 400 Bad Request\r\n\r\n", "", ErrNotSSH},
		{"nul in preamble", "hello\x00\r\nSSH-2.0-x\r\n", "", ErrNotSSH},
		{"too long ident", "SSH-2.0-" + strings.Repeat("y", 300) + "\r\n", "", ErrBannerTooLong},
		{"endless preamble", strings.Repeat("z", 3*MaxBannerBytes), "", ErrBannerTooLong},
		{"many preamble lines", strings.Repeat("line\r\n", 2000) + "SSH-2.0-x\r\n", "", ErrBannerTooLong},
		{"ssh1", "SSH-1.5-old\n", "", ErrOldProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &countingReader{r: strings.NewReader(tc.in)}
			b, err := ReadBanner(r)
			if !errors.Is(err, tc.err) || (err == nil && b.String() != tc.want) {
				t.Fatalf("ReadBanner = %q, %v; want %q, %v", b, err, tc.want, tc.err)
			}
			if r.n > MaxBannerBytes {
				t.Errorf("read %d bytes, more than %d", r.n, MaxBannerBytes)
			}
		})
	}
}

type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzReadBanner: whatever a peer sends, ReadBanner reads at most
// MaxBannerBytes, never panics, and a banner it accepts is a valid
// identification that ParseIdent reads back the same.
func FuzzReadBanner(f *testing.F) {
	for _, s := range []string{
		"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\r\n", "x\r\nSSH-1.99-y z\n", "SSH-1.5-a\n",
		"HTTP/1.0 200 OK\r\n", "SSH-2.0-\r\n", "\x00", "SSH-2.0-a b\x00c\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &countingReader{r: bytes.NewReader(data)}
		b, err := ReadBanner(r)
		if r.n > MaxBannerBytes {
			t.Fatalf("read %d bytes", r.n)
		}
		if err != nil {
			if !errors.Is(err, ErrNotSSH) && !errors.Is(err, ErrOldProtocol) && !errors.Is(err, ErrBannerTooLong) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if b.Proto != "2.0" && b.Proto != "1.99" || b.Software == "" || len(b.String())+2 > MaxIdentLen {
			t.Fatalf("accepted %+v", b)
		}
		back, err := ParseIdent(b.String() + "\r\n")
		if err != nil || back != b {
			t.Fatalf("round trip of %q: %+v, %v", b, back, err)
		}
	})
}
