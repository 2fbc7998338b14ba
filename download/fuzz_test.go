package download

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// cannedMirror answers every request with the same reply, built from
// fuzz input: whatever a mirror says.
type cannedMirror struct {
	status                      int
	contentRange, etag, lastMod string
	length                      int64 // Content-Length; -1: none
	body                        []byte
}

func (c *cannedMirror) RoundTrip(r *http.Request) (*http.Response, error) {
	h := http.Header{}
	for k, v := range map[string]string{"Content-Range": c.contentRange, "Etag": c.etag, "Last-Modified": c.lastMod} {
		if v != "" {
			h.Set(k, v)
		}
	}
	return &http.Response{
		StatusCode: c.status, Header: h, ContentLength: c.length, Request: r,
		Body: io.NopCloser(bytes.NewReader(c.body)),
	}, nil
}

// FuzzReply: whatever a mirror replies, Get does not panic or hang, leaves
// no temporary file when it fails, and when it succeeds the file has the
// size the result reports and every byte of it was received once.
func FuzzReply(f *testing.F) {
	f.Add(206, "bytes 0-99/100", `"v1"`, "", int64(100), uint16(100))
	f.Add(206, "bytes 0-1023/3000", `"v1"`, "", int64(1024), uint16(1024))
	f.Add(206, "bytes 0-1023/3000", "", "Mon, 02 Jan 2006 15:04:05 GMT", int64(1024), uint16(500))
	f.Add(200, "", `W/"x"`, "", int64(3000), uint16(3000))
	f.Add(200, "", "", "", int64(-1), uint16(77))
	f.Add(416, "bytes */0", "", "", int64(0), uint16(0))
	f.Add(206, "bytes 5-9/10", `"v1"`, "", int64(5), uint16(5))
	f.Add(206, "bytes 0-99/*", `"v1"`, "", int64(100), uint16(100))
	f.Add(500, "", "", "", int64(0), uint16(0))
	f.Fuzz(func(t *testing.T, status int, contentRange, etag, lastMod string, length int64, n uint16) {
		if status < 100 || status > 999 {
			return
		}
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(i)
		}
		if length < -1 || length > 1<<20 {
			length = -1
		}
		m := &cannedMirror{status: status, contentRange: contentRange, etag: etag, lastMod: lastMod, length: length, body: body}
		dir := t.TempDir()
		dst := filepath.Join(dir, "f")
		d := newDirector(t, "round-robin", "http://m1.invalid", "http://m2.invalid")
		res, err := Get(t.Context(), d, "/f", dst, Config{ChunkSize: 1024, Parallel: 2, MaxSize: 1 << 20, Client: &http.Client{Transport: m}})
		ents, _ := os.ReadDir(dir)
		if err != nil {
			if len(ents) != 0 {
				t.Fatalf("failed (%v) and left %d files", err, len(ents))
			}
			return
		}
		fi, serr := os.Stat(dst)
		if serr != nil || len(ents) != 1 || fi.Size() != res.Size || res.Fetched != res.Size {
			t.Fatalf("succeeded with %d files, size %v (%v), result %+v; reply %d %q %s",
				len(ents), fi, serr, res, status, contentRange, strconv.Itoa(int(n)))
		}
	})
}
