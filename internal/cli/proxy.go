package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/smartclient/smartclient/agent"
	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/bootstrap"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/smarthttp"
	"github.com/smartclient/smartclient/wire"
)

// Paths the proxy answers itself instead of forwarding.
const (
	StatsPath        = "/_smartclient/stats"
	MetricsPath      = "/metrics"
	AltMetricsPath   = "/_smartclient/metrics" // for services that serve their own /metrics
	DefaultListen    = "127.0.0.1:8080"
	defaultShutdown  = 10 * time.Second
	proxyPlaceholder = "smartclient.invalid" // replaced by the member's host in the transport
)

// ProxyConfig is what `smartclient proxy` runs; flags fill it.
type ProxyConfig struct {
	// Listen is the address to serve on; port 0 picks a free port. Default
	// DefaultListen.
	Listen string
	// Members are the service's members; at least one.
	Members []balance.Member
	// Director configures member selection, retries and hedging.
	Director director.Config
	// Service, if set, bootstraps the director from a service certificate
	// (service://NAME through roots, trusted keys and the on-disk cache)
	// instead of Members; Director's fields then override the
	// certificate's.
	Service *bootstrap.Config
	// Registry, if set, takes the members from a registry (etcd or Consul)
	// instead of Members, and keeps the director in step with it.
	Registry *RegistrySpec
	// Gossip, if set, takes the members from a gossip cluster, which the
	// proxy joins as an observer, instead of Members (proxygossip.go).
	Gossip *GossipSpec
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown.
	// Default 10s.
	ShutdownTimeout time.Duration
}

// parseProxyFlags fills a ProxyConfig from the command line.
func parseProxyFlags(args []string) (ProxyConfig, error) {
	var (
		cfg                 ProxyConfig
		members             memberList
		agents              memberList // MEMBER=AGENT pairs
		probePath, pollPath string
		svc                 serviceFlags
		registrySpec        string
		gsp                 gossipFlags
	)
	fs := newFlagSet("proxy")
	fs.StringVar(&cfg.Listen, "listen", DefaultListen, "address to listen on (port 0: any free port)")
	fs.Var(&members, "member", "member base URL, e.g. http://10.0.0.1:8080 (repeat for each member)")
	svc.register(fs)
	gsp.register(fs)
	fs.StringVar(&registrySpec, "registry", "", "take the members from a registry and follow its changes: etcd://HOST:PORT[,HOST:PORT]/SERVICE or consul://HOST:PORT/SERVICE[?tag=TAG]")
	fs.StringVar(&cfg.Director.Policy, "policy", policy.Default, "selection policy: "+strings.Join(policy.Names(), ", "))
	fs.IntVar(&cfg.Director.MaxAttempts, "max-attempts", 3, "attempts per request, first included (1 disables retries)")
	fs.DurationVar(&cfg.Director.AttemptTimeout, "attempt-timeout", 0, "cancel an attempt after this long and try another member (0: none)")
	fs.BoolVar(&cfg.Director.Hedge.Enabled, "hedge", false, "hedge slow idempotent requests on a second member")
	fs.StringVar(&cfg.Director.Zone, "zone", "", "this client's zone, for the locality policy")
	fs.BoolVar(&cfg.Director.LearnMembers, "learn-members", false, "accept membership records piggy-backed on replies")
	fs.Float64Var(&cfg.Director.Hedge.Quantile, "hedge-quantile", 0.95, "with --hedge: hedge after this quantile of recent latency, in (0, 1)")
	fs.DurationVar(&cfg.Director.Health.BaseEjection, "eject-base", 500*time.Millisecond, "first ejection of a failing member; doubles for each further one")
	fs.DurationVar(&cfg.Director.Health.MaxEjection, "eject-max", 30*time.Second, "longest ejection")
	fs.DurationVar(&cfg.Director.ProbeTimeout, "probe-timeout", time.Second, "with --probe-path: bound on one probe")
	fs.StringVar(&probePath, "probe-path", "", "readmit an ejected member only after GET PATH on it answers below 500 (default: readmit with one strike)")
	fs.StringVar(&pollPath, "poll-path", "", "poll every member's load with GET PATH (its "+wire.LoadHeader+" header) each --poll-interval")
	fs.DurationVar(&cfg.Director.PollInterval, "poll-interval", time.Second, "time between load polls, with --poll-path or --agent")
	fs.Var(&agents, "agent", "MEMBER=AGENT_URL: poll the load of an unmodified member from the smartclient agent beside it (GET AGENT_URL/load, or --poll-path); repeat for each member")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", defaultShutdown, "how long to wait for in-flight requests on SIGINT/SIGTERM")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, helpError{fs: fs, usage: proxyUsage}
		}
		return cfg, err
	}
	var err error
	if cfg.Members, err = members.members(); err != nil {
		return cfg, err
	}
	if cfg.Gossip, err = gsp.spec(fs); err != nil {
		return cfg, err
	}
	if registrySpec != "" {
		spec, err := ParseRegistrySpec(registrySpec)
		if err != nil {
			return cfg, usagef("--registry %q: %v", registrySpec, err)
		}
		if svc.name != "" || len(cfg.Members) > 0 {
			return cfg, usagef("give one of --registry, --service or --member")
		}
		cfg.Registry = &spec
	}
	switch {
	case cfg.Registry != nil, cfg.Gossip != nil:
	case svc.name != "" && len(cfg.Members) > 0:
		return cfg, usagef("give either --service or --member, not both")
	case svc.name != "":
		bc, err := svc.config()
		if err != nil {
			return cfg, err
		}
		cfg.Service = &bc
		leaveToCertificate(fs, &cfg.Director)
	case len(cfg.Members) == 0:
		return cfg, usagef("no members: give at least one --member http://HOST:PORT, --service service://NAME, --registry URL or --gossip-join HOST:PORT")
	}
	if err := checkPolicy(cfg.Director.Policy); err != nil {
		return cfg, err
	}
	if cfg.Director.MaxAttempts < 0 || cfg.Director.MaxAttempts > 100 || cfg.Director.MaxAttempts == 0 && cfg.Service == nil {
		return cfg, usagef("--max-attempts %d: must be in 1..100", cfg.Director.MaxAttempts)
	}
	if q := cfg.Director.Hedge.Quantile; !(q > 0 && q < 1) {
		return cfg, usagef("--hedge-quantile %v: must be in (0, 1)", q)
	}
	if h := cfg.Director.Health; h.BaseEjection <= 0 || h.MaxEjection < h.BaseEjection {
		return cfg, usagef("--eject-base %v, --eject-max %v: want 0 < base <= max", h.BaseEjection, h.MaxEjection)
	}
	if cfg.Director.ProbeTimeout <= 0 {
		return cfg, usagef("--probe-timeout %v: must be > 0", cfg.Director.ProbeTimeout)
	}
	if cfg.Director.AttemptTimeout < 0 {
		return cfg, usagef("--attempt-timeout %v: must be >= 0", cfg.Director.AttemptTimeout)
	}
	for _, p := range []struct{ flag, path string }{{"--probe-path", probePath}, {"--poll-path", pollPath}} {
		if p.path != "" && !strings.HasPrefix(p.path, "/") {
			return cfg, usagef("%s %q: must start with /", p.flag, p.path)
		}
	}
	if probePath != "" {
		cfg.Director.Prober = &smarthttp.Prober{Path: probePath}
	}
	if len(agents) > 0 {
		p, err := agentPoller(agents, cfg.Members, pollPath)
		if err != nil {
			return cfg, err
		}
		cfg.Director.Poller = p
	} else if pollPath != "" {
		cfg.Director.Poller = &smarthttp.LoadPoller{Path: pollPath}
	}
	if cfg.Director.PollInterval <= 0 {
		return cfg, usagef("--poll-interval %v: must be > 0", cfg.Director.PollInterval)
	}
	if cfg.ShutdownTimeout <= 0 {
		return cfg, usagef("--shutdown-timeout %v: must be > 0", cfg.ShutdownTimeout)
	}
	if err := cfg.Director.Validate(); err != nil {
		return cfg, usagef("%v", err)
	}
	return cfg, nil
}

// Proxy is a reverse proxy that sends every request through a director to
// one of the service's members. Build it with NewProxy, then Serve.
type Proxy struct {
	cfg      ProxyConfig
	dir      *director.Director
	closeDir func()            // closes the director, saving its state when bootstrapped
	boot     *bootstrap.Client // set when bootstrapped from a certificate
	base     *http.Transport
	handler  http.Handler
	reg      *prometheus.Registry
	log      *log.Logger
	out      io.Writer // progress lines; runProxy sets stdout

	inFlight atomic.Int64
	latency  *prometheus.HistogramVec
	byClass  [6]prometheus.Observer // latency's series for 1xx..5xx, looked up once
}

// NewProxy builds the director and the handler. logw receives proxy errors.
// With cfg.Service set it resolves the service first, which may use the
// network until ctx ends.
func NewProxy(ctx context.Context, cfg ProxyConfig, logw io.Writer) (*Proxy, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = defaultShutdown
	}
	var (
		d        *director.Director
		closeDir func()
		gf       *gossipFollower // nil without --gossip-join
		boot     *bootstrap.Client
	)
	if cfg.Service != nil {
		bc := *cfg.Service
		bc.Director = cfg.Director
		if bc.Logf == nil {
			l := log.New(logw, "smartclient proxy: ", log.LstdFlags)
			bc.Logf = l.Printf
		}
		c, err := bootstrap.Open(ctx, bc)
		if err != nil {
			return nil, err
		}
		d, closeDir = c.Director, func() { c.Close() }
		boot = c
		crt, _ := c.Certificate()
		cfg.Members = crt.Members()
	} else if cfg.Gossip != nil {
		var err error
		if gf, err = followGossip(ctx, *cfg.Gossip, cfg.Director, logw); err != nil {
			return nil, err
		}
		d, cfg.Members, closeDir = gf.dir, gf.initial, gf.close
	} else if cfg.Registry != nil {
		var err error
		if d, cfg.Members, closeDir, err = registryDirector(ctx, *cfg.Registry, cfg.Director); err != nil {
			return nil, err
		}
	} else {
		var err error
		if d, err = director.New(cfg.Director, cfg.Members); err != nil {
			return nil, err
		}
		closeDir = d.Close
	}
	p := &Proxy{
		cfg:      cfg,
		dir:      d,
		closeDir: closeDir,
		boot:     boot,
		reg:      prometheus.NewRegistry(),
		log:      log.New(logw, "smartclient proxy: ", log.LstdFlags),
		out:      io.Discard,
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	// Every request goes to one of a handful of hosts: keep enough idle
	// connections per host that a busy proxy does not redial each time.
	base.MaxIdleConnsPerHost = 64
	p.base = base
	var memberRT http.RoundTripper = base
	if boot != nil {
		// The certificate's member key pins are checked on every
		// handshake, and follow the certificate when a newer one is
		// accepted.
		rt, err := smarthttp.PinTLS(base, boot.Pins())
		if err != nil {
			closeDir()
			return nil, err
		}
		memberRT = rt
	}

	p.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "smartclient_proxy_request_duration_seconds",
		Help:    "Time from receiving a request to finishing its response, by status class.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5ms .. ~16s
	}, []string{"code"})
	for c := 1; c <= 5; c++ {
		p.byClass[c] = p.latency.WithLabelValues(strconv.Itoa(c) + "xx")
	}
	p.reg.MustRegister(
		NewCollector(d),
		p.latency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "smartclient_proxy_in_flight",
			Help: "Requests the proxy is serving now.",
		}, func() float64 { return float64(p.inFlight.Load()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	rp := &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: smarthttp.NewTransport(d, memberRT),
		// 0: ReverseProxy flushes at once whatever has no Content-Length
		// (server-sent events, long polls, chunked streams) and buffers the
		// rest, so a small reply goes out in one write instead of a chunked
		// header write, body write and trailer write (-1 cost 4x in
		// throughput here).
		FlushInterval: 0,
		// Without a pool every request allocates a 32 KiB copy buffer: 70%
		// of the hop's allocated bytes, and the garbage collection they
		// cause (BenchmarkProxyHop: 46.8 -> 14.7 KB per request).
		BufferPool:   &copyBuffers,
		ErrorHandler: p.proxyError,
		ErrorLog:     p.log,
	}
	metrics := promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{ErrorLog: p.log})
	mux := http.NewServeMux()
	mux.Handle("GET "+StatsPath, http.HandlerFunc(p.serveStats))
	mux.Handle("GET "+MetricsPath, metrics)
	mux.Handle("GET "+AltMetricsPath, metrics)
	mux.Handle("/", p.measure(gf.wrap(rp)))
	p.handler = mux
	return p, nil
}

// bufferPool recycles ReverseProxy's body copy buffers.
type bufferPool struct{ p sync.Pool }

// copyBuffers is shared by every proxy in the process.
var copyBuffers bufferPool

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// Handler is the proxy's HTTP handler.
func (p *Proxy) Handler() http.Handler { return p.handler }

// Director is the proxy's director.
func (p *Proxy) Director() *director.Director { return p.dir }

// Registry is the proxy's own Prometheus registry.
func (p *Proxy) Registry() *prometheus.Registry { return p.reg }

// Close releases the director and idle member connections.
func (p *Proxy) Close() {
	p.closeDir()
	p.base.CloseIdleConnections()
}

// rewrite prepares the outbound request. The smart transport chooses the
// member and fills in its scheme and host; the Host header is left empty so
// that it names the member, not this proxy.
//
// X-Forwarded-For: the client's own X-Forwarded-For is dropped (Rewrite
// strips it before this runs) and replaced with the peer address the proxy
// saw, so a client cannot forge the address the service sees.
// X-Forwarded-Host and -Proto describe the request as the proxy received it.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = proxyPlaceholder
	pr.Out.Host = ""
	pr.SetXForwarded()
}

// proxyError answers a request that no member could serve.
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away; nobody is left to tell.
		return
	}
	status := http.StatusBadGateway
	if errors.Is(err, director.ErrAttemptTimeout) || errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusGatewayTimeout
	}
	p.log.Printf("%s %s: %v", r.Method, r.URL.Path, err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "smartclient proxy: no member could serve the request: %v\n", err)
}

// measure counts in-flight requests and observes their latency by status
// class.
func (p *Proxy) measure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		p.inFlight.Add(1)
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			p.inFlight.Add(-1)
			code := rec.status
			if code == 0 {
				code = http.StatusOK
			}
			if c := code / 100; c >= 1 && c <= 5 {
				p.byClass[c].Observe(time.Since(start).Seconds())
			} else {
				p.latency.WithLabelValues(strconv.Itoa(c) + "xx").Observe(time.Since(start).Seconds())
			}
		}()
		h.ServeHTTP(rec, r)
	})
}

// statusRecorder remembers the status code. Unwrap lets
// http.ResponseController reach Flush and Hijack on the real writer, which
// streaming and protocol upgrades through the reverse proxy need.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 || s.status < 200 { // 1xx responses precede the real one
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Serve accepts connections on ln until ctx ends, then shuts down
// gracefully: no new connections, in-flight requests get ShutdownTimeout to
// finish, then the director is closed.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           p.handler,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          p.log,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-errc:
		// Serve failed on its own (the listener broke).
	case <-ctx.Done():
		fmt.Fprintln(p.out, "shutting down: waiting for requests in flight")
		sctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownTimeout)
		err = srv.Shutdown(sctx)
		cancel()
		if err != nil {
			srv.Close() // the timeout passed: cut the stragglers
		}
		<-errc
	}
	p.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// runProxy is `smartclient proxy`: parse flags, listen, print the policy,
// members and bound address, then serve until ctx ends.
func runProxy(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- string) error {
	cfg, err := parseProxyFlags(args)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// A proxy allocates per request and holds little: trading some
		// memory for a quarter of the collector's work raised its rate by
		// about a fifth in the hop benchmark. GOGC still overrides it.
		debug.SetGCPercent(400)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return usagef("%v", err)
	}
	p, err := NewProxy(ctx, cfg, stderr)
	if err != nil {
		ln.Close()
		if cfg.Service != nil {
			return err // the service could not be resolved: not a usage error
		}
		return usagef("%v", err)
	}
	p.out = stdout
	fmt.Fprintf(stdout, "policy: %s\n", p.dir.Stats().Policy)
	if cfg.Service != nil {
		c, src := p.certificate()
		fmt.Fprintf(stdout, "service: %s version %d from %s\n", cfg.Service.Name, c.Version, src)
	}
	for _, m := range p.cfg.Members {
		fmt.Fprintf(stdout, "member: %s\n", m.URL)
	}
	addr := ln.Addr().String()
	fmt.Fprintf(stdout, "listening: http://%s (stats %s, metrics %s)\n", addr, StatsPath, MetricsPath)
	if ready != nil {
		ready <- addr
	}
	if err := p.Serve(ctx, ln); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintln(stdout, "stopped")
	return nil
}

// agentPoller builds the poller for --agent MEMBER=AGENT_URL pairs. With
// --member, every pair must name one of the members, so a typo cannot
// silently leave a member unpolled; with --service the member list is not
// known yet, and a member without an agent is simply not polled (its poll
// fails and is counted).
func agentPoller(pairs memberList, members []balance.Member, path string) (*agent.Poller, error) {
	known := make(map[string]bool, len(members))
	for _, m := range members {
		known[m.URL] = true
	}
	p := &agent.Poller{Agents: make(map[string]string, len(pairs)), Poll: smarthttp.LoadPoller{Path: path}}
	for _, pair := range pairs {
		m, a, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, usagef("--agent %q: want MEMBER_URL=AGENT_URL", pair)
		}
		mu, err := ParseMemberURL(m)
		if err != nil {
			return nil, usagef("--agent %q: member: %v", pair, err)
		}
		au, err := ParseMemberURL(a)
		if err != nil {
			return nil, usagef("--agent %q: agent: %v", pair, err)
		}
		if len(members) > 0 && !known[mu] {
			return nil, usagef("--agent %q: %s is not one of the --member URLs", pair, mu)
		}
		if _, dup := p.Agents[mu]; dup {
			return nil, usagef("--agent %q: member %s already has an agent", pair, mu)
		}
		p.Agents[mu] = au
	}
	return p, nil
}
