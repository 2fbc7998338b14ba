package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/smartclient/smartclient/smarthttp"
	"github.com/smartclient/smartclient/wire"
)

// MemberHeader is the response header in which `smartclient member` names
// itself, so that a client (or the failure suite) sees which member
// answered.
const MemberHeader = "Member"

// Limits of `smartclient member`.
const (
	DefaultMemberListen = "127.0.0.1:0"
	maxMemberBody       = 64 << 20 // --body-bytes
	maxMemberRequest    = 1 << 20  // request bodies are read and discarded up to this
	maxServiceTime      = time.Hour
	expCap              = 20 // an exponential draw is capped at 20 × the mean
)

const memberUsage = `usage: smartclient member [flags]

A member for tests and demos: an HTTP server that reports its load to
directors (the Smartclient-Load header on every reply) and drains gracefully.
Every path but /healthz is work: GET, HEAD, POST and PUT wait for a service
time drawn from --service-time and --service-dist, with at most --capacity
requests served at once (the rest queue), then answer 200 with the member's
name in a Member header and a body of --body-bytes bytes (default: the name
and a newline). Request bodies are read and discarded (at most 1 MiB).
GET /healthz answers "ok" at once. Prints "listening on ADDR" when ready.
SIGINT/SIGTERM drain: replies say draining for --drain-announce, new
requests get 503 for --drain-refuse, then in-flight requests finish
(at most --shutdown-timeout).
`

// memberConfig is what `smartclient member` runs; flags fill it.
type memberConfig struct {
	Listen          string
	Name            string
	Capacity        int           // requests served at once; 0 = no limit (and unknown to directors)
	ServiceTime     time.Duration // fixed time, or the exponential mean
	Dist            string        // "fixed" or "exp"
	BodyBytes       int           // 0: the name and a newline
	Seed            uint64        // exponential draws; 0: random
	Drain           smarthttp.DrainConfig
	ShutdownTimeout time.Duration
}

func parseMemberFlags(args []string) (memberConfig, error) {
	var cfg memberConfig
	host, _ := os.Hostname()
	fs := newFlagSet("member")
	fs.StringVar(&cfg.Listen, "listen", DefaultMemberListen, "address to listen on (port 0: any free port)")
	fs.StringVar(&cfg.Name, "name", host, "the member's name, sent in the "+MemberHeader+" header")
	fs.IntVar(&cfg.Capacity, "capacity", 0, "requests served at once, the rest queue; reported as the load record's capacity (0: no limit, unknown)")
	fs.DurationVar(&cfg.ServiceTime, "service-time", 0, "service time per request: the fixed time, or the mean with --service-dist exp")
	fs.StringVar(&cfg.Dist, "service-dist", "fixed", "service time distribution: fixed or exp (exponential, capped at 20× the mean)")
	fs.IntVar(&cfg.BodyBytes, "body-bytes", 0, "reply body size in bytes (0: the name and a newline)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the exponential draws (0: random)")
	fs.DurationVar(&cfg.Drain.Announce, "drain-announce", smarthttp.DefaultAnnounce, "on SIGTERM, how long to go on serving while replies say draining")
	fs.DurationVar(&cfg.Drain.Refuse, "drain-refuse", smarthttp.DefaultRefuse, "then how long to answer new requests 503 before closing the listener")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", defaultShutdown, "then how long to wait for requests in flight")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, helpError{fs: fs, usage: memberUsage}
		}
		return cfg, err
	}
	switch {
	case cfg.Name == "":
		return cfg, usagef("--name is empty")
	case len(cfg.Name) > 128 || !visibleASCII(cfg.Name):
		return cfg, usagef("--name %q: want 1..128 visible ASCII characters", cfg.Name)
	case cfg.Capacity < 0 || cfg.Capacity > wire.MaxInFlight:
		return cfg, usagef("--capacity %d: must be in 0..%d", cfg.Capacity, wire.MaxInFlight)
	case cfg.ServiceTime < 0 || cfg.ServiceTime > maxServiceTime:
		return cfg, usagef("--service-time %v: must be in 0..%v", cfg.ServiceTime, maxServiceTime)
	case cfg.Dist != "fixed" && cfg.Dist != "exp":
		return cfg, usagef("--service-dist %q: want fixed or exp", cfg.Dist)
	case cfg.BodyBytes < 0 || cfg.BodyBytes > maxMemberBody:
		return cfg, usagef("--body-bytes %d: must be in 0..%d", cfg.BodyBytes, maxMemberBody)
	case cfg.ShutdownTimeout <= 0:
		return cfg, usagef("--shutdown-timeout %v: must be > 0", cfg.ShutdownTimeout)
	}
	// DrainConfig reads a negative period as "none"; 0 would mean its default.
	if cfg.Drain.Announce == 0 {
		cfg.Drain.Announce = -1
	}
	if cfg.Drain.Refuse == 0 {
		cfg.Drain.Refuse = -1
	}
	return cfg, nil
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// memberHandler is the member's work: a queue of Capacity slots, a service
// time per request, a fixed reply.
type memberHandler struct {
	name   string
	slots  chan struct{} // nil: no limit
	sample func() time.Duration
	body   []byte
}

func newMemberHandler(cfg memberConfig) *memberHandler {
	h := &memberHandler{name: cfg.Name}
	if cfg.Capacity > 0 {
		h.slots = make(chan struct{}, cfg.Capacity)
	}
	h.body = []byte(cfg.Name + "\n")
	if cfg.BodyBytes > 0 {
		h.body = make([]byte, cfg.BodyBytes)
		for i := range h.body {
			h.body[i] = 'a' + byte(i%26)
		}
	}
	h.sample = serviceSampler(cfg.ServiceTime, cfg.Dist, cfg.Seed)
	return h
}

// serviceSampler returns the service-time distribution: fixed, or
// exponential with the given mean, capped at expCap × mean so that one
// draw cannot stall a test.
func serviceSampler(mean time.Duration, dist string, seed uint64) func() time.Duration {
	if dist != "exp" || mean == 0 {
		return func() time.Duration { return mean }
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() time.Duration {
		mu.Lock()
		x := r.ExpFloat64()
		mu.Unlock()
		return time.Duration(min(x, expCap) * float64(mean))
	}
}

func (h *memberHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(MemberHeader, h.name)
	if r.URL.Path == "/healthz" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	n, err := io.Copy(io.Discard, io.LimitReader(r.Body, maxMemberRequest+1))
	if err != nil {
		return // the client went away
	}
	if n > maxMemberRequest {
		http.Error(w, "request body over "+strconv.Itoa(maxMemberRequest)+" bytes", http.StatusRequestEntityTooLarge)
		return
	}
	ctx := r.Context()
	if h.slots != nil {
		select {
		case h.slots <- struct{}{}:
			defer func() { <-h.slots }()
		case <-ctx.Done():
			return
		}
	}
	if d := h.sample(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(h.body)))
	w.Write(h.body)
}

// runMember serves until ctx ends (SIGINT/SIGTERM in the command), then
// drains.
func runMember(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseMemberFlags(args)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return usagef("--listen: %v", err)
	}
	hs := &http.Server{
		Handler:           newMemberHandler(cfg),
		ReadHeaderTimeout: 10 * time.Second,
	}
	srv, err := smarthttp.NewServer(hs, &smarthttp.Middleware{Capacity: cfg.Capacity}, cfg.Drain)
	if err != nil {
		ln.Close()
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "member %s: capacity %d, service time %v %s\n", cfg.Name, cfg.Capacity, cfg.ServiceTime, cfg.Dist)
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	fmt.Fprintln(stdout, "draining")
	dctx, cancel := context.WithTimeout(context.Background(), cfg.Drain.Announce+cfg.Drain.Refuse+cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Drain(dctx); err != nil {
		srv.Close()
		<-served
		return fmt.Errorf("drain: requests still running after --shutdown-timeout %v: %w", cfg.ShutdownTimeout, err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintln(stdout, "drained")
	return nil
}
