package director_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
)

// The paper's IDirector.apply(IRequest): the action fails on a member that
// refuses connections, the request's cleanup runs, and the director
// re-applies it on another member.
func ExampleDirector_Do() {
	// A seeded source makes the example's output exact; production code
	// leaves Rand unset.
	d, err := director.New(director.Config{Policy: "round-robin", Rand: rand.New(rand.NewPCG(1, 1))},
		[]balance.Member{{URL: "http://down:80"}, {URL: "http://up:80"}})
	if err != nil {
		panic(err)
	}
	defer d.Close()
	for range 2 {
		err = d.Do(context.Background(), &director.Call{
			Idem: true,
			Do: func(ctx context.Context, a *director.Attempt) error {
				if a.Member.URL == "http://down:80" {
					return syscall.ECONNREFUSED // never reached: always safe to retry
				}
				return nil
			},
			OnCleanup: func(a *director.Attempt, err error) {
				fmt.Println("cleanup after", a.Member.URL, "failed:", err)
			},
		})
		fmt.Println("error:", err)
	}
	// Output:
	// error: <nil>
	// cleanup after http://down:80 failed: connection refused
	// error: <nil>
}
