package download_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/download"
)

// A file from three mirrors, one of them FTP, checked against its digest.
func Example() {
	d, err := director.New(director.Config{Policy: "p2c", AttemptTimeout: 30 * time.Second}, []balance.Member{
		{URL: "http://mirror1.example.org"}, {URL: "https://mirror2.example.org/debian"}, {URL: "ftp://mirror3.example.org/pub"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	res, err := download.Get(context.Background(), d, "/cd/debian.iso", "debian.iso", download.Config{
		SHA256: "…the published digest…",
		Logf:   log.Printf,
	})
	if err != nil {
		log.Fatal(err) // names every failed attempt: mirror, byte range, reason
	}
	fmt.Printf("%d bytes in %v, %d retries\n", res.Size, res.Elapsed, res.Retries)
}
