package cli

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/smartclient/smartclient/balance"
)

// BenchmarkProxyHop measures one GET through the proxy's handler to an
// in-process member that replies at once, against the same GET sent to the
// member directly: the hop's cost per request (client, proxy and member
// share the process, so absolute figures are a lower bound on each).
//
//	go test -run '^$' -bench BenchmarkProxyHop -benchtime 3s ./internal/cli
func BenchmarkProxyHop(b *testing.B) {
	member := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "19")
		io.WriteString(w, "hello, smart client")
	}))
	defer member.Close()
	p, err := NewProxy(context.Background(), ProxyConfig{Members: []balance.Member{{URL: member.URL}}}, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	front := httptest.NewServer(p.Handler())
	defer front.Close()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	for _, c := range []struct{ name, url string }{{"direct", member.URL}, {"proxy", front.URL}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(c.url + "/x")
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
