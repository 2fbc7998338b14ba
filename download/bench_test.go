package download

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sliceMirror serves "Range: bytes=A-B" straight from memory, so that a
// benchmark's allocations are the client's, not a file server's copy
// buffers (http.ServeContent allocates 32 KiB a reply).
type sliceMirror []byte

func (m sliceMirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a, b, _ := strings.Cut(strings.TrimPrefix(r.Header.Get("Range"), "bytes="), "-")
	from, _ := strconv.Atoi(a)
	to, _ := strconv.Atoi(b)
	to = min(to, len(m)-1)
	w.Header().Set("ETag", `"v1"`)
	w.Header().Set("Content-Range", ContentRange{int64(from), int64(to), int64(len(m))}.String())
	w.Header().Set("Content-Length", strconv.Itoa(to-from+1))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(m[from : to+1])
}

// BenchmarkGet downloads one file from three in-process mirrors, in 1 MiB
// chunks and in 8 chunks whatever the size. B/op grows with the number of
// chunks (a request each), not with the bytes: the data goes through
// Parallel pooled 64 KiB buffers straight to the file.
func BenchmarkGet(b *testing.B) {
	for _, size := range []int{8 << 20, 64 << 20} {
		for _, chunks := range []string{"1MiB", "8chunks"} {
			b.Run(fmt.Sprintf("%dMiB/%s", size>>20, chunks), func(b *testing.B) {
				data := sliceMirror(randomBytes(size, 30))
				d := newDirector(b, "p2c", serve(b, data), serve(b, data), serve(b, data))
				dst := filepath.Join(b.TempDir(), "file")
				cfg := Config{}
				if chunks == "8chunks" {
					cfg.ChunkSize = int64(size / 8)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Get(b.Context(), d, "/file", dst, cfg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
