package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smartclient/smartclient/smarthttp"
)

// MemberSpec is one member's controlled behaviour.
type MemberSpec struct {
	// Concurrency is how many requests the member serves at once; more
	// wait in a queue (FIFO, unbounded: overload queues, it does not
	// vanish). 0 means no cap.
	Concurrency int `json:"concurrency,omitempty"`
	// Service is the distribution of service times; its zero value serves
	// at once.
	Service Dist `json:"service"`
	// Bandwidth caps the bytes per second the member's link carries, over
	// all its connections (Figure 6). 0 means no cap.
	Bandwidth float64 `json:"bandwidth,omitempty"`
}

// Dist is a service-time distribution: exponential with mean Mean, except
// that with probability SlowProb a request takes Slow instead (rare very
// slow requests).
type Dist struct {
	Mean     time.Duration `json:"mean,omitempty"`
	SlowProb float64       `json:"slow_prob,omitempty"`
	Slow     time.Duration `json:"slow,omitempty"`
}

// MeanTime is the distribution's mean.
func (d Dist) MeanTime() time.Duration {
	return time.Duration((1-d.SlowProb)*float64(d.Mean) + d.SlowProb*float64(d.Slow))
}

func (d Dist) sample(r *rand.Rand) time.Duration {
	if d.SlowProb > 0 && r.Float64() < d.SlowProb {
		return d.Slow
	}
	if d.Mean <= 0 {
		return 0
	}
	return time.Duration(r.ExpFloat64() * float64(d.Mean))
}

// Capacity is the member's throughput in requests per second when busy:
// Concurrency / mean service time. 0 means unbounded.
func (m MemberSpec) Capacity() float64 {
	mt := m.Service.MeanTime()
	if m.Concurrency <= 0 || mt <= 0 {
		return 0
	}
	return float64(m.Concurrency) / mt.Seconds()
}

func (m MemberSpec) validate() error {
	switch {
	case m.Concurrency < 0 || m.Concurrency > 100000:
		return fmt.Errorf("concurrency %d: must be in 0..100000", m.Concurrency)
	case m.Service.Mean < 0 || m.Service.Mean > time.Minute:
		return fmt.Errorf("service mean %v: must be in 0..1m", m.Service.Mean)
	case m.Service.Slow < 0 || m.Service.Slow > time.Minute:
		return fmt.Errorf("slow service time %v: must be in 0..1m", m.Service.Slow)
	case m.Service.SlowProb < 0 || m.Service.SlowProb > 1:
		return fmt.Errorf("slow probability %v: must be in 0..1", m.Service.SlowProb)
	case m.Bandwidth < 0:
		return fmt.Errorf("bandwidth %v: must be >= 0", m.Bandwidth)
	}
	return nil
}

// Paths the members serve.
const (
	workPath = "/work" // a request with a service time drawn from Dist
	filePath = "/file" // a FileSize-byte file, with Range support, paced by Bandwidth
	FileSize = 512 << 10
)

// firstMemberIP is where members' addresses start: 127.0.0.2, .3, …, so
// that every member has its own address and DNS can name them (Linux routes
// all of 127.0.0.0/8 to lo without setup). All members share one port.
const firstMemberIP = 2

// maxMembers bounds one member process.
const maxMembers = 64

// MemberMain is the member process: `smartclient bench member --spec JSON
// [--seed N]`. It serves one member per spec on 127.0.0.2, .3, … at one
// common port, prints "members URL URL …" once they accept connections,
// then reads commands from stdin: "kill I" closes member I's listener and
// connections, as a crash would. It exits when stdin ends or ctx ends.
func MemberMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench member", flag.ContinueOnError)
	fs.SetOutput(stderr)
	specJSON := fs.String("spec", "", "JSON list of member specs")
	seed := fs.Uint64("seed", 1, "seed for service times")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench member: unexpected argument %q", fs.Arg(0))
	}
	specs, err := parseSpecs([]byte(*specJSON))
	if err != nil {
		return fmt.Errorf("bench member: %w", err)
	}
	lns, err := listenMembers(len(specs))
	if err != nil {
		return fmt.Errorf("bench member: %w", err)
	}
	servers := make([]*http.Server, len(specs))
	urls := make([]string, len(specs))
	for i, s := range specs {
		h := newMemberHandler(s, *seed+uint64(i)*0x9e3779b97f4a7c15)
		servers[i] = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		urls[i] = "http://" + lns[i].Addr().String()
		go servers[i].Serve(lns[i])
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	fmt.Fprintf(stdout, "members %s\n", strings.Join(urls, " "))

	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-cmds:
			if !ok {
				return nil
			}
			f := strings.Fields(c)
			if len(f) == 2 && f[0] == "kill" {
				if i, err := strconv.Atoi(f[1]); err == nil && i >= 0 && i < len(servers) {
					servers[i].Close()
					fmt.Fprintf(stdout, "killed %d\n", i)
					continue
				}
			}
			fmt.Fprintf(stderr, "bench member: bad command %q\n", c)
		}
	}
}

// parseSpecs reads the --spec flag: bounded, validated.
func parseSpecs(b []byte) ([]MemberSpec, error) {
	if len(b) > 64<<10 {
		return nil, errors.New("--spec: longer than 64 KiB")
	}
	var specs []MemberSpec
	if err := json.Unmarshal(b, &specs); err != nil {
		return nil, fmt.Errorf("--spec: %w", err)
	}
	if len(specs) == 0 || len(specs) > maxMembers {
		return nil, fmt.Errorf("--spec: %d members, want 1..%d", len(specs), maxMembers)
	}
	for i, s := range specs {
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("--spec: member %d: %w", i, err)
		}
	}
	return specs, nil
}

// listenMembers binds n listeners on 127.0.0.2.. at one common port,
// retrying with a new port if one address has it taken.
func listenMembers(n int) ([]net.Listener, error) {
	var lastErr error
	for try := 0; try < 20; try++ {
		first, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", firstMemberIP))
		if err != nil {
			return nil, err
		}
		port := first.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{first}
		for i := 1; i < n; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", firstMemberIP+i, port))
			if err != nil {
				lastErr = err
				break
			}
			lns = append(lns, ln)
		}
		if len(lns) == n {
			return lns, nil
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	return nil, fmt.Errorf("no common free port on 127.0.0.%d..%d: %v", firstMemberIP, firstMemberIP+n-1, lastErr)
}

// memberHandler serves one member: a concurrency-capped queue in front of
// a service time, wrapped in smarthttp.Middleware so replies carry the
// member's load as a modified server's would.
type memberHandler struct {
	spec MemberSpec
	sem  chan struct{} // nil: no cap
	mu   sync.Mutex
	rng  *rand.Rand
	link *link
	file []byte
}

func newMemberHandler(s MemberSpec, seed uint64) http.Handler {
	h := &memberHandler{spec: s, rng: rand.New(rand.NewPCG(seed, seed^0xda3e39cb94b95bdb))}
	if s.Concurrency > 0 {
		h.sem = make(chan struct{}, s.Concurrency)
	}
	if s.Bandwidth > 0 {
		h.link = &link{rate: s.Bandwidth}
	}
	h.file = make([]byte, FileSize)
	for i := range h.file {
		h.file[i] = byte('a' + i%26)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+workPath, h.work)
	mux.HandleFunc("GET "+filePath, h.serveFile)
	mw := &smarthttp.Middleware{Capacity: s.Concurrency}
	return mw.Wrap(mux)
}

// acquire waits for a slot. A request whose client gave up while queued
// leaves the queue: it was never started. Once started, work is not
// abandoned (a real server rarely notices), so a cancelled hedge still
// costs its full service time.
func (h *memberHandler) acquire(ctx context.Context) bool {
	if h.sem == nil {
		return true
	}
	select {
	case h.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (h *memberHandler) release() {
	if h.sem != nil {
		<-h.sem
	}
}

var okBody = []byte("ok: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n")

func (h *memberHandler) work(w http.ResponseWriter, r *http.Request) {
	if !h.acquire(r.Context()) {
		return
	}
	defer h.release()
	h.mu.Lock()
	d := h.spec.Service.sample(h.rng)
	h.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(d)
		<-t.C
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(okBody)
}

// serveFile serves the file with Range support; the member's link paces
// the bytes.
func (h *memberHandler) serveFile(w http.ResponseWriter, r *http.Request) {
	if !h.acquire(r.Context()) {
		return
	}
	defer h.release()
	var out io.Writer = w
	if h.link != nil {
		out = &pacedWriter{w: w, link: h.link}
	}
	http.ServeContent(writerOnly{w, out}, r, "file", time.Time{}, bytes.NewReader(h.file))
}

// writerOnly routes the body through the pacer but keeps the real
// ResponseWriter's headers.
type writerOnly struct {
	http.ResponseWriter
	out io.Writer
}

func (w writerOnly) Write(b []byte) (int, error) { return w.out.Write(b) }

// link is a member's network link: a FIFO of byte reservations at rate
// bytes per second shared by all its connections.
type link struct {
	mu   sync.Mutex
	next time.Time
	rate float64
}

// reserve books n bytes and returns when they may be sent.
func (l *link) reserve(n int) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	return l.next
}

type pacedWriter struct {
	w    io.Writer
	link *link
}

const paceChunk = 8 << 10

func (p *pacedWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		c := min(len(b), paceChunk)
		if d := time.Until(p.link.reserve(c)); d > 0 {
			t := time.NewTimer(d)
			<-t.C
		}
		m, err := p.w.Write(b[:c])
		n += m
		if err != nil {
			return n, err
		}
		b = b[c:]
	}
	return n, nil
}

// members is the suite's side of a member process.
type members struct {
	p    *proc
	urls []string
	port int
}

// startMembers runs a member process with specs and waits until it serves.
func startMembers(ctx context.Context, cfg *Config, specs []MemberSpec, seed uint64) (*members, error) {
	b, err := json.Marshal(specs)
	if err != nil {
		return nil, err
	}
	argv := append(append([]string{}, cfg.Self...), "bench", "member", "--spec", string(b), "--seed", strconv.FormatUint(seed, 10))
	p, err := startProc("member process", argv, cfg.SelfEnv, "")
	if err != nil {
		return nil, err
	}
	line, err := p.waitLine(ctx, "members ", 20*time.Second)
	if err != nil {
		p.stop()
		return nil, err
	}
	urls := strings.Fields(line)
	if len(urls) != len(specs) {
		p.stop()
		return nil, fmt.Errorf("member process: %d URLs for %d members", len(urls), len(specs))
	}
	_, portStr, _ := net.SplitHostPort(strings.TrimPrefix(urls[0], "http://"))
	port, _ := strconv.Atoi(portStr)
	return &members{p: p, urls: urls, port: port}, nil
}

// kill crashes member i.
func (m *members) kill(i int) error {
	_, err := fmt.Fprintf(m.p.stdin, "kill %d\n", i)
	return err
}

// hostPorts are the members' host:port addresses.
func (m *members) hostPorts() []string {
	hp := make([]string, len(m.urls))
	for i, u := range m.urls {
		hp[i] = strings.TrimPrefix(u, "http://")
	}
	return hp
}

func (m *members) cpu() time.Duration {
	c, _ := groupCPU(m.p.pgid())
	return c
}

func (m *members) stop() { m.p.stop() }
