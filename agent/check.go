package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
)

// maxCheckBody is how much of an HTTP check's reply body is read (and
// discarded) so the connection can be reused.
const maxCheckBody = 64 << 10

// Checker health-checks the target. Check returns nil when the target is
// fit for work, else an error saying why not; it returns by the time ctx
// ends (the agent gives each check a timeout). Checks run one at a time.
type Checker interface {
	Check(ctx context.Context) error
	// Kind describes the check for the report, e.g. "tcp".
	Kind() string
}

// TCPCheck passes when a TCP connection to Addr is accepted. It says the
// server's listener is open; not that the server answers.
type TCPCheck struct {
	Addr string // host:port
}

// Check implements Checker.
func (c TCPCheck) Check(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Kind implements Checker.
func (TCPCheck) Kind() string { return "tcp" }

// HTTPCheck passes when GET URL answers with a 2xx or 3xx status (redirects
// are not followed: the check asks about this server only).
type HTTPCheck struct {
	URL string
	// Client sends the checks. Default: a client that keeps no idle
	// connection, so the check does not hold a connection to the target
	// between checks (it would be counted as load).
	Client *http.Client
	// Path is shown in Kind.
	Path string
}

var defaultCheckClient = &http.Client{
	Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Check implements Checker.
func (c HTTPCheck) Check(ctx context.Context) error {
	cl := c.Client
	if cl == nil {
		cl = defaultCheckClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "smartclient-agent")
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxCheckBody))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: status %d", c.URL, resp.StatusCode)
	}
	return nil
}

// Kind implements Checker.
func (c HTTPCheck) Kind() string { return "http GET " + c.Path }
