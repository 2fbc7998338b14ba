package policy_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/wire"
)

const tau = float64(10 * time.Second)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// cluster returns a balancer over members (its policy is irrelevant: tests
// build pickers from its endpoints directly) and those endpoints in order.
func cluster(t testing.TB, members ...balance.Member) (*balance.Balancer, []*balance.Endpoint) {
	t.Helper()
	bal, err := balance.New(balance.Config{Policy: policy.Random{}, LoadTTL: time.Hour}, members, seeded(99))
	if err != nil {
		t.Fatal(err)
	}
	return bal, bal.Endpoints()
}

func urls(n int) []balance.Member {
	ms := make([]balance.Member, n)
	for i := range ms {
		ms[i] = balance.Member{URL: fmt.Sprintf("http://m%d:80", i)}
	}
	return ms
}

// setCost makes e's peak-EWMA cost exactly rtt at now: at now = 100s the
// initial cost has decayed to almost nothing, so rtt is a new peak.
func setCost(t testing.TB, bal *balance.Balancer, e *balance.Endpoint, now int64, rtt time.Duration) {
	t.Helper()
	bal.Acquire(e)
	bal.Done(e, now, rtt, balance.Success)
	if got := e.Cost(now, tau); got != float64(rtt) {
		t.Fatalf("cost of %s = %v, want %v", e.Member.URL, got, float64(rtt))
	}
}

// chiSquare returns the chi-square statistic of observed counts against
// expected probabilities.
func chiSquare(counts []int, probs []float64) float64 {
	total := 0
	for _, c := range counts {
		total += c
	}
	var x float64
	for i, c := range counts {
		exp := probs[i] * float64(total)
		x += (float64(c) - exp) * (float64(c) - exp) / exp
	}
	return x
}

// chiCrit999 is the chi-square value with p = 0.001 for df degrees of
// freedom (Wilson-Hilferty approximation). With fixed seeds the tests are
// deterministic; the bound says how far off a policy may be before we call
// it wrong.
func chiCrit999(df int) float64 {
	const z = 3.09
	k := float64(df)
	v := 1 - 2/(9*k) + z*math.Sqrt(2/(9*k))
	return k * v * v * v
}

func index(eps []*balance.Endpoint, e *balance.Endpoint) int {
	return slices.Index(eps, e)
}

func TestNewAndNames(t *testing.T) {
	names := policy.Names()
	if !slices.IsSorted(names) {
		t.Errorf("Names() = %v, not sorted", names)
	}
	for _, want := range []string{"random", "random-biased", "round-robin", "weighted", "least-loaded", "p2c", "hash", "locality"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names() = %v lacks %q", names, want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "p2c"},
		{"p2c", "p2c"},
		{"random", "random"},
		{"random-biased", "random-biased"},
		{"round-robin", "round-robin"},
		{"weighted", "weighted"},
		{"least-loaded", "least-loaded"},
		{"hash", "hash"},
		{"locality", "locality:p2c"},
		{"locality:round-robin", "locality:round-robin"},
		{"locality:hash", "locality:hash"},
	} {
		p, err := policy.New(tc.in)
		if err != nil {
			t.Errorf("New(%q): %v", tc.in, err)
			continue
		}
		if p.Name() != tc.want {
			t.Errorf("New(%q).Name() = %q, want %q", tc.in, p.Name(), tc.want)
		}
	}
	if p, _ := policy.New("locality:round-robin"); p != (policy.Locality{Inner: policy.RoundRobin{}}) {
		t.Errorf("New(locality:round-robin) = %#v", p)
	}
	for _, bad := range []string{"bogus", "P2C", "p2c ", "locality:", "locality:locality", "locality:bogus", "localityx", "locality-p2c", ":p2c"} {
		p, err := policy.New(bad)
		if err == nil {
			t.Errorf("New(%q) = %v, want an error", bad, p)
			continue
		}
		for _, n := range names {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("New(%q) error %q does not list %q", bad, err, n)
			}
		}
	}
}

// allPolicies returns every policy, with the locality wrapper around each
// inner policy.
func allPolicies(t *testing.T) []balance.Policy {
	var ps []balance.Policy
	for _, n := range policy.Names() {
		p, err := policy.New(n)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
		if n != "locality" {
			l, err := policy.New("locality:" + n)
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, l)
		}
	}
	return ps
}

// TestNeverReturnsTried checks the Picker contract for every policy: a pick
// is one of the picker's endpoints, never a tried one while an untried one
// exists, and nil exactly when all were tried.
func TestNeverReturnsTried(t *testing.T) {
	r := seeded(1)
	for _, pol := range allPolicies(t) {
		for _, n := range []int{1, 2, 3, 5, 16} {
			ms := urls(n)
			for i := range ms {
				ms[i].Zone = []string{"a", "b", ""}[i%3]
				ms[i].Weight = float64(i % 4)
			}
			bal, eps := cluster(t, ms...)
			now := int64(100 * time.Second)
			for i, e := range eps {
				setCost(t, bal, e, now, time.Duration(i+1)*time.Millisecond)
				if i%2 == 0 {
					bal.Acquire(e) // some load, left in flight
				}
			}
			for _, zone := range []string{"", "a", "b"} {
				p := pol.Build(eps, balance.Env{Tau: tau, Zone: zone})
				for trial := range 300 {
					// A random subset tried, in random order; sometimes all,
					// sometimes none.
					var tried []*balance.Endpoint
					switch trial % 10 {
					case 0:
					case 1:
						tried = slices.Clone(eps)
					default:
						for _, e := range eps {
							if r.IntN(2) == 0 {
								tried = append(tried, e)
							}
						}
					}
					r.Shuffle(len(tried), func(i, j int) { tried[i], tried[j] = tried[j], tried[i] })
					in := &balance.PickInput{Now: now, Rand: r, Tried: tried, Key: r.Uint64(), HasKey: trial%3 == 0}
					got := p.Pick(in)
					allTried := len(tried) == n
					switch {
					case got == nil && !allTried:
						t.Fatalf("%s n=%d zone=%q: nil with %d of %d tried", pol.Name(), n, zone, len(tried), n)
					case got != nil && allTried:
						t.Fatalf("%s n=%d zone=%q: got %s with every member tried", pol.Name(), n, zone, got.Member.URL)
					case got != nil && index(eps, got) < 0:
						t.Fatalf("%s: got an endpoint the picker was not built with", pol.Name())
					case got != nil && slices.Contains(tried, got):
						t.Fatalf("%s n=%d zone=%q: got tried member %s with %d of %d tried",
							pol.Name(), n, zone, got.Member.URL, len(tried), n)
					}
				}
			}
		}
	}
}

// TestOneUntried: when exactly one member is left untried, every policy
// finds it, however unlikely its random draws are to hit it.
func TestOneUntried(t *testing.T) {
	r := seeded(2)
	for _, pol := range allPolicies(t) {
		_, eps := cluster(t, urls(50)...)
		p := pol.Build(eps, balance.Env{Tau: tau, Zone: "a"})
		for k := range eps {
			tried := slices.Delete(slices.Clone(eps), k, k+1)
			in := &balance.PickInput{Now: 1, Rand: r, Tried: tried, Key: uint64(k), HasKey: k%2 == 0}
			if got := p.Pick(in); got != eps[k] {
				t.Fatalf("%s: only %d untried, got %v", pol.Name(), k, got)
			}
		}
	}
}

func TestRandomUniform(t *testing.T) {
	const n, picks = 7, 70000
	_, eps := cluster(t, urls(n)...)
	for _, name := range []string{"random", "weighted"} { // equal weights: weighted is uniform too
		pol, _ := policy.New(name)
		p := pol.Build(eps, balance.Env{Tau: tau})
		r := seeded(3)
		counts := make([]int, n)
		for range picks {
			counts[index(eps, p.Pick(&balance.PickInput{Rand: r}))]++
		}
		probs := make([]float64, n)
		for i := range probs {
			probs[i] = 1.0 / n
		}
		if x := chiSquare(counts, probs); x > chiCrit999(n-1) {
			t.Errorf("%s: counts %v, chi-square %.1f > %.1f", name, counts, x, chiCrit999(n-1))
		}
	}
}

// TestRandomUniformUntried: with some members tried, the rest are still
// picked uniformly (the fallback scan must not favour the member after a
// tried one).
func TestRandomUniformUntried(t *testing.T) {
	const n, picks = 6, 60000
	_, eps := cluster(t, urls(n)...)
	p := policy.Random{}.Build(eps, balance.Env{})
	r := seeded(4)
	tried := []*balance.Endpoint{eps[0], eps[1], eps[2]}
	counts := make([]int, n)
	for range picks {
		counts[index(eps, p.Pick(&balance.PickInput{Rand: r, Tried: tried}))]++
	}
	if counts[0]+counts[1]+counts[2] != 0 {
		t.Fatalf("tried members picked: %v", counts)
	}
	if x := chiSquare(counts[3:], []float64{1. / 3, 1. / 3, 1. / 3}); x > chiCrit999(2) {
		t.Errorf("counts %v, chi-square %.1f > %.1f", counts, x, chiCrit999(2))
	}
}

func TestWeightedProportional(t *testing.T) {
	for _, weights := range [][]float64{
		{1, 2, 3, 4},
		{0, 1, 5},      // 0 means 1
		{100, 1, 1, 1}, // one heavy member
		{0.5, 0.25, 0.25},
		{7},
	} {
		ms := urls(len(weights))
		var sum float64
		for i, w := range weights {
			ms[i].Weight = w
			sum += max(w, 0)
			if w == 0 {
				sum++
			}
		}
		_, eps := cluster(t, ms...)
		p := policy.Weighted{}.Build(eps, balance.Env{})
		r := seeded(5)
		counts := make([]int, len(ms))
		const picks = 100000
		for range picks {
			counts[index(eps, p.Pick(&balance.PickInput{Rand: r}))]++
		}
		probs := make([]float64, len(ms))
		for i, w := range weights {
			if w == 0 {
				w = 1
			}
			probs[i] = w / sum
		}
		if len(ms) == 1 {
			if counts[0] != picks {
				t.Errorf("weights %v: counts %v", weights, counts)
			}
			continue
		}
		if x := chiSquare(counts, probs); x > chiCrit999(len(ms)-1) {
			t.Errorf("weights %v: counts %v, want probabilities %v (chi-square %.1f)", weights, counts, probs, x)
		}
	}
}

func TestRoundRobinOrder(t *testing.T) {
	_, eps := cluster(t, urls(4)...)
	p := policy.RoundRobin{}.Build(eps, balance.Env{})
	in := &balance.PickInput{Rand: seeded(6)}
	for i := range 12 {
		if got := p.Pick(in); got != eps[i%4] {
			t.Fatalf("pick %d = %s, want %s", i, got.Member.URL, eps[i%4].Member.URL)
		}
	}
	// With eps[1] and eps[2] tried, the turn passes to the next untried.
	in.Tried = []*balance.Endpoint{eps[1], eps[2]}
	want := []int{0, 3, 3, 3, 0, 3, 3, 3}
	for i, w := range want {
		if got := p.Pick(in); got != eps[w] {
			t.Fatalf("tried pick %d = %s, want %s", i, got.Member.URL, eps[w].Member.URL)
		}
	}
}

func TestLeastLoadedPicksMinimum(t *testing.T) {
	bal, eps := cluster(t, urls(5)...)
	now := int64(time.Second)
	// Own in-flight requests: 3 1 2 5 4.
	for i, k := range []int{3, 1, 2, 5, 4} {
		for range k {
			bal.Acquire(eps[i])
		}
	}
	p := policy.LeastLoaded{}.Build(eps, balance.Env{})
	r := seeded(7)
	for range 100 {
		if got := p.Pick(&balance.PickInput{Now: now, Rand: r}); got != eps[1] {
			t.Fatalf("got %s (load %v), want m1", got.Member.URL, policy.Load(got, now))
		}
	}
	if got := p.Pick(&balance.PickInput{Now: now, Rand: r, Tried: eps[1:3]}); got != eps[0] {
		t.Fatalf("with m1, m2 tried got %s, want m0", got.Member.URL)
	}
	// m3 reports spare capacity: 5 in flight (ours) of capacity 100 is 0.05
	// plus utilisation 0.01, less than m1's 1 request.
	bal.Report(eps[3], now, wire.Load{TimeMillis: 1, InFlight: 5, Capacity: 100, Util: 0.01})
	if got := policy.Load(eps[3], now); math.Abs(got-0.06) > 1e-9 {
		t.Fatalf("Load(m3) = %v, want 0.06", got)
	}
	if got := p.Pick(&balance.PickInput{Now: now, Rand: r}); got != eps[3] {
		t.Fatalf("after report got %s, want m3", got.Member.URL)
	}
	// Other clients' requests count: m3 says 200 are in flight, 195 not ours.
	bal.Report(eps[3], now, wire.Load{TimeMillis: 1, InFlight: 200, Capacity: 100})
	if got := policy.Load(eps[3], now); got != 2 {
		t.Fatalf("Load(m3) = %v, want 2", got)
	}
	if got := p.Pick(&balance.PickInput{Now: now, Rand: r}); got != eps[1] {
		t.Fatalf("after busy report got %s, want m1", got.Member.URL)
	}
	// Ties are broken at random, not always towards the same member.
	_, tie := cluster(t, urls(4)...)
	p = policy.LeastLoaded{}.Build(tie, balance.Env{})
	seen := map[*balance.Endpoint]bool{}
	for range 200 {
		seen[p.Pick(&balance.PickInput{Now: now, Rand: r})] = true
	}
	if len(seen) != 4 {
		t.Errorf("ties went to %d of 4 members", len(seen))
	}
}

// TestP2CRanks checks the exact pick distribution of the power of two
// choices: the member ranked k (1 = lowest score) of n wins when it is drawn
// together with a worse member, with probability 2(n-k)/(n(n-1)); the worst
// member is never picked while scores stay as they are.
func TestP2CRanks(t *testing.T) {
	const n, picks = 5, 50000
	bal, eps := cluster(t, urls(n)...)
	now := int64(100 * time.Second)
	for _, e := range eps {
		setCost(t, bal, e, now, time.Millisecond)
	}
	// Scores 1ms × (inflight+1): m2 < m0 < m4 < m1 < m3.
	for i, k := range []int{1, 3, 0, 4, 2} {
		for range k {
			bal.Acquire(eps[i])
		}
	}
	rank := []int{2, 4, 1, 5, 3}
	p := policy.P2C{Choices: 2}.Build(eps, balance.Env{Tau: tau})
	r := seeded(8)
	counts := make([]int, n)
	for range picks {
		counts[index(eps, p.Pick(&balance.PickInput{Now: now, Rand: r}))]++
	}
	if counts[3] != 0 {
		t.Fatalf("the worst member was picked %d times", counts[3])
	}
	var obs []int
	var probs []float64
	for i, k := range rank {
		if k == n {
			continue
		}
		obs = append(obs, counts[i])
		probs = append(probs, 2*float64(n-k)/float64(n*(n-1)))
	}
	if x := chiSquare(obs, probs); x > chiCrit999(len(obs)-1) {
		t.Errorf("counts %v (ranks %v), chi-square %.1f", counts, rank, x)
	}
}

// TestP2CScan: with at most ScanLimit members P2C{} compares them all, so
// it always picks the lowest score, spreads ties evenly, and skips members
// already tried; beyond ScanLimit it draws two, and Choices 3 picks a
// member by rank with the power-of-3-choices odds.
func TestP2CScan(t *testing.T) {
	const n = 5
	bal, eps := cluster(t, urls(n)...)
	now := int64(100 * time.Second)
	for _, e := range eps {
		setCost(t, bal, e, now, time.Millisecond)
	}
	p := policy.P2C{}.Build(eps, balance.Env{Tau: tau})
	r := seeded(21)
	// All equal: every member about equally often.
	counts := make([]int, n)
	for range 10000 {
		counts[index(eps, p.Pick(&balance.PickInput{Now: now, Rand: r}))]++
	}
	probs := []float64{0.2, 0.2, 0.2, 0.2, 0.2}
	if x := chiSquare(counts, probs); x > chiCrit999(n-1) {
		t.Errorf("ties: counts %v, chi-square %.1f", counts, x)
	}
	// Scores 1ms × (inflight+1): m2 < m0 < m4 < m1 < m3.
	for i, k := range []int{1, 3, 0, 4, 2} {
		for range k {
			bal.Acquire(eps[i])
		}
	}
	for range 1000 {
		if got := p.Pick(&balance.PickInput{Now: now, Rand: r}); got != eps[2] {
			t.Fatalf("picked %s, want the lowest score m2", got.Member.URL)
		}
	}
	// With m2 and m0 tried, the best of the rest is m4.
	in := &balance.PickInput{Now: now, Rand: r, Tried: []*balance.Endpoint{eps[2], eps[0]}}
	if got := p.Pick(in); got != eps[4] {
		t.Fatalf("with m2 and m0 tried picked %s, want m4", got.Member.URL)
	}
	in.Tried = eps
	if got := p.Pick(in); got != nil {
		t.Fatalf("all tried: picked %s, want nil", got.Member.URL)
	}
	// Choices 3, with replacement: rank k (1 best) wins when it is drawn and
	// no better rank is: ((n-k+1)³ - (n-k)³)/n³.
	p3 := policy.P2C{Choices: 3}.Build(eps, balance.Env{Tau: tau})
	counts = make([]int, n)
	for range 50000 {
		counts[index(eps, p3.Pick(&balance.PickInput{Now: now, Rand: r}))]++
	}
	rank := []int{2, 4, 1, 5, 3}
	probs = make([]float64, n)
	for i, k := range rank {
		a, b := float64(n-k+1), float64(n-k)
		probs[i] = (a*a*a - b*b*b) / (n * n * n)
	}
	if x := chiSquare(counts, probs); x > chiCrit999(n-1) {
		t.Errorf("choices 3: counts %v (ranks %v), chi-square %.1f", counts, rank, x)
	}
	// Beyond ScanLimit members P2C{} draws two: the worst member is never
	// picked, but the best is not always.
	bal, eps = cluster(t, urls(policy.ScanLimit+1)...)
	for i, e := range eps {
		setCost(t, bal, e, now, time.Duration(i+1)*time.Millisecond)
	}
	p = policy.P2C{}.Build(eps, balance.Env{Tau: tau})
	counts = make([]int, len(eps))
	for range 10000 {
		counts[index(eps, p.Pick(&balance.PickInput{Now: now, Rand: r}))]++
	}
	if counts[len(eps)-1] != 0 || counts[0] == 10000 || counts[1] == 0 {
		t.Errorf("%d members: counts %v, want two choices (never the worst, not only the best)", len(eps), counts)
	}
}

// TestP2CTwoMembers: with two members p2c always compares both, so the
// lower score always wins, whichever order the draw comes in.
func TestP2CTwoMembers(t *testing.T) {
	bal, eps := cluster(t, urls(2)...)
	now := int64(100 * time.Second)
	setCost(t, bal, eps[0], now, 5*time.Millisecond)
	setCost(t, bal, eps[1], now, 2*time.Millisecond)
	p := policy.P2C{}.Build(eps, balance.Env{Tau: tau})
	r := seeded(9)
	for range 1000 {
		if got := p.Pick(&balance.PickInput{Now: now, Rand: r}); got != eps[1] {
			t.Fatal("picked the slower member")
		}
	}
	// Load changes the answer: 3 in flight at the fast member makes its
	// score 8ms against 5ms.
	for range 3 {
		bal.Acquire(eps[1])
	}
	for range 1000 {
		if got := p.Pick(&balance.PickInput{Now: now, Rand: r}); got != eps[0] {
			t.Fatal("picked the busier member")
		}
	}
	// Weight divides the score: the same load on a member of weight 4 costs
	// a quarter.
	ms := []balance.Member{{URL: "http://a:80"}, {URL: "http://b:80", Weight: 4}}
	bal, eps = cluster(t, ms...)
	setCost(t, bal, eps[0], now, time.Millisecond)
	setCost(t, bal, eps[1], now, 3*time.Millisecond)
	if s0, s1 := policy.Score(eps[0], now, tau), policy.Score(eps[1], now, tau); s1 >= s0 {
		t.Fatalf("weighted score %v not below %v", s1, s0)
	}
}

// TestP2CNoStarvation: a member that looked slow is not shunned forever.
// Its cost decays while nothing is sent to it, so once it has decayed below
// the fast member's measured cost, it is tried again; and never before.
func TestP2CNoStarvation(t *testing.T) {
	bal, eps := cluster(t, urls(2)...)
	now := int64(100 * time.Second)
	setCost(t, bal, eps[0], now, 100*time.Millisecond)
	setCost(t, bal, eps[1], now, time.Millisecond)
	p := policy.P2C{}.Build(eps, balance.Env{Tau: tau})
	r := seeded(10)
	start := now
	var slowAt int64
	for step := int64(10 * time.Millisecond); now < start+int64(2*time.Minute); now += step {
		e := p.Pick(&balance.PickInput{Now: now, Rand: r})
		bal.Acquire(e)
		bal.Done(e, now, time.Millisecond, balance.Success)
		if e == eps[0] {
			slowAt = now
			break
		}
	}
	// 100ms·exp(-t/10s) < 1ms after t = 10s·ln(100) ≈ 46s.
	want := time.Duration(tau * math.Log(100))
	if got := time.Duration(slowAt - start); slowAt == 0 || got < want-time.Second || got > want+time.Second {
		t.Fatalf("slow member picked again after %v, want about %v", got, want)
	}
}

func TestBiasedRandom(t *testing.T) {
	bal, eps := cluster(t, urls(2)...)
	now := int64(100 * time.Second)
	setCost(t, bal, eps[0], now, time.Millisecond)
	setCost(t, bal, eps[1], now, 3*time.Millisecond)
	p := policy.BiasedRandom{}.Build(eps, balance.Env{Tau: tau})
	r := seeded(11)
	counts := make([]int, 2)
	for range 40000 {
		counts[index(eps, p.Pick(&balance.PickInput{Now: now, Rand: r}))]++
	}
	// P(fast) = (1/1) / (1/1 + 1/3) = 3/4: the slow member still gets work.
	if x := chiSquare(counts, []float64{0.75, 0.25}); x > chiCrit999(1) {
		t.Errorf("counts %v, want 3:1 (chi-square %.1f)", counts, x)
	}
}

func TestHashAffinity(t *testing.T) {
	const n, keys = 10, 20000
	_, eps := cluster(t, urls(n)...)
	p := policy.Hash{}.Build(eps, balance.Env{Tau: tau})
	r := seeded(12)
	owner := make([]*balance.Endpoint, keys)
	counts := map[*balance.Endpoint]int{}
	for k := range keys {
		key := policy.KeyOf(fmt.Sprintf("session-%d", k))
		owner[k] = p.Pick(&balance.PickInput{Rand: r, Key: key, HasKey: true})
		counts[owner[k]]++
		if again := p.Pick(&balance.PickInput{Rand: r, Key: key, HasKey: true}); again != owner[k] {
			t.Fatalf("key %d moved from %s to %s", k, owner[k].Member.URL, again.Member.URL)
		}
	}
	// Every member owns a fair share: within 35% of the mean (64 points per
	// member).
	for _, e := range eps {
		if c := counts[e]; math.Abs(float64(c)-keys/n) > 0.35*keys/n {
			t.Errorf("%s owns %d of %d keys", e.Member.URL, c, keys)
		}
	}
	// The ring depends on URLs only: another director, in another process,
	// with the members listed in another order, maps keys identically.
	_, other := cluster(t, urls(n)...)
	rev := slices.Clone(other)
	slices.Reverse(rev)
	q := policy.Hash{}.Build(rev, balance.Env{Tau: tau})
	for k := range keys {
		key := policy.KeyOf(fmt.Sprintf("session-%d", k))
		if got := q.Pick(&balance.PickInput{Rand: r, Key: key, HasKey: true}); got.Member != owner[k].Member {
			t.Fatalf("key %d: %s in one process, %s in another", k, owner[k].Member.URL, got.Member.URL)
		}
	}

	// Removing a member moves only its keys, about 1/n of them.
	gone := eps[3]
	rest := slices.DeleteFunc(slices.Clone(eps), func(e *balance.Endpoint) bool { return e == gone })
	q = policy.Hash{}.Build(rest, balance.Env{Tau: tau})
	moved := 0
	for k := range keys {
		key := policy.KeyOf(fmt.Sprintf("session-%d", k))
		got := q.Pick(&balance.PickInput{Rand: r, Key: key, HasKey: true})
		if owner[k] == gone {
			moved++
			if got == gone {
				t.Fatalf("key %d still on the removed member", k)
			}
		} else if got != owner[k] {
			t.Fatalf("key %d of a surviving member moved from %s to %s", k, owner[k].Member.URL, got.Member.URL)
		}
	}
	if f := float64(moved) / keys; f < 0.5/n || f > 1.5/n {
		t.Errorf("%.3f of keys moved, want about %.3f", f, 1.0/n)
	}

	// A tried owner sends the key to the next member on the ring, the same
	// one every time: where it would go if the owner left.
	for k := range keys {
		if owner[k] != gone {
			continue
		}
		key := policy.KeyOf(fmt.Sprintf("session-%d", k))
		got := p.Pick(&balance.PickInput{Rand: r, Key: key, HasKey: true, Tried: []*balance.Endpoint{gone}})
		want := q.Pick(&balance.PickInput{Rand: r, Key: key, HasKey: true})
		if got != want {
			t.Fatalf("key %d with its owner tried went to %s, want %s", k, got.Member.URL, want.Member.URL)
		}
	}
}

// TestHashNoKey: a request without a key is balanced (by p2c), not sent to
// one fixed member.
func TestHashNoKey(t *testing.T) {
	bal, eps := cluster(t, urls(4)...)
	now := int64(100 * time.Second)
	for _, e := range eps {
		setCost(t, bal, e, now, time.Millisecond)
	}
	for range 5 {
		bal.Acquire(eps[2]) // busiest: p2c never picks it
	}
	p := policy.Hash{}.Build(eps, balance.Env{Tau: tau})
	r := seeded(13)
	counts := make([]int, 4)
	for range 3000 {
		counts[index(eps, p.Pick(&balance.PickInput{Now: now, Rand: r, Key: 7}))]++
	}
	if counts[2] != 0 || counts[0] == 0 || counts[1] == 0 || counts[3] == 0 {
		t.Errorf("no-key picks %v, want spread over all but the busy m2", counts)
	}
}

func TestLocality(t *testing.T) {
	ms := []balance.Member{
		{URL: "http://a1:80", Zone: "a"},
		{URL: "http://a2:80", Zone: "a"},
		{URL: "http://b1:80", Zone: "b"},
		{URL: "http://b2:80", Zone: "b"},
		{URL: "http://x:80"},
	}
	bal, eps := cluster(t, ms...)
	a1, a2, b1 := eps[0], eps[1], eps[2]
	now := int64(time.Second)
	pol := policy.Locality{Inner: policy.Random{}}
	r := seeded(14)
	pick := func(p balance.Picker, tried ...*balance.Endpoint) *balance.Endpoint {
		return p.Pick(&balance.PickInput{Now: now, Rand: r, Tried: tried})
	}
	zoneCounts := func(p balance.Picker, tried ...*balance.Endpoint) map[string]int {
		c := map[string]int{}
		for range 400 {
			c[pick(p, tried...).Member.Zone]++
		}
		return c
	}

	p := pol.Build(eps, balance.Env{Tau: tau, Zone: "a"})
	if c := zoneCounts(p); c["a"] != 400 {
		t.Errorf("zone a director: picks by zone %v, want all in a", c)
	}
	if c := zoneCounts(p, a1); c["a"] != 400 {
		t.Errorf("with a1 tried: %v, want all on a2", c)
	}
	if c := zoneCounts(p, a1, a2); c["a"] != 0 || len(c) < 2 {
		t.Errorf("with zone a tried: %v, want spill-over to other zones", c)
	}
	// Busy but not overloaded: other clients' requests at capacity double
	// the score, which is not above SpillFactor (2) times the remote one.
	bal.Report(a1, now, wire.Load{TimeMillis: 1, InFlight: 4, Capacity: 4})
	bal.Report(a2, now, wire.Load{TimeMillis: 1, InFlight: 4, Capacity: 4})
	if c := zoneCounts(p); c["a"] != 400 {
		t.Errorf("busy zone a: %v, want all still in a", c)
	}
	// Overloaded local members: three times their capacity queued.
	bal.Report(a1, now, wire.Load{TimeMillis: 1, InFlight: 12, Capacity: 4})
	bal.Report(a2, now, wire.Load{TimeMillis: 1, InFlight: 12, Capacity: 4})
	if c := zoneCounts(p); c["a"] != 0 {
		t.Errorf("overloaded zone a: %v, want spill-over", c)
	}
	// Overloaded local members are still better than nothing.
	if got := pick(p, eps[2:]...); got.Member.Zone != "a" {
		t.Errorf("every remote member tried: got %s, want an overloaded local one", got.Member.URL)
	}
	// Load reports expire, and with them the overload.
	if got := p.Pick(&balance.PickInput{Now: now + int64(2*time.Hour), Rand: r}); got.Member.Zone != "a" {
		t.Errorf("after the reports expired got %s, want zone a", got.Member.URL)
	}
	// One local member below capacity is enough to stay local: a1 now has
	// 3 of 4.
	bal.Report(a1, now, wire.Load{TimeMillis: 1, InFlight: 3, Capacity: 4})
	if got := pick(policy.Locality{Inner: policy.LeastLoaded{}}.Build(eps, balance.Env{Zone: "a"})); got != a1 {
		t.Errorf("least-loaded locality got %s, want a1", got.Member.URL)
	}

	// No zone of our own, or a zone no member is in: the inner policy over
	// everything.
	for _, zone := range []string{"", "c"} {
		p = pol.Build(eps, balance.Env{Tau: tau, Zone: zone})
		if c := zoneCounts(p); len(c) != 3 {
			t.Errorf("zone %q: picks by zone %v, want all three", zone, c)
		}
	}
	// Every member local: the inner policy over everything.
	p = pol.Build(eps[:2], balance.Env{Tau: tau, Zone: "a"})
	if got := pick(p, a1); got != a2 {
		t.Errorf("all-local picker with a1 tried got %s", got.Member.URL)
	}
	_ = b1
}

// TestScore checks P2C's documented score:
//
//	cost × (inFlight + 1) × (1 + reportedOthers/capacity) / weight
//
// or cost × (inFlight + reportedOthers + 1) / weight without a capacity.
func TestScore(t *testing.T) {
	now := int64(100 * time.Second)
	for _, tc := range []struct {
		name     string
		weight   float64
		cost     time.Duration // 0: never measured
		inflight int
		load     *wire.Load // reported at now, includes our in-flight
		want     float64    // ns
	}{
		{"idle, measured", 0, 2 * time.Millisecond, 0, nil, 2e6},
		{"own load", 0, 2 * time.Millisecond, 3, nil, 8e6},
		{"weight divides", 4, 2 * time.Millisecond, 3, nil, 2e6},
		{"others without capacity", 0, 2 * time.Millisecond, 1, &wire.Load{TimeMillis: 1, InFlight: 5}, 2e6 * 6},
		{"others with capacity", 0, 2 * time.Millisecond, 1, &wire.Load{TimeMillis: 1, InFlight: 5, Capacity: 8}, 2e6 * 2 * 1.5},
		{"floor of 1µs", 0, 0, 0, nil, 1000},
	} {
		bal, eps := cluster(t, balance.Member{URL: "http://a:80", Weight: tc.weight})
		e := eps[0]
		if tc.cost > 0 {
			setCost(t, bal, e, now, tc.cost)
		}
		for range tc.inflight {
			bal.Acquire(e)
		}
		if tc.load != nil {
			bal.Report(e, now, *tc.load)
		}
		if got := policy.Score(e, now, tau); math.Abs(got-tc.want) > 1e-6*tc.want {
			t.Errorf("%s: Score = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestP2CAvoidsSilentMember: of two members with the same cost, one that has
// had a request out for longer than that cost without a reply scores worse,
// before any slow reply could raise its cost.
func TestP2CAvoidsSilentMember(t *testing.T) {
	bal, eps := cluster(t, urls(2)...)
	start := int64(time.Second)
	pick := func(now int64, e *balance.Endpoint) {
		t.Helper()
		if got := bal.Pick(&balance.PickInput{Now: now, Rand: seeded(1), Tried: triedExcept(eps, e)}); got != e {
			t.Fatalf("pinned pick got %v", got)
		}
	}
	// Both get a request at start; b answers in 2ms and gets another.
	pick(start, eps[0])
	pick(start, eps[1])
	bal.Done(eps[1], start+int64(2*time.Millisecond), 2*time.Millisecond, balance.Success)
	pick(start+int64(2*time.Millisecond), eps[1])
	now := start + int64(50*time.Millisecond)
	if sa, sb := policy.Score(eps[0], now, tau), policy.Score(eps[1], now, tau); sa <= sb {
		t.Fatalf("member silent for 50ms scores %v, one that answered in 2ms %v; want the silent one worse", sa, sb)
	}
	// Once a answers, its silence is over and its cost is what it measured.
	bal.Done(eps[0], now, 3*time.Millisecond, balance.Success)
	if sa, sb := policy.Score(eps[0], now, tau), policy.Score(eps[1], now, tau); sa >= sb {
		t.Fatalf("after a's 3ms reply: a scores %v, b (48ms silent) %v; want a better", sa, sb)
	}
}

func triedExcept(eps []*balance.Endpoint, keep *balance.Endpoint) []*balance.Endpoint {
	var out []*balance.Endpoint
	for _, e := range eps {
		if e != keep {
			out = append(out, e)
		}
	}
	return out
}
