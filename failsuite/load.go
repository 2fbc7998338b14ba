package failsuite

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/smarthttp"
)

// LoadSpec is the load offered in every run: open loop, so a slow or stuck
// service does not slow the arrivals down.
type LoadSpec struct {
	// Rate is requests per second. Default 200.
	Rate float64 `json:"rate"`
	// Timeout bounds one request from its scheduled start; a request not
	// answered by then has failed. Default 2s.
	Timeout time.Duration `json:"timeout_ns"`
}

func (l LoadSpec) withDefaults() LoadSpec {
	if l.Rate == 0 {
		l.Rate = 200
	}
	if l.Timeout == 0 {
		l.Timeout = 2 * time.Second
	}
	return l
}

// Validate reports a field out of range.
func (l LoadSpec) Validate() error {
	if l.Rate < 0 || l.Rate > 100000 {
		return fmt.Errorf("failsuite: rate %v: must be in 0..100000", l.Rate)
	}
	if l.Timeout < 0 {
		return fmt.Errorf("failsuite: timeout %v: must be >= 0", l.Timeout)
	}
	return nil
}

// Target is the service under load, as one client sees it.
type Target interface {
	// Do sends one request and returns the name of the member that answered
	// (from its reply) and the attempts the request took, or 0 when the
	// client cannot tell. err is nil only for a reply the service meant
	// (status below 500, body read whole). Do must respect ctx and be safe
	// for concurrent use.
	Do(ctx context.Context) (member string, attempts int, err error)
}

// Offer sends requests to t at l.Rate from start until stop is closed or
// ctx ends, recording each in rec with its scheduled time as its start. It
// returns once every request it sent has ended, with the scheduled time of
// the first request it did not send. If the driver falls behind it sends
// late requests at once, and their lateness counts as latency.
func Offer(ctx context.Context, t Target, rec *Recorder, l LoadSpec, start time.Time, stop <-chan struct{}) (end time.Time) {
	l = l.withDefaults()
	interval := time.Duration(float64(time.Second) / l.Rate)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-stop:
				return at
			case <-ctx.Done():
				return at
			}
		}
		select {
		case <-stop:
			return at
		case <-ctx.Done():
			return at
		default:
		}
		slot := rec.Begin(at)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithDeadline(ctx, at.Add(l.Timeout))
			defer cancel()
			member, attempts, err := t.Do(rctx)
			rec.End(slot, time.Now(), member, attempts, err)
		}()
	}
}

// MemberHeader is the reply header in which `smartclient member` names
// itself.
const MemberHeader = "Member"

// HTTPTarget sends GET URL with Client and reads the whole reply.
type HTTPTarget struct {
	Client *http.Client
	URL    string
}

type attemptsKey struct{}

// Do implements Target. Attempts are counted by a CountingTransport under
// the client's smart transport, if there is one.
func (h *HTTPTarget) Do(ctx context.Context) (string, int, error) {
	n := new(atomic.Int32)
	req, err := http.NewRequestWithContext(context.WithValue(ctx, attemptsKey{}, n), http.MethodGet, h.URL, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return "", int(n.Load()), err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	member := resp.Header.Get(MemberHeader)
	switch {
	case err != nil:
		return member, int(n.Load()), fmt.Errorf("reading the reply from %s: %w", member, err)
	case resp.StatusCode >= 500:
		return member, int(n.Load()), fmt.Errorf("status %d from %q", resp.StatusCode, member)
	}
	return member, int(n.Load()), nil
}

// CountingTransport counts the round trips made for each request sent
// through HTTPTarget: under smarthttp.Transport, one per attempt, hedges
// included, because every attempt's context descends from the request's.
type CountingTransport struct{ Base http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (c CountingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if n, ok := req.Context().Value(attemptsKey{}).(*atomic.Int32); ok {
		n.Add(1)
	}
	return c.Base.RoundTrip(req)
}

// NewLibraryClient returns an HTTP client whose requests go through d, each
// attempt counted for HTTPTarget, and the base transport to close idle
// connections of.
func NewLibraryClient(d *director.Director) (*http.Client, *http.Transport) {
	base := smarthttp.NewBaseTransport()
	return &http.Client{Transport: smarthttp.NewTransport(d, CountingTransport{Base: base})}, base
}
