package cli

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/smartclient/smartclient/smarthttp"
)

// tlsMember is an https member on loopback with httptest's self-signed
// certificate, which no client trusts by default.
type tlsMember struct {
	*httptest.Server
	served atomic.Int64
}

func newTLSMember(t *testing.T, name string) *tlsMember {
	t.Helper()
	m := &tlsMember{}
	m.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		m.served.Add(1)
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(m.Close)
	return m
}

// pinEntry is a certificate description's member entry with a pin.
func pinEntry(url string, pin smarthttp.Pin) string {
	return fmt.Sprintf("{url: %q, pin: %q}", url, pin.String())
}

// A proxy bootstrapped from a certificate checks its members' pins: a
// self-signed member is reached through its pin, and a member whose key
// does not match is never sent a request, not even a POST.
func TestProxyByServiceChecksPins(t *testing.T) {
	good, bad := newTLSMember(t, "good"), newTLSMember(t, "bad")
	wrong := smarthttp.Pin(sha256.Sum256([]byte("not bad's key")))
	key, _, rootDir := certSetup(t,
		pinEntry(good.URL, smarthttp.PinOf(good.Certificate())), pinEntry(bad.URL, wrong))
	p := startProxy(t, "--service", "service://chat", "--root", rootDir, "--trust", key+".pub", "--cache-dir", t.TempDir())
	p.waitLine(t, "listening:")
	for i := range 6 {
		resp, err := client.Post(p.url+"/x", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "good /x" {
			t.Fatalf("POST %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if bad.served.Load() != 0 {
		t.Errorf("the mispinned member served %d requests", bad.served.Load())
	}

	// With only the mispinned member, the proxy's error names its pin.
	key, _, rootDir = certSetup(t, pinEntry(bad.URL, wrong))
	p = startProxy(t, "--service", "service://chat", "--root", rootDir, "--trust", key+".pub", "--cache-dir", t.TempDir())
	p.waitLine(t, "listening:")
	status, body, _ := get(t, p.url+"/y")
	if status != http.StatusBadGateway || !strings.Contains(body, "want "+wrong.String()) ||
		!strings.Contains(body, smarthttp.PinOf(bad.Certificate()).String()) || !strings.Contains(body, bad.Listener.Addr().String()) {
		t.Fatalf("%d %q; want 502 naming the member, its pin and the key it presented", status, body)
	}
}
