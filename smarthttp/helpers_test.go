package smarthttp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
)

// TestMain fails the package if goroutines started by the tests outlive
// them: every test closes its servers, directors and idle connections.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitNoLeaks(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitNoLeaks waits until no goroutine runs net/http, smarthttp or director
// code, and returns the offending stacks if some still do at the deadline.
func waitNoLeaks(limit time.Duration) string {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var bad []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "testing.(*M).") || strings.Contains(g, "waitNoLeaks") {
				continue
			}
			if strings.Contains(g, "net/http.") || strings.Contains(g, "smarthttp.") || strings.Contains(g, "director.") {
				bad = append(bad, g)
			}
		}
		if len(bad) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(bad, "\n\n")
		}
		<-tick.C
	}
}

// ordered is a test policy that picks the first untried member in list
// order, so a test knows which member each attempt goes to.
type ordered struct{}

func (ordered) Name() string { return "ordered" }
func (ordered) Build(eps []*balance.Endpoint, _ balance.Env) balance.Picker {
	return orderedPicker(eps)
}

type orderedPicker []*balance.Endpoint

func (p orderedPicker) Pick(in *balance.PickInput) *balance.Endpoint {
	for _, e := range p {
		if !in.IsTried(e) {
			return e
		}
	}
	return nil
}

// noEjection keeps failing members eligible, so every request of a test
// meets them.
var noEjection = balance.HealthConfig{ConsecutiveFailures: 1 << 30, FailureRate: 1, MinRequests: 1 << 30}

// newDirector returns a director over urls, closed when the test ends.
func newDirector(t testing.TB, cfg director.Config, urls ...string) *director.Director {
	t.Helper()
	ms := make([]balance.Member, len(urls))
	for i, u := range urls {
		ms[i] = balance.Member{URL: u}
	}
	d, err := director.New(cfg, ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// newTransport returns a Transport over d whose idle connections are
// closed when the test ends.
func newTransport(t testing.TB, d *director.Director) *Transport {
	tr := NewTransport(d, nil)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// orderedClient returns a client over a director with the ordered policy
// and no ejection.
func orderedClient(t testing.TB, cfg director.Config, urls ...string) (*http.Client, *director.Director) {
	t.Helper()
	cfg.PolicyImpl = ordered{}
	cfg.Health = noEjection
	d := newDirector(t, cfg, urls...)
	return &http.Client{Transport: newTransport(t, d)}, d
}

// newServer starts a loopback HTTP server, closed when the test ends.
func newServer(t testing.TB, h http.Handler) *httptest.Server {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// closedURL returns the URL of a loopback port nobody listens on.
func closedURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

// counter counts the requests a handler served.
type counter struct{ n atomic.Int64 }

func (c *counter) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		h(w, r)
	}
}

func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
}

// testCtx returns a context that ends when the test would otherwise hang.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wait waits for ch to be closed or to deliver, failing the test after a
// deadline.
func wait[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}
