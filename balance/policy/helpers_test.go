package policy_test

import "github.com/smartclient/smartclient/wire"

func wireLoad(inflight, capacity int, util float64) wire.Load {
	return wire.Load{TimeMillis: 1, InFlight: inflight, Capacity: capacity, Util: util}
}
