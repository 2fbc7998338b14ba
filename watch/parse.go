package watch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Errors a stream can end with; Run counts them and reconnects.
var (
	// ErrLineTooLong: a line (or an event's data) exceeded Watcher.MaxLine.
	ErrLineTooLong = errors.New("watch: line too long")
	// ErrGarbage: the stream is not this protocol: an unknown field, a bad
	// id, an undecodable record, or the wrong content type.
	ErrGarbage = errors.New("watch: malformed stream")
)

// event is one dispatched SSE event.
type event struct {
	id   string // "" if the event had no id field
	kind string
	data []byte // valid until the next call to next
}

// parser reads SSE events with bounded memory. It is stricter than the
// SSE specification: this protocol uses only the fields id, event, data
// and retry, so any other field means the stream is not ours. Lines end
// with "\n" or "\r\n".
type parser struct {
	r    *bufio.Reader
	max  int
	data []byte
	kind []byte
	// onLine is called after every line, heartbeats included, so the
	// caller can tell the connection is alive.
	onLine func()
}

func newParser(r io.Reader, max int) *parser {
	return &parser{r: bufio.NewReaderSize(r, max+2), max: max}
}

// next returns the next event with data. Events with no data line are
// dropped, as the SSE specification says.
func (p *parser) next() (event, error) {
	var ev event
	p.data, p.kind = p.data[:0], p.kind[:0]
	hasData := false
	for {
		line, err := p.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return event{}, ErrLineTooLong
		}
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return event{}, err
		}
		line = line[:len(line)-1]
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) > p.max {
			return event{}, ErrLineTooLong
		}
		if p.onLine != nil {
			p.onLine()
		}
		if len(line) == 0 {
			if hasData {
				ev.kind = string(p.kind)
				ev.data = p.data
				return ev, nil
			}
			ev, p.kind = event{}, p.kind[:0]
			continue
		}
		if line[0] == ':' {
			continue // comment: heartbeat
		}
		name, val, found := bytes.Cut(line, []byte{':'})
		if found && len(val) > 0 && val[0] == ' ' {
			val = val[1:]
		}
		switch string(name) {
		case "data":
			if hasData {
				if len(p.data)+1+len(val) > p.max {
					return event{}, ErrLineTooLong
				}
				p.data = append(p.data, '\n')
			}
			p.data = append(p.data, val...)
			hasData = true
		case "event":
			p.kind = append(p.kind[:0], val...)
		case "id":
			if !validID(val) {
				return event{}, fmt.Errorf("%w: id %q", ErrGarbage, clip(val))
			}
			ev.id = string(val)
		case "retry":
			// The client's own backoff rules; the hint is ignored.
		default:
			return event{}, fmt.Errorf("%w: field %q", ErrGarbage, clip(name))
		}
	}
}

// MaxIDLen bounds an event id; it travels back in a request header.
const MaxIDLen = 64

// validID accepts visible ASCII ids of at most MaxIDLen bytes.
func validID(b []byte) bool {
	if len(b) == 0 || len(b) > MaxIDLen {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func clip(b []byte) string {
	if len(b) > 32 {
		b = b[:32]
	}
	return string(b)
}
