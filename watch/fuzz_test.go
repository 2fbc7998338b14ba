package watch

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzParser: any byte stream ends in an error or events within bounds;
// the parser never panics or holds more than its limit.
func FuzzParser(f *testing.F) {
	for _, s := range []string{
		"id: 1\nevent: load\ndata: v=1;t=5\n\n",
		": hb\r\nretry: 5\r\nid: 2\r\nevent: members\r\ndata: v=1;e=1;m=http://a:1\r\n\r\n",
		"data: a\ndata: b\n\n",
		"data\n\nid\n\n",
		"bogus: 1\n\n",
		"id: 99999999999999999999\ndata: x\n\n",
		"data: " + string(bytes.Repeat([]byte{'x'}, 100)) + "\n\n",
		"\r\r\n\n",
	} {
		f.Add([]byte(s))
	}
	const max = 64
	f.Fuzz(func(t *testing.T, in []byte) {
		p := newParser(bytes.NewReader(in), max)
		w := &Watcher{}
		for range len(in) + 1 {
			ev, err := p.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
					!errors.Is(err, ErrGarbage) && !errors.Is(err, ErrLineTooLong) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(ev.data) > max {
				t.Fatalf("event data of %d bytes, limit %d", len(ev.data), max)
			}
			// Decoding must not panic either; its error is allowed.
			_ = w.dispatch(ev)
		}
		t.Fatalf("parser returned more events than input bytes")
	})
}
