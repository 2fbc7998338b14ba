package download

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/smartclient/smartclient/director"
)

// ftpAction is Action on an FTP mirror (ftp://HOST[:PORT][/PREFIX]): an
// anonymous login, SIZE and MDTM to check the version, then REST FROM and
// RETR, reading only up to to. Each attempt has connections of its own,
// closed when it ends: a transfer stopped at the end of a chunk cannot be
// reused anyway (the server still sends the rest of the file).
//
// An FTP server has no ETag: its version is its size and MDTM time, which
// must equal the first reply's size and date (an HTTP mirror's
// Last-Modified, when an HTTP mirror answered first). If the first reply
// had only an ETag, an FTP mirror's version cannot be checked and it is
// refused.
func (s *span) ftpAction(ctx context.Context, mirror string, from, to int64) error {
	g := s.g
	fail := func(err error, class director.Class) error {
		return director.WithClass(&MirrorError{Mirror: mirror, From: from, To: to, Err: err}, class)
	}
	fc, err := ftpOpen(ctx, mirror, g.path)
	if fc != nil {
		defer fc.close()
	}
	if err != nil {
		fe := err.(*ftpError)
		return fail(fe.err, fe.class)
	}
	size, mtime := fc.size, fc.mtime
	if !g.metaKnown() {
		m := ftpMeta(size, mtime)
		if err := g.wanted(m, true); err != nil {
			return fail(err, director.MaybeProcessed)
		}
		if err := g.checkSize(size); err != nil {
			return fail(err, director.Permanent)
		}
		g.setMeta(m)
		if to > size || to < 0 {
			to = size
		}
		s.setEnd(to)
	}
	if err := g.meta.sameFTPVersion(size, mtime); err != nil {
		return fail(err, director.MaybeProcessed)
	}
	if from == to {
		return nil // the first chunk of an empty file
	}
	resp, err := fc.c.RetrFrom(fc.file, uint64(from))
	if err != nil {
		return fail(fmt.Errorf("REST %d, RETR %s: %w", from, fc.file, ctxErr(ctx, err)), director.MaybeProcessed)
	}
	// No resp.Close: it would wait for the end of a transfer we stop
	// early; fc.close drops the connections instead.
	return s.copy(mirror, readerFunc(func(p []byte) (int, error) {
		n, err := resp.Read(p)
		if err != nil && err != io.EOF {
			err = ctxErr(ctx, err)
		}
		return n, err
	}), from, to, fail)
}

// ftpMeta is what an FTP server's SIZE and MDTM say about the file.
func ftpMeta(size int64, mtime time.Time) meta {
	m := meta{size: size, mtime: mtime}
	if !mtime.IsZero() {
		m.modified = mtime.UTC().Format(http.TimeFormat)
	}
	return m
}

// ftpConn is an FTP session logged in to a mirror, with the file's SIZE
// and MDTM (zero if the server has no MDTM).
type ftpConn struct {
	c     *ftp.ServerConn
	file  string
	size  int64
	mtime time.Time
	close func() // closes every connection of the session
}

// ftpError is a failure of ftpOpen with the director's class for it.
type ftpError struct {
	err   error
	class director.Class
}

func (e *ftpError) Error() string { return e.err.Error() }

// ftpOpen dials mirror, logs in anonymously and asks for SIZE and MDTM of
// path. The session ends when ctx does, or when the caller calls close,
// which it must do whenever the returned *ftpConn is not nil. Errors are
// *ftpError.
func ftpOpen(ctx context.Context, mirror, path string) (*ftpConn, error) {
	fail := func(err error, class director.Class) error { return &ftpError{err, class} }
	u, err := url.Parse(mirror)
	if err != nil || u.Host == "" {
		return nil, fail(fmt.Errorf("mirror %s: want ftp://HOST[:PORT][/PREFIX]", quote(mirror)), director.NotReached)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "21")
	}
	file := u.Path + path
	if i := len(u.Path); i > 0 && u.Path[i-1] == '/' {
		file = u.Path[:i-1] + path
	}

	// Every connection, control and data, is dialled here, so that the
	// context ending closes them all: the client library has no context
	// beyond the dial.
	var mu sync.Mutex
	var conns []net.Conn
	closed := false
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
	}
	stop := context.AfterFunc(ctx, closeAll)
	fc := &ftpConn{file: file, close: func() { stop(); closeAll() }}
	var dialer net.Dialer
	dial := func(network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			return nil, net.ErrClosed
		}
		conns = append(conns, c)
		return c, nil
	}
	if fc.c, err = ftp.Dial(host, ftp.DialWithDialFunc(dial)); err != nil {
		return fc, fail(ctxErr(ctx, err), director.Classify(err))
	}
	if err := fc.c.Login("anonymous", "anonymous"); err != nil {
		return fc, fail(fmt.Errorf("login: %w", ctxErr(ctx, err)), director.MaybeProcessed)
	}
	if fc.size, err = fc.c.FileSize(file); err != nil {
		return fc, fail(fmt.Errorf("SIZE %s: %w", file, ctxErr(ctx, err)), director.MaybeProcessed)
	}
	if fc.c.IsGetTimeSupported() {
		if fc.mtime, err = fc.c.GetTime(file); err != nil {
			return fc, fail(fmt.Errorf("MDTM %s: %w", file, ctxErr(ctx, err)), director.MaybeProcessed)
		}
	}
	return fc, nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// ctxErr reports a failure caused by the attempt's context ending (the
// connections were closed under the client) as the context's error.
func ctxErr(ctx context.Context, err error) error {
	if cerr := context.Cause(ctx); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// sameFTPVersion checks an FTP mirror's SIZE and MDTM against the first
// reply.
func (m *meta) sameFTPVersion(size int64, mtime time.Time) error {
	switch {
	case size != m.size:
		return fmt.Errorf("%w: SIZE %d, want %d", ErrVersion, size, m.size)
	case !m.mtime.IsZero() && mtime.IsZero():
		return fmt.Errorf("%w: the server has no MDTM to compare with %s", ErrVersion, m.modified)
	case !m.mtime.IsZero() && !mtime.Equal(m.mtime):
		return fmt.Errorf("%w: MDTM %s, want %s", ErrVersion, mtime.UTC().Format(http.TimeFormat), m.modified)
	case m.mtime.IsZero() && m.etag != "":
		return fmt.Errorf("%w: an FTP mirror has no ETag to compare with %s", ErrVersion, quote(m.etag))
	}
	return nil
}
