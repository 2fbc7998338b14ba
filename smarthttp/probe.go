package smarthttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

// maxProbeBody bounds how much of a probe's reply is read (and discarded) so
// that the connection can be reused; a larger body is cut off.
const maxProbeBody = 64 << 10

// Prober is a director.Prober that checks a member with GET Path: the member
// is fit for work if it answers with a status below 500 and does not say it
// is draining. It is the active keep-alive probe that readmits an ejected
// member without risking a real request.
type Prober struct {
	// Client sends the probes. Default: a client over NewBaseTransport().
	Client *http.Client
	// Path is joined to the member's URL. Default "/".
	Path string
}

var _ director.Prober = (*Prober)(nil)

// Probe implements director.Prober.
func (p *Prober) Probe(ctx context.Context, m balance.Member) error {
	resp, err := getMember(ctx, p.Client, m, p.Path)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode >= 500 {
		return fmt.Errorf("smarthttp: probe of %s: status %d", m.URL, resp.StatusCode)
	}
	if l, err := wire.ParseLoad(resp.Header.Get(wire.LoadHeader)); err == nil && l.State == wire.StateDraining {
		return fmt.Errorf("smarthttp: probe of %s: member is draining", m.URL)
	}
	return nil
}

// ErrNoLoad is returned by LoadPoller when a reply carries no load record.
var ErrNoLoad = errors.New("smarthttp: reply carries no " + wire.LoadHeader + " header")

// LoadPoller is a director.LoadPoller that asks a member for its load with
// GET Path and reads the load record from the reply's Smartclient-Load
// header: the eager alternative to load piggy-backed on replies. Any handler
// wrapped in Middleware answers it, whatever the path.
type LoadPoller struct {
	// Client sends the polls. Default: a client over NewBaseTransport().
	Client *http.Client
	// Path is joined to the member's URL. Default "/".
	Path string
}

var _ director.LoadPoller = (*LoadPoller)(nil)

// PollLoad implements director.LoadPoller.
func (p *LoadPoller) PollLoad(ctx context.Context, m balance.Member) (wire.Load, error) {
	resp, err := getMember(ctx, p.Client, m, p.Path)
	if err != nil {
		return wire.Load{}, err
	}
	defer drain(resp)
	h := resp.Header.Values(wire.LoadHeader)
	switch len(h) {
	case 0:
		return wire.Load{}, fmt.Errorf("%w (from %s, status %d)", ErrNoLoad, m.URL, resp.StatusCode)
	case 1:
	default:
		return wire.Load{}, fmt.Errorf("smarthttp: %s sent %d %s headers; want one", m.URL, len(h), wire.LoadHeader)
	}
	l, err := wire.ParseLoad(h[0])
	if err != nil {
		return wire.Load{}, fmt.Errorf("smarthttp: load from %s: %w", m.URL, err)
	}
	return l, nil
}

var defaultProbeClient = &http.Client{
	Transport: NewBaseTransport(),
	// A probe asks one member about itself: following a redirect elsewhere
	// would answer for another host.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func getMember(ctx context.Context, c *http.Client, m balance.Member, path string) (*http.Response, error) {
	if c == nil {
		c = defaultProbeClient
	}
	if path == "" {
		path = "/"
	}
	base, err := url.Parse(m.URL)
	if err != nil {
		return nil, fmt.Errorf("smarthttp: member URL %q: %w", m.URL, err)
	}
	u := base.JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
	resp.Body.Close()
}
