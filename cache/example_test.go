package cache_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/smartclient/smartclient/cache"
)

func Example() {
	dir, _ := os.MkdirTemp("", "cache-example")
	defer os.RemoveAll(dir)
	store := cache.Store{Dir: dir} // normally: cache.Dir(flagValue)

	if _, err := store.Get("chat", cache.KindCert); errors.Is(err, cache.ErrNotFound) {
		fmt.Println("cold start: resolve from the roots")
	}
	if err := store.Put("chat", cache.KindCert, []byte("signed envelope")); err != nil {
		fmt.Println(err)
	}
	cert, err := store.Get("chat", cache.KindCert)
	switch {
	case errors.Is(err, cache.ErrCorrupt):
		fmt.Println("warning:", err) // report, then resolve as on a cold start
	case err == nil:
		fmt.Printf("warm start from %q\n", cert)
	}
	// Output:
	// cold start: resolve from the roots
	// warm start from "signed envelope"
}
