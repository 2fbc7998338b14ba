package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/smarthttp"
)

// A contender is one way of spreading the load over the members.
type contender struct {
	name string
	// what the README says it is.
	desc string
	// start sets the contender up in front of the members for n clients
	// (each with its own state). An error means it could not start; the
	// suite reports it in the table.
	start func(ctx context.Context, e *runEnv, n int) (*target, error)
}

// runEnv is what a contender is started against.
type runEnv struct {
	cfg     *Config
	members *members
	dir     string // a temporary directory for this run, removed after
}

// target is a started contender: n clients, each sending to base+path.
type target struct {
	clients []*http.Client
	base    string   // URL prefix the clients request
	procs   []*proc  // processes whose CPU is the extra hop's cost
	direct  bool     // requests go to member 0 only: offer it its share
	stopFns []func() // run in reverse order by stop
}

func (t *target) stop() {
	for _, c := range t.clients {
		c.CloseIdleConnections()
	}
	for i := len(t.stopFns) - 1; i >= 0; i-- {
		t.stopFns[i]()
	}
	for _, p := range t.procs {
		p.stop()
	}
}

// hopCPU is the CPU used so far by the contender's own processes.
func (t *target) hopCPU() time.Duration {
	var sum time.Duration
	for _, p := range t.procs {
		c, _ := groupCPU(p.pgid())
		sum += c
	}
	return sum
}

// alive reports an error if one of the contender's processes died.
func (t *target) alive() error {
	for _, p := range t.procs {
		if p.exited() {
			return p.exitError()
		}
	}
	return nil
}

// plainClient is an ordinary HTTP client with the same connection pool a
// smart client's transport gets, so that pooling is not what differs.
func plainClient() *http.Client {
	return &http.Client{Transport: smarthttp.NewBaseTransport()}
}

func plainClients(n int) []*http.Client {
	cs := make([]*http.Client, n)
	for i := range cs {
		cs[i] = plainClient()
	}
	return cs
}

// contenders lists every contender, in table order.
func contenders() []contender {
	cs := []contender{{
		name:  "direct",
		desc:  "one healthy member offered its 1/N share of the load, no balancing: the floor",
		start: startDirect,
	}}
	for _, p := range []struct{ name, policy, desc string }{
		{"smartclient-random", "random", "director as a library, random member (the paper's FTP applet)"},
		{"smartclient-round-robin", "round-robin", "director as a library, round robin"},
		{"smartclient-least-loaded", "least-loaded", "director as a library, least load reported on replies (the paper's telnet front-end)"},
		{"smartclient-p2c", "p2c", "director as a library, p2c: the lowest latency EWMA × load of every member (the default)"},
		{"smartclient-p2c-hedge", "p2c+hedge", "as smartclient-p2c, with hedging of slow idempotent requests"},
		{"finagle-p2c", "finagle-p2c", "Finagle's and Linkerd's balancer run in our director: two random members, peak-EWMA latency × (in flight + 1)"},
	} {
		pol := p.policy
		cs = append(cs, contender{name: p.name, desc: p.desc, start: func(ctx context.Context, e *runEnv, n int) (*target, error) {
			return startLibrary(e, n, pol)
		}})
	}
	cs = append(cs,
		contender{name: "smartclient-proxy", desc: "`smartclient proxy` (p2c) on the client's machine, one per client", start: startSmartProxy},
		contender{name: "haproxy-roundrobin", desc: "HAProxy one-arm proxy, balance roundrobin", start: haproxyStarter("roundrobin")},
		contender{name: "haproxy-leastconn", desc: "HAProxy one-arm proxy, balance leastconn", start: haproxyStarter("leastconn")},
		contender{name: "nginx-round_robin", desc: "nginx one-arm proxy, default round robin", start: nginxStarter("")},
		contender{name: "nginx-least_conn", desc: "nginx one-arm proxy, least_conn", start: nginxStarter("least_conn")},
		contender{name: "dns-rr", desc: "DNS round robin (TTL 0) from a DNS server on loopback; ordinary client resolving per connection", start: startDNSRR},
	)
	return cs
}

// ContenderNames lists the contenders' names in table order.
func ContenderNames() []string {
	var ns []string
	for _, c := range contenders() {
		ns = append(ns, c.name)
	}
	return ns
}

func startDirect(_ context.Context, e *runEnv, n int) (*target, error) {
	return &target{clients: plainClients(n), base: e.members.urls[0], direct: true}, nil
}

// startLibrary builds n independent directors (separate state) with the
// smarthttp transport: the director as a library.
func startLibrary(e *runEnv, n int, pol string) (*target, error) {
	cfg := director.Config{Policy: pol}
	switch pol {
	case "p2c+hedge":
		cfg.Policy = "p2c"
		cfg.Hedge.Enabled = true
	case "finagle-p2c":
		cfg.Policy = ""
		cfg.PolicyImpl = finagleP2C{}
		cfg.PeakEWMA = true
	}
	ms := make([]balance.Member, len(e.members.urls))
	for i, u := range e.members.urls {
		ms[i] = balance.Member{URL: u}
	}
	t := &target{base: "http://service"}
	for i := 0; i < n; i++ {
		d, err := director.New(cfg, ms)
		if err != nil {
			t.stop()
			return nil, err
		}
		t.stopFns = append(t.stopFns, d.Close)
		t.clients = append(t.clients, &http.Client{Transport: smarthttp.NewTransport(d, nil)})
	}
	return t, nil
}

// startSmartProxy runs `smartclient proxy` processes, one per client, as
// each client machine would.
func startSmartProxy(ctx context.Context, e *runEnv, n int) (*target, error) {
	t := &target{}
	var addrs []string
	for i := 0; i < n; i++ {
		argv := append(append([]string{}, e.cfg.Self...), "proxy", "--listen", "127.0.0.1:0")
		for _, u := range e.members.urls {
			argv = append(argv, "--member", u)
		}
		p, err := startProc("smartclient proxy", argv, e.cfg.SelfEnv, e.dir)
		if err != nil {
			t.stop()
			return nil, err
		}
		t.procs = append(t.procs, p)
		l, err := p.waitLine(ctx, "listening: ", 20*time.Second)
		if err != nil {
			t.stop()
			return nil, err
		}
		addrs = append(addrs, strings.Fields(l)[0])
	}
	// Client i talks to its own proxy: each proxy sees only its client's
	// traffic. The base is rewritten per client by a tiny transport.
	for i := 0; i < n; i++ {
		t.clients = append(t.clients, &http.Client{Transport: rebase{to: addrs[i], rt: smarthttp.NewBaseTransport()}})
	}
	t.base = "http://proxy"
	return t, nil
}

// rebase sends every request to one fixed base URL's host.
type rebase struct {
	to string // "http://127.0.0.1:PORT"
	rt *http.Transport
}

func (r rebase) RoundTrip(req *http.Request) (*http.Response, error) {
	r2 := req.Clone(req.Context())
	r2.URL.Host = strings.TrimPrefix(r.to, "http://")
	r2.Host = ""
	return r.rt.RoundTrip(r2)
}

func (r rebase) CloseIdleConnections() { r.rt.CloseIdleConnections() }

// freePort returns a port that was free on 127.0.0.1 a moment ago, for a
// program that takes its port from a configuration file. Another process
// could take it first: the contender then fails to start and says so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts a connection, or p exits.
func waitListening(ctx context.Context, p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return p.exitError()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not listening on %s within %v: %v; stderr: %s", p.name, addr, timeout, err, p.stderr.oneLine())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// lookBinary finds a program, saying which Debian package brings it.
func lookBinary(name, path, pkg string) (string, error) {
	if path == "" {
		path = name
	}
	p, err := exec.LookPath(path)
	if err != nil {
		// Debian puts daemons in /usr/sbin, which a non-root PATH may lack.
		if alt := filepath.Join("/usr/sbin", name); path == name {
			if _, err2 := os.Stat(alt); err2 == nil {
				return alt, nil
			}
		}
		return "", fmt.Errorf("%s not found (apt-get install %s): %w", name, pkg, err)
	}
	return p, nil
}

// proxyTarget finishes a one-proxy contender: n independent clients, all
// sending to the proxy.
func proxyTarget(p *proc, addr string, n int) *target {
	return &target{clients: plainClients(n), base: "http://" + addr, procs: []*proc{p}}
}
