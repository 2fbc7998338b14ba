package cache

import (
	"bytes"
	"testing"
)

// FuzzDecode: decode never panics, accepts only the exact bytes encode
// produces for the body it returns (the format is canonical), and
// decodes everything encode produces.
func FuzzDecode(f *testing.F) {
	for _, body := range []string{"", "x", `{"payload":"abc"}`, "smartclient-cache v1 sha256= len=0\n"} {
		enc := encode([]byte(body))
		f.Add(enc)
		f.Add(enc[:len(enc)-1])
		f.Add(append(bytes.Clone(enc), 0))
	}
	f.Add([]byte("smartclient-cache v1 sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 len=00\n"))
	f.Add([]byte("smartclient-cache v2\n"))
	f.Add([]byte("smartclient-cache\n"))
	f.Add([]byte("smartclient-cache v1 sha256=x len=1 extra\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		body, err := decode(b)
		if err == nil {
			if !bytes.Equal(encode(body), b) {
				t.Fatalf("decode accepted %q, which is not encode(%q)", b, body)
			}
		} else if body != nil {
			t.Fatalf("decode(%q) returned a body with error %v", b, err)
		}
		if len(b) <= MaxSize {
			if got, err := decode(encode(b)); err != nil || !bytes.Equal(got, b) {
				t.Fatalf("decode(encode(%q)) = %q, %v", b, got, err)
			}
		}
	})
}
