package director_test

import (
	"context"
	"testing"

	"github.com/smartclient/smartclient/director"
)

// BenchmarkApply measures the director's own overhead per request: Apply
// and Release around an action that does nothing, on the real clock and the
// default (concurrency-safe) randomness, with p2c over 16 members.
func BenchmarkApply(b *testing.B) {
	d, err := director.New(director.Config{}, members(16))
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	c := &director.Call{Do: func(context.Context, *director.Attempt) error { return nil }}
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a, err := d.Apply(ctx, c)
			if err != nil {
				b.Fatal(err)
			}
			a.Release()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				a, err := d.Apply(ctx, c)
				if err != nil {
					b.Error(err)
					return
				}
				a.Release()
			}
		})
	})
	// An idempotent request with hedging on: the race machinery's cost.
	h, err := director.New(director.Config{Hedge: director.HedgeConfig{Enabled: true}}, members(16))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	hc := &director.Call{Idem: true, Do: func(context.Context, *director.Attempt) error { return nil }}
	b.Run("hedged", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a, err := h.Apply(ctx, hc)
			if err != nil {
				b.Fatal(err)
			}
			a.Release()
		}
	})
}
