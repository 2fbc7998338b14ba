package resolve_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smartclient/smartclient/resolve"
)

// The tests use a tiny signed format instead of package cert (which must
// not be imported here): "svc=NAME;v=N;sig=BASE64", where the signature is
// ed25519 over "svc=NAME;v=N". It is enough to tell valid, stale, tampered,
// re-signed and wrong-service certificates apart, which is all the
// resolver needs from its Verify function.
var testPub, testPriv = mustKey(1)
var otherPub, otherPriv = mustKey(2)

func mustKey(seed byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

var errBadSig = errors.New("bad signature")

func signCert(priv ed25519.PrivateKey, service string, version uint64) []byte {
	body := fmt.Sprintf("svc=%s;v=%d", service, version)
	return []byte(body + ";sig=" + base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(body))))
}

// certOf is a certificate for service "chat" signed by the trusted key.
func certOf(version uint64) []byte { return signCert(testPriv, "chat", version) }

// padded adds a trailing field so the certificate reaches n bytes; the
// verifier ignores it (like an unknown field of a newer minor version).
func padded(version uint64, n int) []byte {
	c := certOf(version)
	return append(c, ";pad="+strings.Repeat("x", n-len(c)-5)...)
}

// verifier accepts certificates for service signed by pub.
func verifier(pub ed25519.PublicKey, service string) resolve.Verify {
	return func(data []byte) (uint64, error) {
		fields := strings.Split(string(data), ";")
		if len(fields) < 3 || !strings.HasPrefix(fields[0], "svc=") || !strings.HasPrefix(fields[1], "v=") || !strings.HasPrefix(fields[2], "sig=") {
			return 0, errors.New("malformed certificate")
		}
		sig, err := base64.StdEncoding.DecodeString(fields[2][4:])
		if err != nil || !ed25519.Verify(pub, []byte(fields[0]+";"+fields[1]), sig) {
			return 0, errBadSig
		}
		if got := fields[0][4:]; got != service {
			return 0, fmt.Errorf("certificate is for service %q, not %q", got, service)
		}
		return strconv.ParseUint(fields[1][2:], 10, 64)
	}
}

var verifyChat = verifier(testPub, "chat")

// tamper flips the version digit of a certificate, keeping its signature.
func tamper(data []byte) []byte {
	out := bytes.Clone(data)
	i := bytes.Index(out, []byte(";v=")) + 3
	out[i]++
	return out
}

// fakeRoot is a Root whose answer the test controls.
type fakeRoot struct {
	name string
	// fetch produces the answer; it must honour ctx if it blocks.
	fetch    func(ctx context.Context) ([]byte, error)
	calls    atomic.Int32
	returned atomic.Int32
}

func (f *fakeRoot) String() string { return f.name }

func (f *fakeRoot) Fetch(ctx context.Context, service string) ([]byte, error) {
	f.calls.Add(1)
	defer f.returned.Add(1)
	return f.fetch(ctx)
}

// quick answers at once.
func quick(name string, data []byte, err error) *fakeRoot {
	return &fakeRoot{name: name, fetch: func(context.Context) ([]byte, error) { return data, err }}
}

// gated answers with whatever is sent on its channel, or fails when ctx
// ends first.
type gated struct {
	*fakeRoot
	release chan []byte
}

func newGated(name string) *gated {
	g := &gated{release: make(chan []byte)}
	g.fakeRoot = &fakeRoot{name: name, fetch: func(ctx context.Context) ([]byte, error) {
		select {
		case d := <-g.release:
			return d, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}}
	return g
}

// waitFor fails the test unless cond becomes true within a generous
// deadline. It is only for events with no channel to wait on (a goroutine
// finishing its return); it never asserts how long anything took.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// resolveGoroutines lists the goroutines (other than the caller) running
// code of package resolve, excluding ServeHandler (an HTTP server's work).
func resolveGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue // the caller
		}
		for _, line := range strings.Split(g, "\n") {
			if strings.HasPrefix(line, "github.com/smartclient/smartclient/resolve.") && !strings.Contains(line, "ServeHandler") {
				found = append(found, g)
				break
			}
		}
	}
	return found
}

// checkNoGoroutines fails if any goroutine runs package resolve code.
// With exact, the check is made once: Resolve joins its goroutines before
// returning, so nothing may be left at all. Without, it allows real-clock
// timer goroutines a moment to finish returning.
func checkNoGoroutines(t *testing.T, exact bool) {
	t.Helper()
	if exact {
		if g := resolveGoroutines(); len(g) > 0 {
			t.Fatalf("%d goroutine(s) outlived Resolve:\n%s", len(g), strings.Join(g, "\n\n"))
		}
		return
	}
	waitFor(t, "resolve goroutines to end", func() bool { return len(resolveGoroutines()) == 0 })
}

// dnsServer is a real miekg/dns server on 127.0.0.1 (UDP and TCP on the
// same port) answering from a record table the test fills.
type dnsServer struct {
	Addr string

	mu      sync.Mutex
	records []dns.RR
	rcode   map[string]int // forced rcode by lower-case owner name
	block   map[string]chan struct{}
	queries map[string]int // by network: "udp", "tcp"
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	s := &dnsServer{rcode: map[string]int{}, block: map[string]chan struct{}{}, queries: map[string]int{}}
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if attempt == 10 {
			t.Fatalf("no port free for both UDP and TCP: %v", err)
		}
	}
	s.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	var wg sync.WaitGroup
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { srv.ActivateAndServe() })
		<-started
	}
	t.Cleanup(func() {
		s.mu.Lock()
		for _, c := range s.block {
			select {
			case <-c:
			default:
				close(c)
			}
		}
		s.mu.Unlock()
		udp.Shutdown()
		tcp.Shutdown()
		wg.Wait()
	})
	return s
}

func (s *dnsServer) add(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, rrs...)
}

// addZone parses zone-file lines.
func (s *dnsServer) addZone(t *testing.T, lines ...string) {
	t.Helper()
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad zone line %q: %v", l, err)
		}
		s.add(rr)
	}
}

// blockName makes queries for name wait until the returned func is called
// or the server shuts down.
func (s *dnsServer) blockName(name string) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan struct{})
	s.block[strings.ToLower(name)] = c
	var once sync.Once
	return func() { once.Do(func() { close(c) }) }
}

func (s *dnsServer) count(network string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[network]
}

func (s *dnsServer) serve(w dns.ResponseWriter, r *dns.Msg) {
	network := w.RemoteAddr().Network()
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	s.queries[network]++
	block := s.block[name]
	rcode, forced := s.rcode[name]
	var answer []dns.RR
	exists := false
	for _, rr := range s.records {
		if strings.ToLower(rr.Header().Name) != name {
			continue
		}
		exists = true
		if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
			answer = append(answer, dns.Copy(rr))
		}
	}
	// Follow one CNAME inside the zone, as an authoritative server would.
	for _, rr := range answer {
		if c, ok := rr.(*dns.CNAME); ok {
			for _, t := range s.records {
				if strings.EqualFold(t.Header().Name, c.Target) && t.Header().Rrtype == q.Qtype {
					answer = append(answer, dns.Copy(t))
				}
			}
		}
	}
	s.mu.Unlock()
	if block != nil {
		<-block
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.Answer = answer
	switch {
	case forced:
		m.Rcode = rcode
		m.Answer = nil
	case !exists:
		m.Rcode = dns.RcodeNameError
	}
	if network == "udp" {
		size := dns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// writeFile writes data to dir/name.
func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
