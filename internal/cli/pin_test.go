package cli

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// `cert pin` prints the pin PinTLS checks, from a certificate file, a
// public key file or a live server, and names what is wrong with bad input.
func TestCertPinCommand(t *testing.T) {
	m := newTLSMember(t, "m")
	want := smarthttp.PinOf(m.Certificate()).String()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.Certificate().Raw})
	spki, err := x509.MarshalPKIXPublicKey(m.Certificate().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
	other := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42}})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"certificate", []string{"cert", "pin", write("m.crt", certPEM)}},
		{"certificate after other blocks", []string{"cert", "pin", write("chain.pem", append(other, certPEM...))}},
		{"public key", []string{"cert", "pin", write("m.pub", keyPEM)}},
		{"server", []string{"cert", "pin", "--connect", m.Listener.Addr().String()}},
	} {
		code, out, errOut := run(tc.args...)
		if code != 0 || strings.TrimSpace(out) != want {
			t.Errorf("%s: exit %d, %q (stderr %q); want %s", tc.name, code, out, errOut, want)
		}
	}

	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	for _, tc := range []struct {
		name, want string
		code       int
		args       []string
	}{
		{"no PEM", "no PEM CERTIFICATE or PUBLIC KEY block", 1, []string{"cert", "pin", write("x.txt", []byte("hello"))}},
		{"bad certificate", "CERTIFICATE block", 1, []string{"cert", "pin", write("bad.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}))}},
		{"missing file", "no such file", 1, []string{"cert", "pin", filepath.Join(dir, "none.crt")}},
		{"file and server", "not both", 2, []string{"cert", "pin", "--connect", "127.0.0.1:1", write("m2.crt", certPEM)}},
		{"nothing", "want one PEM file", 2, []string{"cert", "pin"}},
		{"not HOST:PORT", "want HOST:PORT", 2, []string{"cert", "pin", "--connect", "localhost"}},
		{"not TLS", "--connect " + plain.Listener.Addr().String(), 1, []string{"cert", "pin", "--connect", plain.Listener.Addr().String(), "--timeout", "5s"}},
	} {
		code, out, errOut := run(tc.args...)
		if code != tc.code || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d naming %q", tc.name, code, out, errOut, tc.code, tc.want)
		}
	}
}

// pinFromPEM never panics and, when it accepts input, found a block it
// could parse.
func FuzzPinFromPEM(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("hello"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pin, err := pinFromPEM(data)
		if err == nil && pin == (smarthttp.Pin{}) {
			t.Fatal("accepted input without a pin")
		}
	})
}
