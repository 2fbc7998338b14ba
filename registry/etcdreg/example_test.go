package etcdreg_test

import (
	"context"
	"log"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/registry"
	"github.com/smartclient/smartclient/registry/etcdreg"
)

// A server registers itself; a client builds a director from the registry
// and keeps it in step.
func Example() {
	ctx := context.Background()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	// Server side: the key lives as long as the process keeps its lease.
	reg, err := etcdreg.Register(ctx, cli, "web", etcdreg.Member{URL: "http://10.0.0.1:8080", Zone: "eu-1"}, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close(ctx)

	// Client side.
	src, err := etcdreg.New(etcdreg.Config{Client: cli, Service: "web"})
	if err != nil {
		log.Fatal(err)
	}
	first, err := registry.First(ctx, src)
	if err != nil {
		log.Fatal(err)
	}
	d, err := director.New(director.Config{Epoch: first.Epoch}, registry.BalanceMembers(first))
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	go registry.Attach(d, src).Run(ctx)
}
