package smarthttp

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/smartclient/smartclient/director"
)

// respBody wraps a reply's body so that the attempt that fetched it ends
// when the caller is done with it: on Close, or on reading EOF.
type respBody struct {
	rc io.ReadCloser
	a  *director.Attempt
	// cancel ends the request's own context and stop unhooks it from the
	// attempt's; both nil when the request runs under the caller's context.
	cancel context.CancelCauseFunc
	stop   func() bool
	after  context.CancelCauseFunc // optional: ends Apply's context
	done   atomic.Bool
}

func (b *respBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		// net/http has put the connection back in its pool before
		// returning EOF, so ending the request's context now is harmless.
		b.finish()
	}
	return n, err
}

func (b *respBody) Close() error {
	err := b.rc.Close()
	b.finish()
	return err
}

// detach unhooks the request from the attempt's context, so the body stays
// readable after the director ends the attempt.
func (b *respBody) detach() {
	if b.stop != nil {
		b.stop()
	}
}

// unlink ends the request's own context, if it has one. Unhooking first
// spares the goroutine that ending the attempt's context would start.
func (b *respBody) unlink(cause error) {
	if b.stop != nil {
		b.stop()
		b.cancel(cause)
	}
}

// finish ends the attempt, once.
func (b *respBody) finish() {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	b.unlink(nil)
	b.a.Release()
	if b.after != nil {
		b.after(nil)
	}
}

// rwBody is the body of a 101 Switching Protocols reply, which net/http
// makes writable.
type rwBody struct {
	*respBody
	w io.Writer
}

func (b *rwBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// sharedBody lets the attempts of a request whose body has no GetBody share
// the body while none of them has read from it: a request that could not
// even connect may then go to another member with its body intact. Each
// attempt gets its own handle; handing out a new one disables the last.
// The base transport closes a handle when it is done with it, even after a
// failed dial; that close is held back until RoundTrip knows no further
// attempt will need the body.
type sharedBody struct {
	mu       sync.Mutex
	rc       io.ReadCloser
	cur      *bodyHandle // the handle of the latest attempt
	read     bool        // an attempt has read from rc
	closeDue bool        // cur was closed before the outcome was known
	final    bool        // no further attempt will be made
	closed   bool        // rc is closed
}

var (
	errBodyMoved  = errors.New("smarthttp: request body was handed to another attempt")
	errBodyUsed   = errors.New("smarthttp: request body was already sent and has no GetBody")
	errBodyClosed = errors.New("smarthttp: read on closed request body")
)

// handle returns the body for a new attempt, or errBodyUsed if it can no
// longer be sent.
func (s *sharedBody) handle() (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.read || s.final || s.closed {
		return nil, errBodyUsed
	}
	h := &bodyHandle{s: s}
	s.cur = h
	s.closeDue = false
	return h, nil
}

// rewindable reports whether another attempt could send the body.
func (s *sharedBody) rewindable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.read && !s.closed
}

// finish is called when no further attempt will be made: it performs a
// close that was held back, or closes a body no attempt took.
func (s *sharedBody) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.final = true
	if s.cur == nil || s.closeDue {
		s.closeLocked()
	}
}

func (s *sharedBody) closeLocked() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.rc.Close()
}

type bodyHandle struct{ s *sharedBody }

func (h *bodyHandle) Read(p []byte) (int, error) {
	s := h.s
	s.mu.Lock()
	switch {
	case s.cur != h:
		s.mu.Unlock()
		return 0, errBodyMoved
	case s.closed:
		s.mu.Unlock()
		return 0, errBodyClosed
	}
	// Marked before reading: once set, no other handle is handed out, so
	// rc is read through this handle only and needs no lock.
	s.read = true
	s.mu.Unlock()
	return s.rc.Read(p)
}

func (h *bodyHandle) Close() error {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.cur != h:
		return nil
	case s.read || s.final:
		return s.closeLocked()
	}
	s.closeDue = true
	return nil
}
