package director

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/smartclient/smartclient/balance"
)

func TestSmokeFailover(t *testing.T) {
	d, err := New(Config{}, []balance.Member{{URL: "a"}, {URL: "b"}, {URL: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var cleaned []string
	var served []string
	call := &Call{
		Do: func(ctx context.Context, a *Attempt) error {
			if a.Member.URL != "c" {
				return syscall.ECONNREFUSED
			}
			served = append(served, a.Member.URL)
			return nil
		},
		OnCleanup: func(a *Attempt, err error) { cleaned = append(cleaned, a.Member.URL) },
	}
	for range 20 {
		cleaned = cleaned[:0]
		if err := d.Do(context.Background(), call); err != nil {
			t.Fatal(err)
		}
	}
	st := d.Stats()
	if st.Requests != 20 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
	bad := &Call{Do: func(ctx context.Context, a *Attempt) error { return errors.New("boom") }}
	err = d.Do(context.Background(), bad)
	var de *Error
	if !errors.As(err, &de) || !errors.Is(err, ErrNotRetryable) || len(de.Attempts) != 1 {
		t.Fatalf("err = %v", err)
	}
	t.Log(err, st.Members)
}
