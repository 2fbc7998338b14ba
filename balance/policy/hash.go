package policy

import (
	"encoding/binary"
	"hash/fnv"
	"slices"

	"github.com/smartclient/smartclient/balance"
)

// Hash is consistent-hash affinity for sessions: requests with the same
// affinity key go to the same member while it is eligible, and when a member
// leaves only its own keys move (to the next member on the ring). A request
// without a key is balanced by P2C. The ring hashes member URLs with FNV-1a,
// so every director, in any process, maps a key to the same member.
type Hash struct{}

func (Hash) Name() string { return "hash" }

// hashReplicas is the number of ring points per member; 64 keeps the
// heaviest member within about 20% of the mean.
const hashReplicas = 64

func (Hash) Build(eps []*balance.Endpoint, env balance.Env) balance.Picker {
	p := &hashPicker{fallback: P2C{}.Build(eps, env)}
	p.points = make([]hashPoint, 0, len(eps)*hashReplicas)
	var buf [8]byte
	for _, e := range eps {
		for r := range hashReplicas {
			h := fnv.New64a()
			h.Write([]byte(e.Member.URL))
			binary.LittleEndian.PutUint64(buf[:], uint64(r))
			h.Write(buf[:])
			p.points = append(p.points, hashPoint{mix(h.Sum64()), e})
		}
	}
	slices.SortFunc(p.points, func(a, b hashPoint) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return 0
	})
	return p
}

type hashPoint struct {
	h uint64
	e *balance.Endpoint
}

type hashPicker struct {
	points   []hashPoint
	fallback balance.Picker
}

// KeyOf hashes a session identifier to an affinity key.
func KeyOf(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return mix(h.Sum64())
}

// mix is a 64-bit finaliser (from SplitMix64) that spreads FNV's weak low bits.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (p *hashPicker) Pick(in *balance.PickInput) *balance.Endpoint {
	if !in.HasKey {
		return p.fallback.Pick(in)
	}
	k := mix(in.Key)
	n := len(p.points)
	i, _ := slices.BinarySearchFunc(p.points, k, func(pt hashPoint, k uint64) int {
		switch {
		case pt.h < k:
			return -1
		case pt.h > k:
			return 1
		}
		return 0
	})
	for j := range n {
		if e := p.points[(i+j)%n].e; !in.IsTried(e) {
			return e
		}
	}
	return nil
}
