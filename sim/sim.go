package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/wire"
)

// Run simulates sc with every director using the named policy (see
// policy.Names) and returns what happened. The same scenario, policy and
// seed always give the same Result. It returns an error only for an invalid
// scenario or an unknown policy.
func Run(sc Scenario, policyName string, seed uint64) (Result, error) {
	p, err := policy.New(policyName)
	if err != nil {
		return Result{}, err
	}
	r, err := RunPolicy(sc, p, seed)
	r.Policy = policyName
	return r, err
}

// RunPolicy is Run with a policy value, for policies outside package policy
// (candidates being evaluated). Every director builds its pickers from p.
func RunPolicy(sc Scenario, p balance.Policy, seed uint64) (Result, error) {
	if err := sc.Validate(); err != nil {
		return Result{}, err
	}
	if p == nil {
		return Result{}, errors.New("sim: nil policy")
	}
	s, err := newEngine(sc.withDefaults(), p, seed)
	if err != nil {
		return Result{}, err
	}
	s.start()
	s.loop()
	return s.result(), nil
}

// Event kinds.
type evKind uint8

const (
	evArrival  evKind = iota // id: director; a new request
	evAtMember               // id: attempt; it reaches its member
	evServed                 // id: attempt; its member finished serving it
	evReply                  // id: attempt; its reply reaches the director
	evTimeout                // id: attempt; its AttemptTimeout fires
	evBackoff                // id: request; its new round of attempts starts
	evTick                   // id: director; Balancer.Tick
	evOutage                 // id: member; its next outage starts or ends
	evHedge                  // id: request; its hedge timer fires
)

type event struct {
	at   int64
	seq  uint64 // ties break by scheduling order, so runs are reproducible
	kind evKind
	id   int32
}

// eventQueue is a binary min-heap on (at, seq), written out rather than
// through container/heap to keep events unboxed.
type eventQueue []event

func (q eventQueue) less(i, j int) bool {
	return q[i].at < q[j].at || q[i].at == q[j].at && q[i].seq < q[j].seq
}

func (q *eventQueue) push(e event) {
	*q = append(*q, e)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *eventQueue) pop() event {
	h := *q
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h.less(l, m) {
			m = l
		}
		if r < n && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}

// Reply kinds an attempt can get.
const (
	replyOK      uint8 = iota
	replyRefused       // connection refused: NotReached
	replyReset         // connection reset mid-request: MaybeProcessed
)

// Where an attempt is on the member's side.
const (
	phaseTravel  uint8 = iota // on its way to the member
	phaseQueued               // waiting for a service slot
	phaseServing              // being served
	phaseReplied              // answered (or refused, or reset)
	phaseLost                 // swallowed by a hung member
)

type attempt struct {
	req     int32
	member  int32
	slot    int32 // index in member.serving while phaseServing
	ep      *balance.Endpoint
	start   int64
	phase   uint8
	reply   uint8
	pending bool // the director still waits for it
	load    wire.Load
}

type request struct {
	dir    int32
	arrive int64
	work   int64 // service time on a member with Slowdown 1
	key    uint64
	tried  []*balance.Endpoint
	number int // attempts started
	round  int

	// Hedging: attempts started (ids; the ones still pending are the
	// race's), how many were hedges, how many are outstanding, and when
	// the armed hedge timer fires (-1: none armed).
	atts        []int32
	hedges      int
	outstanding int
	hedgeAt     int64
	ended       bool
}

type director struct {
	bal      *balance.Balancer
	budget   *balance.Budget
	lat      *balance.Latency // recent attempt latencies, for hedge delays
	arrivals *rand.Rand       // arrival times, work and keys: the same for every policy
	picks    *rand.Rand       // the Balancer's and backoff's randomness
	rate     float64          // requests per nanosecond
	zone     string
	member   map[*balance.Endpoint]int32
}

type member struct {
	Member
	rng     *rand.Rand // service times, with Dist.PerAttempt
	serving []int32    // attempt ids
	queue   []int32    // FIFO of attempt ids, from head
	head    int
	mode    FailMode
	failing bool
	outage  int // index of the next outage boundary: 2k = start of Outages[k], 2k+1 = its end
	picks   int
}

type engine struct {
	sc     Scenario
	policy string
	seed   uint64
	window int64 // arrivals happen in [0, window)
	end    int64 // hard stop

	now     int64
	seq     uint64
	q       eventQueue
	events  int
	dirs    []director
	members []member
	reqs    []request
	atts    []attempt

	arriving int // directors whose arrival window is still open
	active   int // requests neither succeeded nor failed

	lat                       []int64
	succeeded, failed         int
	inWindow                  int // succeeded within the arrival window
	retries, budgetDenied     int
	hedges                    int
	refused, resets, timeouts int
	exhausted, notRetryable   int
}

func newEngine(sc Scenario, p balance.Policy, seed uint64) (*engine, error) {
	s := &engine{sc: sc, policy: p.Name(), seed: seed}
	total := sc.Load * sc.Capacity() / float64(time.Second) // requests per ns
	s.window = int64(math.Ceil(float64(sc.Requests) / total))
	s.end = s.window + int64(sc.Drain)
	bm := make([]balance.Member, len(sc.Members))
	s.members = make([]member, len(sc.Members))
	for i, m := range sc.Members {
		bm[i] = balance.Member{URL: fmt.Sprintf("sim://m%d", i), Zone: m.Zone}
		s.members[i] = member{Member: m, rng: rand.New(rand.NewPCG(seed, 1<<32|uint64(i)))}
	}
	s.dirs = make([]director, sc.Directors)
	for i := range s.dirs {
		d := &s.dirs[i]
		if len(sc.DirectorZones) > 0 {
			d.zone = sc.DirectorZones[i%len(sc.DirectorZones)]
		}
		// Two streams per director: arrivals do not depend on the policy, so
		// every policy faces exactly the same requests.
		d.arrivals = rand.New(rand.NewPCG(seed, uint64(2*i)))
		d.picks = rand.New(rand.NewPCG(seed, uint64(2*i+1)))
		d.rate = total / float64(sc.Directors)
		c := sc.Director
		var err error
		d.bal, err = balance.New(balance.Config{
			Policy: p, Health: c.Health, CostDecay: c.CostDecay, PeakEWMA: c.PeakEWMA,
			InitialCost: c.InitialCost, LoadTTL: c.LoadTTL, Zone: d.zone,
		}, bm, d.picks)
		if err != nil {
			return nil, err
		}
		d.budget = balance.NewBudget(c.Budget, 0)
		d.lat = balance.NewLatency(0, 0)
		eps := d.bal.Endpoints()
		d.member = make(map[*balance.Endpoint]int32, len(eps))
		for j, e := range eps {
			d.member[e] = int32(j)
		}
	}
	s.reqs = make([]request, 0, sc.Requests+sc.Requests/8)
	s.atts = make([]attempt, 0, sc.Requests+sc.Requests/4)
	s.lat = make([]int64, 0, sc.Requests+sc.Requests/8)
	return s, nil
}

func (s *engine) schedule(at int64, k evKind, id int32) {
	s.seq++
	s.q.push(event{at: at, seq: s.seq, kind: k, id: id})
}

func (s *engine) start() {
	for i := range s.dirs {
		d := &s.dirs[i]
		if first := s.nextArrival(d, 0); first < s.window {
			s.arriving++
			s.schedule(first, evArrival, int32(i))
		}
		if s.sc.Director.TickInterval > 0 {
			s.schedule(int64(s.sc.Director.TickInterval), evTick, int32(i))
		}
	}
	for i := range s.members {
		if len(s.members[i].Outages) > 0 {
			s.schedule(s.outageTime(i, 0), evOutage, int32(i))
		}
	}
}

func (s *engine) nextArrival(d *director, after int64) int64 {
	return after + int64(math.Ceil(d.arrivals.ExpFloat64()/d.rate))
}

func (s *engine) outageTime(m, boundary int) int64 {
	o := s.members[m].Outages[boundary/2]
	f := o.From
	if boundary%2 == 1 {
		f = o.To
	}
	return int64(f * float64(s.window))
}

// loop runs events until every request has ended and arrivals are over, or
// the hard stop.
func (s *engine) loop() {
	for len(s.q) > 0 && (s.arriving > 0 || s.active > 0) {
		ev := s.q.pop()
		if ev.at > s.end {
			break
		}
		s.dispatch(ev)
	}
}

func (s *engine) dispatch(ev event) {
	s.now = ev.at
	s.events++
	switch ev.kind {
	case evArrival:
		s.arrival(ev.id)
	case evAtMember:
		s.atMember(ev.id)
	case evServed:
		s.served(ev.id)
	case evReply:
		s.replied(ev.id)
	case evTimeout:
		s.timedOut(ev.id)
	case evBackoff:
		s.newRound(ev.id)
	case evTick:
		s.dirs[ev.id].bal.Tick(s.now, false)
		s.schedule(s.now+int64(s.sc.Director.TickInterval), evTick, ev.id)
	case evOutage:
		s.outage(ev.id)
	case evHedge:
		s.hedge(ev.id)
	}
}

// work draws one request's service time.
func (s *engine) work(r *rand.Rand) int64 {
	d := s.sc.Service
	m := float64(d.Mean)
	var w float64
	switch d.Kind {
	case Constant:
		w = m
	case Exponential:
		w = r.ExpFloat64() * m
	case HeavyTail:
		if r.Float64() < d.TailProb {
			m *= d.TailFactor
		}
		w = r.ExpFloat64() * m
	case RareSlow:
		if r.Float64() < d.TailProb {
			w = m * d.TailFactor
		} else {
			w = r.ExpFloat64() * m
		}
	}
	return max(int64(w), 1)
}

func (s *engine) arrival(di int32) {
	d := &s.dirs[di]
	if next := s.nextArrival(d, s.now); next < s.window {
		s.schedule(next, evArrival, di)
	} else {
		s.arriving--
	}
	id := int32(len(s.reqs))
	s.reqs = append(s.reqs, request{
		dir:     di,
		arrive:  s.now,
		work:    s.work(d.arrivals),
		key:     d.arrivals.Uint64N(uint64(s.sc.Sessions)),
		hedgeAt: -1,
	})
	s.active++
	d.budget.Deposit(s.now)
	s.attempt(id)
}

// attempt starts the request's next attempt, as director.Apply's loop does.
func (s *engine) attempt(ri int32) {
	r := &s.reqs[ri]
	d := &s.dirs[r.dir]
	if r.number >= s.sc.Director.MaxAttempts {
		s.exhausted++
		s.fail(r)
		return
	}
	if r.number > 0 {
		if !d.budget.Withdraw(s.now) {
			s.budgetDenied++
			s.fail(r)
			return
		}
		s.retries++
	}
	in := balance.PickInput{Now: s.now, Rand: d.picks, Tried: r.tried, Key: r.key, HasKey: true}
	e := d.bal.Pick(&in)
	if e == nil {
		// Every eligible member was tried: a new round after a backoff.
		r.round++
		s.schedule(s.now+int64(s.backoff(d, r.round)), evBackoff, ri)
		return
	}
	s.launch(ri, e)
}

func (s *engine) backoff(d *director, round int) time.Duration {
	b := s.sc.Director.RetryBackoff << min(round-1, 10)
	return b/2 + time.Duration(balance.Float01(d.picks)*float64(b/2))
}

func (s *engine) newRound(ri int32) {
	r := &s.reqs[ri]
	d := &s.dirs[r.dir]
	r.tried = r.tried[:0]
	in := balance.PickInput{Now: s.now, Rand: d.picks, Key: r.key, HasKey: true}
	e := d.bal.Pick(&in)
	if e == nil {
		s.exhausted++
		s.fail(r)
		return
	}
	s.launch(ri, e)
}

// launch starts an attempt of request ri on e. An attempt that starts a
// race (no other attempt of the request outstanding) arms the hedge timer.
func (s *engine) launch(ri int32, e *balance.Endpoint) {
	r := &s.reqs[ri]
	d := &s.dirs[r.dir]
	r.number++
	r.outstanding++
	if r.tried == nil {
		r.tried = make([]*balance.Endpoint, 0, min(s.sc.Director.MaxAttempts, 8))
	}
	r.tried = append(r.tried, e)
	mi := d.member[e]
	s.members[mi].picks++
	ai := int32(len(s.atts))
	s.atts = append(s.atts, attempt{req: ri, member: mi, ep: e, start: s.now, pending: true})
	r.atts = append(r.atts, ai)
	s.schedule(s.now+s.delay(d, mi), evAtMember, ai)
	if t := s.sc.Director.AttemptTimeout; t > 0 {
		s.schedule(s.now+int64(t), evTimeout, ai)
	}
	if r.outstanding == 1 {
		s.armHedge(ri)
	}
}

// armHedge schedules request ri's hedge timer, as the director's race does
// after each launch: once the director has MinSamples latencies, after
// their Quantile (at least MinDelay).
func (s *engine) armHedge(ri int32) {
	h := s.sc.Director.Hedge
	r := &s.reqs[ri]
	r.hedgeAt = -1
	if !h.Enabled || s.sc.Director.NonIdempotent {
		return
	}
	q, n := s.dirs[r.dir].lat.Quantile(s.now, h.Quantile)
	if n < uint64(h.MinSamples) {
		return
	}
	r.hedgeAt = s.now + int64(max(q, h.MinDelay))
	s.schedule(r.hedgeAt, evHedge, ri)
}

// hedge fires request ri's hedge timer: another attempt on an untried
// member, within MaxHedges, MaxAttempts and the retry budget.
func (s *engine) hedge(ri int32) {
	r := &s.reqs[ri]
	if r.ended || r.hedgeAt != s.now {
		return // the race ended, or a newer timer replaced this one
	}
	r.hedgeAt = -1
	d := &s.dirs[r.dir]
	if r.hedges >= s.sc.Director.Hedge.MaxHedges || r.number >= s.sc.Director.MaxAttempts {
		return
	}
	if !d.budget.Withdraw(s.now) {
		s.budgetDenied++
		return
	}
	in := balance.PickInput{Now: s.now, Rand: d.picks, Tried: r.tried, Key: r.key, HasKey: true}
	e := d.bal.Pick(&in)
	if e == nil {
		return
	}
	r.hedges++
	s.hedges++
	s.launch(ri, e)
	s.armHedge(ri)
}

// delay is the one-way network delay between d and member mi.
func (s *engine) delay(d *director, mi int32) int64 {
	t := int64(s.sc.NetDelay)
	if z := s.members[mi].Zone; z != "" && d.zone != "" && z != d.zone {
		t += int64(s.sc.CrossZoneDelay)
	}
	return t
}

func (s *engine) sendReply(ai int32, kind uint8) {
	a := &s.atts[ai]
	a.phase, a.reply = phaseReplied, kind
	d := &s.dirs[s.reqs[a.req].dir]
	s.schedule(s.now+s.delay(d, a.member), evReply, ai)
}

func (s *engine) atMember(ai int32) {
	a := &s.atts[ai]
	m := &s.members[a.member]
	switch {
	case m.failing && m.mode == Down:
		s.sendReply(ai, replyRefused)
	case m.failing: // Hang
		a.phase = phaseLost
	case len(m.serving) < m.Capacity:
		s.serve(ai)
	default:
		a.phase = phaseQueued
		m.queue = append(m.queue, ai)
	}
}

func (s *engine) serve(ai int32) {
	a := &s.atts[ai]
	m := &s.members[a.member]
	a.phase = phaseServing
	a.slot = int32(len(m.serving))
	m.serving = append(m.serving, ai)
	work := s.reqs[a.req].work
	if s.sc.Service.PerAttempt {
		work = s.work(m.rng)
	}
	t := float64(work) * m.Slowdown
	s.schedule(s.now+max(int64(t), 1), evServed, ai)
}

func (s *engine) served(ai int32) {
	a := &s.atts[ai]
	if a.phase != phaseServing {
		return // lost to an outage meanwhile
	}
	m := &s.members[a.member]
	// The report counts the request being answered, as a real member's
	// middleware does when it writes the reply's headers.
	inService := len(m.serving)
	a.load = wire.Load{
		TimeMillis: s.now/int64(time.Millisecond) + 1,
		InFlight:   inService + len(m.queue) - m.head,
		Capacity:   m.Capacity,
		Util:       float64(inService) / float64(m.Capacity),
	}
	// Swap-remove a from the serving set.
	last := m.serving[len(m.serving)-1]
	m.serving[a.slot] = last
	s.atts[last].slot = a.slot
	m.serving = m.serving[:len(m.serving)-1]
	s.sendReply(ai, replyOK)
	if m.head < len(m.queue) {
		next := m.queue[m.head]
		m.head++
		if m.head == len(m.queue) {
			m.queue, m.head = m.queue[:0], 0
		} else if m.head >= 1024 && 2*m.head >= len(m.queue) {
			n := copy(m.queue, m.queue[m.head:])
			m.queue, m.head = m.queue[:n], 0
		}
		s.serve(next)
	}
}

func (s *engine) outage(mi int32) {
	m := &s.members[mi]
	b := m.outage
	m.outage++
	if b%2 == 1 { // recovery: the member restarts empty
		m.failing = false
	} else {
		m.failing, m.mode = true, m.Outages[b/2].Mode
		held := append(m.serving, m.queue[m.head:]...)
		for _, ai := range held {
			if m.mode == Down {
				s.sendReply(ai, replyReset)
			} else {
				s.atts[ai].phase = phaseLost
			}
		}
		m.serving, m.queue, m.head = m.serving[:0], m.queue[:0], 0
	}
	if m.outage < 2*len(m.Outages) {
		s.schedule(max(s.outageTime(int(mi), m.outage), s.now), evOutage, mi)
	}
}

func (s *engine) replied(ai int32) {
	a := &s.atts[ai]
	if !a.pending {
		return // the director gave up on it at the timeout
	}
	a.pending = false
	r := &s.reqs[a.req]
	r.outstanding--
	d := &s.dirs[r.dir]
	rtt := time.Duration(s.now - a.start)
	switch a.reply {
	case replyOK:
		d.bal.Report(a.ep, s.now, a.load)
		d.lat.Record(s.now, rtt)
		d.bal.Done(a.ep, s.now, rtt, balance.Success)
		s.abandonOthers(a.req)
		s.succeed(r)
	case replyRefused:
		s.refused++
		d.bal.Done(a.ep, s.now, rtt, balance.Failure)
		if r.outstanding == 0 {
			s.attempt(a.req) // NotReached: always safe to retry
		}
	case replyReset:
		s.resets++
		d.bal.Done(a.ep, s.now, rtt, balance.Failure)
		if r.outstanding == 0 {
			s.retryMaybeProcessed(a.req)
		}
	}
}

// abandonOthers ends the race of request ri after a win: the attempts still
// outstanding are cancelled, as the director cancels hedge losers (their
// members finish the work anyway and the replies are dropped).
func (s *engine) abandonOthers(ri int32) {
	r := &s.reqs[ri]
	r.hedgeAt = -1
	d := &s.dirs[r.dir]
	for _, ai := range r.atts {
		if a := &s.atts[ai]; a.pending {
			a.pending = false
			r.outstanding--
			d.bal.Done(a.ep, s.now, time.Duration(s.now-a.start), balance.Abandoned)
		}
	}
}

func (s *engine) timedOut(ai int32) {
	a := &s.atts[ai]
	if !a.pending {
		return
	}
	a.pending = false
	s.timeouts++
	r := &s.reqs[a.req]
	r.outstanding--
	d := &s.dirs[r.dir]
	d.bal.Done(a.ep, s.now, time.Duration(s.now-a.start), balance.Failure)
	if r.outstanding == 0 {
		s.retryMaybeProcessed(a.req)
	}
}

func (s *engine) retryMaybeProcessed(ri int32) {
	if s.sc.Director.NonIdempotent {
		s.notRetryable++
		s.fail(&s.reqs[ri])
		return
	}
	s.attempt(ri)
}

func (s *engine) succeed(r *request) {
	r.ended = true
	s.active--
	s.succeeded++
	if s.now <= s.window {
		s.inWindow++
	}
	s.lat = append(s.lat, s.now-r.arrive)
}

func (s *engine) fail(r *request) {
	r.ended = true
	s.active--
	s.failed++
}

func (s *engine) result() Result {
	res := Result{
		Scenario:     s.sc.Name,
		Policy:       s.policy,
		Seed:         s.seed,
		Members:      len(s.members),
		Directors:    len(s.dirs),
		Offered:      len(s.reqs),
		Succeeded:    s.succeeded,
		Failed:       s.failed,
		Unfinished:   s.active,
		Attempts:     len(s.atts),
		Retries:      s.retries,
		Hedges:       s.hedges,
		BudgetDenied: s.budgetDenied,
		Exhausted:    s.exhausted,
		NotRetryable: s.notRetryable,
		Refused:      s.refused,
		Resets:       s.resets,
		Timeouts:     s.timeouts,
		Window:       time.Duration(s.window),
		Events:       s.events,
	}
	if res.Offered > 0 {
		res.Throughput = float64(s.inWindow) / float64(res.Offered)
	}
	// Quantiles cover requests that succeeded plus those still unfinished
	// at the hard stop, counted as infinitely slow; failed requests are
	// counted in Failed instead.
	lat := s.lat
	for range s.active {
		lat = append(lat, math.MaxInt64)
	}
	slices.Sort(lat)
	res.P50, res.P99, res.P999 = quantile(lat, 0.5), quantile(lat, 0.99), quantile(lat, 0.999)
	res.Share = make([]float64, len(s.members))
	for i, m := range s.members {
		if res.Attempts > 0 {
			res.Share[i] = float64(m.picks) / float64(res.Attempts)
		}
	}
	return res
}

// quantile is the nearest-rank q-quantile of sorted.
func quantile(sorted []int64, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return time.Duration(sorted[max(i, 0)])
}
