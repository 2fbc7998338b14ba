package resolve_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/clock"
	"github.com/smartclient/smartclient/resolve"
)

// The scenario: one root down, one serving an old version, one
// serving a tampered copy of a newer one. The client ends with the old but
// genuine certificate, and refuses it if it already holds a newer one.
func TestResolveDownStaleTampered(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	stale := httpRoot(t, resolve.ServeHandler(certDir(t, map[string][]byte{"chat": certOf(2)})))
	tampered := httpRoot(t, resolve.ServeHandler(certDir(t, map[string][]byte{"chat": tamper(certOf(3))})))
	downRoot, _ := resolve.ParseRoot(down.URL)
	rs := roots(downRoot, stale, tampered)

	r := &resolve.Resolver{Roots: rs, Verify: verifyChat}
	res, err := r.Resolve(t.Context(), "chat")
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || res.Source != stale.String() || !bytes.Equal(res.Data, certOf(2)) {
		t.Fatalf("got version %d from %s", res.Version, res.Source)
	}
	if o := res.Outcomes[0]; o.Err == nil || !strings.HasPrefix(o.Err.Error(), down.URL) {
		t.Errorf("down: %v", o.Err)
	}
	if o := res.Outcomes[2]; !errors.Is(o.Err, errBadSig) || !strings.HasPrefix(o.Err.Error(), tampered.String()) {
		t.Errorf("tampered: %v", o.Err)
	}

	r.MinVersion = 3 // the cache holds version 3: version 2 is a rollback
	_, err = r.Resolve(t.Context(), "chat")
	if !errors.Is(err, resolve.ErrRollback) || !errors.Is(err, errBadSig) {
		t.Fatalf("with a newer cache: %v", err)
	}
	for _, root := range rs {
		if !strings.Contains(err.Error(), root.String()+": ") {
			t.Errorf("error does not list %s: %v", root, err)
		}
	}
}

// Every kind of root at once, most of them misbehaving, on real sockets.
// The fake clock and OnOutcome make the grace period exact: it ends only
// after every root but the slow ones has answered, and the slow ones (an
// HTTP server and a DNS server that never answer) do not hold the result.
func TestResolveHostileRoots(t *testing.T) {
	dnsSrv := startDNS(t)
	dnsSrv.publish(t, "chat", "good.example", certOf(5))
	dnsSrv.publish(t, "chat", "slow.example", certOf(9))
	dnsSrv.blockName("_smartclient.chat.slow.example.")

	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	slowEntered := make(chan struct{}, 1)
	serve := func(data []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { w.Write(data) }
	}
	type rootCase struct {
		root   resolve.Root
		errIs  error  // nil with errHas "": valid
		errHas string // substring of the outcome error
	}
	cases := []rootCase{
		{root: mustParse(t, down.URL), errHas: "refused"},
		{root: httpRoot(t, serve(certOf(3))), errHas: ""}, // stale but valid
		{root: httpRoot(t, serve(tamper(certOf(8)))), errIs: errBadSig},
		{root: httpRoot(t, serve(signCert(otherPriv, "chat", 8))), errIs: errBadSig},
		{root: httpRoot(t, serve(signCert(testPriv, "mail", 8))), errHas: `for service "mail"`},
		{root: httpRoot(t, serve([]byte("<html>hello</html>"))), errHas: "malformed"},
		{root: httpRoot(t, http.HandlerFunc(endless)), errIs: resolve.ErrTooLarge},
		{root: httpRoot(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 503) })), errHas: "HTTP 503"},
		{root: httpRoot(t, http.NotFoundHandler()), errIs: resolve.ErrNotFound},
		{root: httpRoot(t, resolve.ServeHandler(certDir(t, map[string][]byte{"chat": certOf(5)})))},
		{root: &resolve.DNSRoot{Server: dnsSrv.Addr, Zone: "good.example"}},
		{root: &resolve.DNSRoot{Server: dnsSrv.Addr, Zone: "missing.example"}, errIs: resolve.ErrNotFound},
		{root: mustParse(t, "file://"+certDir(t, map[string][]byte{"chat": certOf(5)}))},
		{root: mustParse(t, certDir(t, map[string][]byte{"chat": padded(9, resolve.MaxCertSize+1)})), errIs: resolve.ErrTooLarge},
		// The slow ones come last; they would have answered version 9.
		{root: httpRoot(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			slowEntered <- struct{}{}
			<-r.Context().Done() // only Resolve's cancellation ends this
		})), errIs: resolve.ErrLate},
		{root: &resolve.DNSRoot{Server: dnsSrv.Addr, Zone: "slow.example", Timeout: time.Hour}, errIs: resolve.ErrLate},
	}
	const slow = 2
	var rs []resolve.Root
	for _, c := range cases {
		rs = append(rs, c.root)
	}
	c := clock.NewFake(epoch)
	r := &resolve.Resolver{Roots: rs, Verify: verifyChat, Clock: c, MinVersion: 3}
	x := start(t.Context(), r)
	for range len(cases) - slow {
		x.next(t)
	}
	<-slowEntered
	c.Advance(resolve.DefaultGrace)
	res, err := x.wait(t)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 5 || !bytes.Equal(res.Data, certOf(5)) {
		t.Fatalf("got version %d from %s", res.Version, res.Source)
	}
	for i, tc := range cases {
		o := res.Outcomes[i]
		if o.Root != tc.root.String() {
			t.Errorf("outcome %d is for %s, want %s", i, o.Root, tc.root)
		}
		if tc.errIs == nil && tc.errHas == "" {
			if o.Err != nil {
				t.Errorf("%s: %v", o.Root, o.Err)
			}
			continue
		}
		if o.Err == nil || !strings.HasPrefix(o.Err.Error(), o.Root+": ") ||
			(tc.errIs != nil && !errors.Is(o.Err, tc.errIs)) || !strings.Contains(o.Err.Error(), tc.errHas) {
			t.Errorf("%s: err %v, want %v %q", o.Root, o.Err, tc.errIs, tc.errHas)
		}
	}
	checkNoGoroutines(t, true)
}

// The same on the real clock, with no assertion on how long anything took:
// the slow root's handler is never released, so Resolve can only have
// returned by giving up on it.
func TestResolveRealClock(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	slow := httpRoot(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
			w.Write(certOf(9))
		case <-r.Context().Done():
		}
	}))
	good := httpRoot(t, resolve.ServeHandler(certDir(t, map[string][]byte{"chat": certOf(2)})))
	r := &resolve.Resolver{Roots: roots(slow, good), Verify: verifyChat, Grace: 20 * time.Millisecond}
	res, err := r.Resolve(t.Context(), "chat")
	if err != nil || res.Version != 2 || !errors.Is(res.Outcomes[0].Err, resolve.ErrLate) {
		t.Fatalf("got %+v, %v", res, err)
	}
	checkNoGoroutines(t, false)
}

func mustParse(t *testing.T, s string) resolve.Root {
	t.Helper()
	r, err := resolve.ParseRoot(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
