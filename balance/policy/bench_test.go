package policy_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
)

// globalRand is a Rand that is safe for concurrent use: math/rand/v2's
// top-level generator, which needs no lock.
type globalRand struct{}

func (globalRand) Uint64() uint64 { return rand.Uint64() }

var benchPolicies = []string{
	"random", "random-biased", "round-robin", "weighted", "least-loaded", "p2c", "hash", "locality:p2c",
}

func benchMembers(n int) []balance.Member {
	ms := make([]balance.Member, n)
	for i := range ms {
		ms[i] = balance.Member{
			URL:    fmt.Sprintf("http://10.0.%d.%d:8080", i/250, i%250),
			Weight: float64(1 + i%4),
			Zone:   fmt.Sprintf("z%d", i%3),
		}
	}
	return ms
}

// benchBalancer returns a balancer over n members, each with a latency
// estimate and a fresh load report so that every score path does its full
// work, and the time at which to pick.
func benchBalancer(b *testing.B, name string, n int) (*balance.Balancer, int64) {
	pol, err := policy.New(name)
	if err != nil {
		b.Fatal(err)
	}
	bal, err := balance.New(balance.Config{Policy: pol, Zone: "z0", LoadTTL: time.Hour}, benchMembers(n), globalRand{})
	if err != nil {
		b.Fatal(err)
	}
	now := int64(time.Second)
	for i, e := range bal.Endpoints() {
		bal.Acquire(e)
		bal.Report(e, now, wireLoad(i%5, 100, 0.1))
		bal.Done(e, now, time.Duration(1+i%7)*time.Millisecond, balance.Success)
	}
	return bal, now + int64(time.Millisecond)
}

// BenchmarkPick measures one pick per op for every policy and member count:
// "balancer" is Balancer.Pick followed by Done, the path a director takes per
// attempt; "picker" is the policy's Picker alone. Parallel variants use a
// concurrency-safe Rand and show whether picks scale across cores.
func BenchmarkPick(b *testing.B) {
	for _, name := range benchPolicies {
		for _, n := range []int{3, 16, 1000} {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				bal, now := benchBalancer(b, name, n)
				hasKey := name == "hash"
				b.Run("balancer", func(b *testing.B) {
					b.ReportAllocs()
					in := balance.PickInput{Now: now, Rand: rand.New(rand.NewPCG(1, 2)), HasKey: hasKey}
					for b.Loop() {
						in.Key++
						e := bal.Pick(&in)
						bal.Done(e, now, time.Millisecond, balance.Success)
					}
				})
				b.Run("balancer-parallel", func(b *testing.B) {
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						in := balance.PickInput{Now: now, Rand: globalRand{}, HasKey: hasKey}
						for pb.Next() {
							in.Key++
							e := bal.Pick(&in)
							bal.Done(e, now, time.Millisecond, balance.Success)
						}
					})
				})
				pol := bal.Config().Policy
				p := pol.Build(bal.Snapshot().Endpoints, balance.Env{Tau: float64(10 * time.Second), Zone: "z0"})
				b.Run("picker", func(b *testing.B) {
					b.ReportAllocs()
					in := balance.PickInput{Now: now, Rand: rand.New(rand.NewPCG(1, 2)), HasKey: hasKey}
					var sink *balance.Endpoint
					for b.Loop() {
						in.Key++
						sink = p.Pick(&in)
					}
					_ = sink
				})
				b.Run("picker-parallel", func(b *testing.B) {
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						in := balance.PickInput{Now: now, Rand: globalRand{}, HasKey: hasKey}
						var sink *balance.Endpoint
						for pb.Next() {
							in.Key++
							sink = p.Pick(&in)
						}
						_ = sink
					})
				})
			})
		}
	}
}
