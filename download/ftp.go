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
	u, err := url.Parse(mirror)
	if err != nil || u.Host == "" {
		return fail(fmt.Errorf("mirror %s: want ftp://HOST[:PORT][/PREFIX]", quote(mirror)), director.NotReached)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "21")
	}
	file := u.Path + g.path
	if i := len(u.Path); i > 0 && u.Path[i-1] == '/' {
		file = u.Path[:i-1] + g.path
	}

	// Every connection, control and data, is dialled here, so that the
	// attempt's context ending closes them all: the client library has no
	// context beyond the dial.
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
	defer stop()
	defer closeAll()
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
	c, err := ftp.Dial(host, ftp.DialWithDialFunc(dial))
	if err != nil {
		return fail(ctxErr(ctx, err), director.Classify(err))
	}
	if err := c.Login("anonymous", "anonymous"); err != nil {
		return fail(fmt.Errorf("login: %w", ctxErr(ctx, err)), director.MaybeProcessed)
	}
	size, err := c.FileSize(file)
	if err != nil {
		return fail(fmt.Errorf("SIZE %s: %w", file, ctxErr(ctx, err)), director.MaybeProcessed)
	}
	var mtime time.Time
	if c.IsGetTimeSupported() {
		if mtime, err = c.GetTime(file); err != nil {
			return fail(fmt.Errorf("MDTM %s: %w", file, ctxErr(ctx, err)), director.MaybeProcessed)
		}
	}
	if !g.metaKnown() {
		if err := g.checkSize(size); err != nil {
			return fail(err, director.Permanent)
		}
		m := meta{size: size, mtime: mtime}
		if !mtime.IsZero() {
			m.modified = mtime.UTC().Format(http.TimeFormat)
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
	resp, err := c.RetrFrom(file, uint64(from))
	if err != nil {
		return fail(fmt.Errorf("REST %d, RETR %s: %w", from, file, ctxErr(ctx, err)), director.MaybeProcessed)
	}
	// No resp.Close: it would wait for the end of a transfer we stop
	// early; closeAll drops the connections instead.
	return s.copy(mirror, readerFunc(func(p []byte) (int, error) {
		n, err := resp.Read(p)
		if err != nil && err != io.EOF {
			err = ctxErr(ctx, err)
		}
		return n, err
	}), from, to, fail)
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
