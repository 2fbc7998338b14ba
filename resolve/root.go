package resolve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// MaxCertSize is the largest certificate a root may send: 256 KiB, the
// same bound package cert parses. Anything larger is an error, never
// truncated.
const MaxCertSize = 256 << 10

// WellKnownPrefix is the URL path under an HTTP root's base where
// certificates are published: BASE/.well-known/smartclient/SERVICE.cert.
const WellKnownPrefix = "/.well-known/smartclient/"

// CertSuffix ends the file name of a published certificate, both at the
// well-known URL and in a directory root.
const CertSuffix = ".cert"

// Root is a place certificates are published. Fetch returns the bytes
// published for service without judging them; it must honour ctx (return
// promptly once ctx is done), never return more than its size limit
// (MaxCertSize unless configured), and return errors that name the root
// (a *RootError), wrapping ErrNotFound when the root answered that it has
// nothing for service and ErrTooLarge when the answer was over the limit.
// Fetch may be called concurrently.
type Root interface {
	Fetch(ctx context.Context, service string) ([]byte, error)
	// String names the root in outcomes and errors; for the roots in
	// this package it is a form ParseRoot accepts.
	String() string
}

var serviceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// CheckService reports whether name is a service name the roots can look
// up: [a-z0-9][a-z0-9.-]{0,62}, the certificate's own rule. The rule keeps
// names safe inside URL paths and file names (no '/', no leading '.').
func CheckService(name string) error {
	if !serviceRE.MatchString(name) {
		return fmt.Errorf("resolve: invalid service name %q (want [a-z0-9][a-z0-9.-]{0,62})", name)
	}
	return nil
}

// ParseRoot parses a root as written on the command line or in a
// certificate's roots list:
//
//	https://HOST[:PORT][/PREFIX]   HTTPRoot (also http://)
//	dns://SERVER[:PORT]/ZONE       DNSRoot (port 53 by default)
//	file:///DIR                    DirRoot
//	/DIR, ./DIR, DIR               DirRoot (a plain path)
func ParseRoot(s string) (Root, error) {
	if s == "" {
		return nil, errors.New("resolve: empty root")
	}
	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		if first, _, _ := strings.Cut(s, "/"); strings.Contains(first, ":") && !filepath.IsAbs(s) {
			return nil, fmt.Errorf("resolve: root %q is neither a URL nor a directory path (want https://HOST, http://HOST, dns://SERVER/ZONE, file:///DIR or a path such as ./%s)", s, s)
		}
		if strings.ContainsRune(s, 0) {
			return nil, fmt.Errorf("resolve: root %q: NUL in directory path", s)
		}
		return &DirRoot{Dir: filepath.Clean(s)}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("resolve: root %q: %w", s, err)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("resolve: root %q: a root URL takes no query or fragment", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("resolve: root %q: a root URL takes no user information", s)
	}
	switch strings.ToLower(scheme) {
	case "https", "http":
		if u.Host == "" || u.Hostname() == "" {
			return nil, fmt.Errorf("resolve: root %q: missing host", s)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("resolve: root %q: bad port %q", s, p)
			}
		}
		return &HTTPRoot{Base: u}, nil
	case "dns":
		return parseDNSRoot(s, u)
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("resolve: root %q: file URLs must name a local path (file:///DIR)", s)
		}
		if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("resolve: root %q: file URL without an absolute path (want file:///DIR)", s)
		}
		if strings.ContainsRune(u.Path, 0) {
			return nil, fmt.Errorf("resolve: root %q: NUL in directory path", s)
		}
		return &DirRoot{Dir: filepath.Clean(filepath.FromSlash(u.Path))}, nil
	default:
		return nil, fmt.Errorf("resolve: root %q: unsupported scheme %q (want https, http, dns, file or a directory path)", s, scheme)
	}
}

// ParseRoots parses each of ss with ParseRoot.
func ParseRoots(ss []string) ([]Root, error) {
	roots := make([]Root, 0, len(ss))
	for _, s := range ss {
		r, err := ParseRoot(s)
		if err != nil {
			return nil, err
		}
		roots = append(roots, r)
	}
	return roots, nil
}

// HTTPRoot fetches BASE/.well-known/smartclient/SERVICE.cert over HTTP(S).
// Only a 200 answer counts; redirects are followed as the client does
// (the bytes are verified, not the channel).
type HTTPRoot struct {
	// Base is the root URL; its path, if any, is a prefix before the
	// well-known path.
	Base *url.URL
	// Client sends the request; nil means http.DefaultClient.
	Client *http.Client
	// MaxSize bounds the body; 0 means MaxCertSize.
	MaxSize int
}

func (h *HTTPRoot) String() string { return h.Base.String() }

// URL returns where the root publishes service's certificate.
func (h *HTTPRoot) URL(service string) string {
	return h.Base.JoinPath(WellKnownPrefix, service+CertSuffix).String()
}

// Fetch GETs the certificate, refusing any status but 200 and any body
// larger than the limit.
func (h *HTTPRoot) Fetch(ctx context.Context, service string) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, &RootError{Root: h.String(), Err: err} }
	if err := CheckService(service); err != nil {
		return fail(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL(service), nil)
	if err != nil {
		return fail(err)
	}
	// Ask caches between us and the origin to revalidate: a stale copy
	// would only lose to a fresher root.
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("Accept", "application/json, */*;q=0.1")
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fail(context.Cause(ctx))
		}
		return fail(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return fail(fmt.Errorf("%w (HTTP %s)", ErrNotFound, resp.Status))
	case resp.StatusCode != http.StatusOK:
		return fail(fmt.Errorf("HTTP %s (want 200)", resp.Status))
	}
	limit := limitOf(h.MaxSize)
	if resp.ContentLength > int64(limit) {
		return fail(fmt.Errorf("%w: Content-Length %d exceeds %d bytes", ErrTooLarge, resp.ContentLength, limit))
	}
	data, err := readBounded(resp.Body, limit)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrTooLarge) {
			return fail(context.Cause(ctx))
		}
		return fail(fmt.Errorf("reading body: %w", err))
	}
	return data, nil
}

// DirRoot reads DIR/SERVICE.cert: a mounted share, a USB stick, a
// directory a configuration tool fills.
type DirRoot struct {
	Dir string
	// MaxSize bounds the file; 0 means MaxCertSize.
	MaxSize int
}

func (d *DirRoot) String() string {
	switch {
	case filepath.IsAbs(d.Dir):
		return (&url.URL{Scheme: "file", Path: filepath.ToSlash(d.Dir)}).String()
	case d.Dir == "." || d.Dir == ".." || strings.HasPrefix(d.Dir, ".."+string(filepath.Separator)):
		return d.Dir
	default:
		// "./" keeps a first element such as "a:b" from reading as a
		// scheme or host:port when the string is parsed again.
		return "." + string(filepath.Separator) + d.Dir
	}
}

// Fetch reads the certificate file. Only regular files are read (a FIFO
// or device planted in the directory would block or never end).
func (d *DirRoot) Fetch(ctx context.Context, service string) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, &RootError{Root: d.String(), Err: err} }
	if err := CheckService(service); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(context.Cause(ctx))
	}
	path := filepath.Join(d.Dir, service+CertSuffix)
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fail(fmt.Errorf("%w (%s does not exist)", ErrNotFound, path))
		}
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("%s is not a regular file (%v)", path, fi.Mode().Type()))
	}
	limit := limitOf(d.MaxSize)
	if fi.Size() > int64(limit) {
		return fail(fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, path, fi.Size(), limit))
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	// The name may have been swapped since Stat: read only the file that
	// was checked. Growth is caught by the bounded read.
	if fi2, err := f.Stat(); err != nil || !os.SameFile(fi, fi2) {
		return fail(fmt.Errorf("%s changed while being read", path))
	}
	data, err := readBounded(f, limit)
	if err != nil {
		return fail(fmt.Errorf("reading %s: %w", path, err))
	}
	return data, nil
}

func limitOf(max int) int {
	if max <= 0 {
		return MaxCertSize
	}
	return max
}

// readBounded reads all of r if it holds at most limit bytes, and fails
// with ErrTooLarge as soon as it sees byte limit+1: never more than
// limit+1 bytes are read or buffered.
func readBounded(r io.Reader, limit int) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return data, nil
}

// hostPort adds port to host unless it has one.
func hostPort(u *url.URL, port string) string {
	if u.Port() != "" {
		return net.JoinHostPort(u.Hostname(), u.Port())
	}
	return net.JoinHostPort(u.Hostname(), port)
}
