// Package demo is `smartclient demo`: a real cluster of HTTP members of
// unequal speed on loopback sockets in this process, an open-loop load of
// idempotent GETs sent through a director with the smarthttp transport, a
// member crashed part-way (listener and connections closed), and a new
// member added later that the director learns lazily from membership
// records piggy-backed on replies, as the Smart Clients paper proposes. It
// draws a live per-member table and ends with a one-line summary. Nothing
// is simulated: every count comes from a real response.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/smarthttp"
)

// DefaultServiceTimes are the members' mean service times: a fast member,
// two middling ones and a slow one, so a good policy visibly favours the
// fast ones.
var DefaultServiceTimes = []time.Duration{
	2 * time.Millisecond, 4 * time.Millisecond, 8 * time.Millisecond, 20 * time.Millisecond,
}

// Config is the demo's script. The zero value of each field means the
// default beside it.
type Config struct {
	// Servers is the number of members at the start. Default 4; range 2..32.
	Servers int
	// Duration is how long load is offered. Default 20s.
	Duration time.Duration
	// KillAfter is when the fastest member is crashed. Default 6s; negative
	// means never. Must be before Duration.
	KillAfter time.Duration
	// AddAfter is when a new member joins and the members start advertising
	// a membership record that includes it. Default 12s; negative means
	// never. Must be before Duration.
	AddAfter time.Duration
	// Rate is the offered load in requests per second, sent open-loop: a
	// request starts on schedule whether or not earlier ones finished.
	// Default 300; range (0, 20000].
	Rate float64
	// Policy names the director's selection policy. Default policy.Default.
	Policy string
	// ServiceTimes are the members' mean service times, used in turn.
	// Default DefaultServiceTimes. The added member is as fast as the one
	// killed: it replaces it.
	ServiceTimes []time.Duration
	// Concurrency is each member's number of requests served at once;
	// further requests queue. Default 8.
	Concurrency int
	// RequestTimeout bounds one request, retries included. Default 5s.
	RequestTimeout time.Duration
	// Refresh is the time between table redraws. Default 1s.
	Refresh time.Duration
	// ANSI redraws the table in place with terminal escapes instead of
	// printing a new block each time.
	ANSI bool
}

func (c Config) withDefaults() Config {
	if c.Servers == 0 {
		c.Servers = 4
	}
	if c.Duration == 0 {
		c.Duration = 20 * time.Second
	}
	if c.KillAfter == 0 {
		c.KillAfter = 6 * time.Second
	}
	if c.AddAfter == 0 {
		c.AddAfter = 12 * time.Second
	}
	if c.Rate == 0 {
		c.Rate = 300
	}
	if c.Policy == "" {
		c.Policy = policy.Default
	}
	if len(c.ServiceTimes) == 0 {
		c.ServiceTimes = DefaultServiceTimes
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.Refresh == 0 {
		c.Refresh = time.Second
	}
	return c
}

// Validate reports the first field outside its range.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Servers < 2 || c.Servers > 32:
		return fmt.Errorf("demo: Servers %d must be in 2..32 (one is killed)", c.Servers)
	case c.Duration < 0:
		return fmt.Errorf("demo: Duration %v must be > 0", c.Duration)
	case c.KillAfter >= c.Duration:
		return fmt.Errorf("demo: KillAfter %v must be before the end (Duration %v)", c.KillAfter, c.Duration)
	case c.AddAfter >= c.Duration:
		return fmt.Errorf("demo: AddAfter %v must be before the end (Duration %v)", c.AddAfter, c.Duration)
	case !(c.Rate > 0 && c.Rate <= 20000):
		return fmt.Errorf("demo: Rate %v must be in (0, 20000] requests per second", c.Rate)
	case c.Concurrency < 1 || c.Concurrency > 10000:
		return fmt.Errorf("demo: Concurrency %d must be in 1..10000", c.Concurrency)
	case c.RequestTimeout < 0 || c.Refresh < 0:
		return errors.New("demo: RequestTimeout and Refresh must be > 0")
	}
	for _, d := range c.ServiceTimes {
		if d <= 0 || d > time.Minute {
			return fmt.Errorf("demo: service time %v must be in (0, 1m]", d)
		}
	}
	if _, err := policy.New(c.Policy); err != nil {
		return err
	}
	return nil
}

// Summary is what a demo run measured.
type Summary struct {
	Policy   string
	Elapsed  time.Duration
	Requests uint64 // requests completed (succeeded or failed)
	Failed   uint64 // requests that got no 200 reply
	Retries  uint64 // director attempts after the first
	Hedges   uint64
	P50, P99 time.Duration // over successful requests, retries included
	// MembersLearned counts members in the director's final member list
	// that it was not configured with: learned from piggy-backed records.
	MembersLearned int
	Epoch          uint64 // the director's final membership epoch
	Killed, Added  string // member URLs; empty if none
	KilledAt       time.Duration
	AddedAt        time.Duration
	LearnedAt      time.Duration // when the director first used the epoch that added a member; 0 if never
	Members        []MemberSummary
	Errors         []string // the first few failures
}

// MemberSummary is one member's part in a run.
type MemberSummary struct {
	URL         string
	Mean        time.Duration // mean service time
	Killed      bool
	Added       bool
	Served      uint64        // 200 replies carrying this member's name
	Picks       uint64        // attempts the director sent it (0 once dropped from the member list)
	Failures    uint64        // failed attempts at it, as the director counted
	P50, P99    time.Duration // of the requests it served, end to end
	First, Last time.Duration // offsets of its first and last reply
}

// Line is the summary's one-line form, beginning "summary:".
func (s Summary) Line() string {
	none := func(u string) string {
		if u == "" {
			return "none"
		}
		return u
	}
	return fmt.Sprintf("summary: requests=%d failed=%d retries=%d hedges=%d p50_ms=%.2f p99_ms=%.2f members_learned=%d epoch=%d killed=%s added=%s policy=%s elapsed_s=%.1f",
		s.Requests, s.Failed, s.Retries, s.Hedges, ms(s.P50), ms(s.P99), s.MembersLearned, s.Epoch,
		none(s.Killed), none(s.Added), s.Policy, s.Elapsed.Seconds())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Run runs the demo, writing the live table and, last, the summary line to
// w. If ctx ends early, load stops, the requests in flight finish, and Run
// returns the summary so far with ctx's error.
func Run(ctx context.Context, cfg Config, w io.Writer) (Summary, error) {
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}
	cfg = cfg.withDefaults()
	r := &runner{cfg: cfg, out: w, rec: newRecorder(), killedAddr: map[string]bool{},
		lastSeen: map[string]balance.EndpointStats{}}
	defer r.cl.close()
	if err := r.setup(); err != nil {
		return Summary{}, err
	}
	defer r.base.CloseIdleConnections()
	defer r.dir.Close()

	err := r.loop(ctx)
	r.wg.Wait() // every request has ended: RequestTimeout bounds them
	r.elapsed = time.Since(r.start)
	r.draw(true)
	s := r.summary()
	for _, e := range s.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	fmt.Fprintln(w, s.Line())
	return s, err
}

// runner is one demo run.
type runner struct {
	cfg  Config
	out  io.Writer
	rec  *recorder
	cl   cluster
	dir  *director.Director
	base *http.Transport
	hc   *http.Client

	start   time.Time
	elapsed time.Duration
	wg      sync.WaitGroup

	initial    map[string]bool // URLs the director was configured with
	killedAddr map[string]bool // host:port of killed members
	killed     *member
	added      *member
	killedAt   time.Duration
	addedAt    time.Duration
	learnedAt  time.Duration
	epoch      uint64 // highest epoch advertised
	seenEpoch  uint64 // highest epoch the director has reported
	events     []string
	drawn      int // lines of the last table drawn in ANSI mode
	// lastSeen is the director's latest statistics for every member it
	// has listed; only the loop goroutine touches it.
	lastSeen map[string]balance.EndpointStats
}

func (r *runner) setup() error {
	r.initial = make(map[string]bool)
	var ms []balance.Member
	for i := range r.cfg.Servers {
		m, err := r.cl.start(r.cfg.ServiceTimes[i%len(r.cfg.ServiceTimes)], r.cfg.Concurrency, nil)
		if err != nil {
			return err
		}
		ms = append(ms, balance.Member{URL: m.url})
		r.initial[m.url] = true
	}
	r.epoch = 1
	r.cl.advertise(r.epoch, r.cl.live())

	dir, err := director.New(director.Config{Policy: r.cfg.Policy, LearnMembers: true}, ms)
	if err != nil {
		return err
	}
	r.dir = dir
	r.base = http.DefaultTransport.(*http.Transport).Clone()
	r.base.MaxIdleConnsPerHost = 256 // open-loop load keeps many requests in flight
	r.hc = &http.Client{Transport: smarthttp.NewTransport(dir, r.base)}

	fmt.Fprintf(r.out, "demo: %d members on loopback, %g GET/s open-loop for %v, policy %s, director learns members from replies\n",
		r.cfg.Servers, r.cfg.Rate, r.cfg.Duration, dir.Stats().Policy)
	for _, m := range r.cl.all() {
		fmt.Fprintf(r.out, "demo: member %s mean service %v, %d at a time\n", m.url, m.mean, m.capacity)
	}
	if r.cfg.KillAfter > 0 {
		fmt.Fprintf(r.out, "demo: the fastest member is crashed at %v", r.cfg.KillAfter)
		if r.cfg.AddAfter > 0 {
			fmt.Fprintf(r.out, "; a new member joins at %v", r.cfg.AddAfter)
		}
		fmt.Fprintln(r.out)
	} else if r.cfg.AddAfter > 0 {
		fmt.Fprintf(r.out, "demo: a new member joins at %v\n", r.cfg.AddAfter)
	}
	return nil
}

// loop offers load and runs the script until Duration has passed or ctx
// ends.
func (r *runner) loop(ctx context.Context) error {
	r.start = time.Now()
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	load := time.NewTicker(min(max(interval, time.Millisecond), 10*time.Millisecond))
	defer load.Stop()
	refresh := time.NewTicker(r.cfg.Refresh)
	defer refresh.Stop()
	// The epoch watch only times events; the table itself is redrawn on
	// refresh.
	watch := time.NewTicker(50 * time.Millisecond)
	defer watch.Stop()
	end := time.NewTimer(r.cfg.Duration)
	defer end.Stop()
	kill := timerOrNever(r.cfg.KillAfter)
	add := timerOrNever(r.cfg.AddAfter)

	var issued int64
	for {
		select {
		case now := <-load.C:
			// Open loop: issue whatever the schedule says is due, so a
			// late tick does not lower the offered rate.
			due := int64(now.Sub(r.start).Seconds() * r.cfg.Rate)
			for ; issued < due; issued++ {
				r.wg.Add(1)
				go r.request()
			}
		case <-kill:
			kill = nil
			r.kill()
		case <-add:
			add = nil
			if err := r.add(); err != nil {
				return err
			}
		case <-watch.C:
			r.watchEpoch()
		case <-refresh.C:
			r.watchEpoch()
			r.draw(false)
		case <-end.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func timerOrNever(d time.Duration) <-chan time.Time {
	if d <= 0 {
		return nil
	}
	return time.After(d)
}

// request sends one GET through the director and records what came back.
func (r *runner) request() {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.RequestTimeout)
	defer cancel()
	t0 := time.Now()
	// The transport replaces the host with the member the director picks.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://demo.invalid/work", nil)
	if err != nil {
		r.rec.fail(err.Error())
		return
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		r.rec.fail(err.Error())
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	now := time.Now()
	switch who := resp.Header.Get(ServedByHeader); {
	case err != nil:
		r.rec.fail(fmt.Sprintf("reading reply from %s: %v", who, err))
	case resp.StatusCode != http.StatusOK:
		r.rec.fail(fmt.Sprintf("status %s from %s", resp.Status, who))
	case who == "":
		r.rec.fail("reply without " + ServedByHeader)
	default:
		r.rec.ok(who, now.Sub(t0), now.Sub(r.start))
	}
}

func (r *runner) since() time.Duration { return time.Since(r.start) }

func (r *runner) event(format string, args ...any) {
	e := fmt.Sprintf("t=%5.1fs  ", r.since().Seconds()) + fmt.Sprintf(format, args...)
	r.events = append(r.events, e)
	if !r.cfg.ANSI {
		fmt.Fprintln(r.out, e)
	}
}

// kill crashes the fastest live member.
func (r *runner) kill() {
	live := r.cl.live()
	victim := live[0]
	for _, m := range live[1:] {
		if m.mean < victim.mean {
			victim = m
		}
	}
	victim.kill()
	r.killed, r.killedAt = victim, r.since()
	r.killedAddr[strings.TrimPrefix(victim.url, "http://")] = true
	r.event("killed %s (fastest member): listener and open connections closed", victim.url)
}

// add starts a new member and has every live member advertise a membership
// record with the next epoch. The director is not told: it learns the new
// list from the first reply that carries it.
func (r *runner) add() error {
	mean := r.cfg.ServiceTimes[0]
	if r.killed != nil {
		mean = r.killed.mean
	}
	m, err := r.cl.start(mean, r.cfg.Concurrency, r.killedAddr)
	if err != nil {
		return err
	}
	m.added = true
	r.added, r.addedAt = m, r.since()
	r.epoch++
	live := r.cl.live()
	r.cl.advertise(r.epoch, live)
	r.event("added %s (mean service %v); members now advertise epoch %d with %d members", m.url, m.mean, r.epoch, len(live))
	return nil
}

// watchEpoch notes when the director switched to a new member list.
func (r *runner) watchEpoch() {
	st := r.dir.Stats()
	r.remember(st.Members)
	if st.Epoch == r.seenEpoch {
		return
	}
	r.seenEpoch = st.Epoch
	if r.added != nil && st.Epoch == r.epoch && r.learnedAt == 0 {
		r.learnedAt = r.since()
	}
	r.event("director learned membership epoch %d from a reply: %d members", st.Epoch, len(st.Members))
}

func (r *runner) summary() Summary {
	st := r.dir.Stats()
	requests, failed, p50, p99, views := r.rec.view()
	s := Summary{
		Policy:    st.Policy,
		Elapsed:   r.elapsed,
		Requests:  requests,
		Failed:    failed,
		Retries:   st.Retries,
		Hedges:    st.Hedges,
		P50:       p50,
		P99:       p99,
		Epoch:     st.Epoch,
		KilledAt:  r.killedAt,
		AddedAt:   r.addedAt,
		LearnedAt: r.learnedAt,
		Errors:    r.rec.errors(),
	}
	if r.killed != nil {
		s.Killed = r.killed.url
	}
	if r.added != nil {
		s.Added = r.added.url
	}
	r.remember(st.Members)
	for _, m := range st.Members {
		if !r.initial[m.Member.URL] {
			s.MembersLearned++
		}
	}
	for _, m := range r.cl.all() {
		v, es := views[m.url], r.lastSeen[m.url]
		s.Members = append(s.Members, MemberSummary{
			URL: m.url, Mean: m.mean, Killed: m.killed.Load(), Added: m.added,
			Served: v.served, Picks: es.Picks, Failures: es.Failures,
			P50: v.p50, P99: v.p99, First: v.first, Last: v.last,
		})
	}
	return s
}

// round keeps printed durations short.
func round(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", math.Round(ms(d)*10)/10)
}
