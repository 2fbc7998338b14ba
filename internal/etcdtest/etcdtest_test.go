package etcdtest

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/version"
)

// TestEtcdServer: a put is read back; it survives Restart (same data) and is
// gone after Replace (an empty cluster); after Stop nothing answers.
func TestEtcdServer(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	get := func() string {
		t.Helper()
		resp, err := c.Get(ctx, "/k")
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return ""
		}
		return string(resp.Kvs[0].Value)
	}
	if v := get(); v != "v" {
		t.Fatalf("get = %q, want v", v)
	}
	st, err := c.Status(ctx, s.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd server %s, client %s", st.Version, version.Version)

	s.Restart()
	if v := get(); v != "v" {
		t.Fatalf("after Restart get = %q, want v", v)
	}
	s.Replace()
	if v := get(); v != "" {
		t.Fatalf("after Replace get = %q, want nothing", v)
	}
	s.Stop()
	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer scancel()
	if _, err := c.Get(sctx, "/k"); err == nil {
		t.Fatal("get succeeded after Stop")
	}
}
