package smarthttp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/director"
)

// The benchmarks compare a plain http.Client against the same client going
// through Transport, on loopback servers answering a small body, to measure
// what the director costs per request. Compare BenchmarkDirect with
// BenchmarkTransport/members=1 (same server, same base transport settings).

func benchServers(b *testing.B, n int) []string {
	var urls []string
	for range n {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("hello, smart client"))
		}))
		b.Cleanup(s.Close)
		urls = append(urls, s.URL)
	}
	return urls
}

func benchGet(b *testing.B, c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatal(resp.Status)
	}
}

func directClient(b *testing.B) (*http.Client, string) {
	url := benchServers(b, 1)[0]
	tr := NewBaseTransport()
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, url + "/x"
}

func smartClient(b *testing.B, members int) *http.Client {
	d := newDirector(b, director.Config{}, benchServers(b, members)...)
	return &http.Client{Transport: newTransport(b, d)}
}

func BenchmarkDirect(b *testing.B) {
	c, url := directClient(b)
	b.ReportAllocs()
	for b.Loop() {
		benchGet(b, c, url)
	}
}

func BenchmarkTransport(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(membersName(n), func(b *testing.B) {
			c := smartClient(b, n)
			b.ReportAllocs()
			for b.Loop() {
				benchGet(b, c, "http://svc/x")
			}
		})
	}
}

func BenchmarkDirectParallel(b *testing.B) {
	c, url := directClient(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchGet(b, c, url)
		}
	})
}

func BenchmarkTransportParallel(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(membersName(n), func(b *testing.B) {
			c := smartClient(b, n)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchGet(b, c, "http://svc/x")
				}
			})
		})
	}
}

func membersName(n int) string { return "members=" + string(rune('0'+n)) }

// nopRT answers every request at once from memory, so the Overhead
// benchmarks measure Transport and the director without the network.
type nopRT struct{}

func (nopRT) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{}, Request: r,
		Body: io.NopCloser(strings.NewReader("hello, smart client"))}, nil
}

func benchRoundTrip(b *testing.B, rt http.RoundTripper) {
	req, _ := http.NewRequest("GET", "http://svc/x", nil)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkOverhead is the cost Transport adds to one request, network
// excluded: compare base with transport.
func BenchmarkOverhead(b *testing.B) {
	b.Run("base", func(b *testing.B) { benchRoundTrip(b, nopRT{}) })
	members := []string{"http://10.0.0.1:1", "http://10.0.0.2:1", "http://10.0.0.3:1"}
	b.Run("transport", func(b *testing.B) {
		d := newDirector(b, director.Config{}, members...)
		benchRoundTrip(b, NewTransport(d, nopRT{}))
	})
	// With hedging on, a GET's request context follows the attempt's.
	b.Run("transport-hedging", func(b *testing.B) {
		d := newDirector(b, director.Config{Hedge: director.HedgeConfig{Enabled: true}}, members...)
		benchRoundTrip(b, NewTransport(d, nopRT{}))
	})
}

// BenchmarkCompare alternates a direct request and one through Transport to
// the same loopback server, so both see the same machine noise, and reports
// each one's median and mean latency and the overhead of the medians. On a
// busy machine its ratio is steadier than comparing separate benchmarks.
func BenchmarkCompare(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(membersName(n), func(b *testing.B) {
			urls := benchServers(b, n)
			base := NewBaseTransport()
			b.Cleanup(base.CloseIdleConnections)
			direct := &http.Client{Transport: base}
			d := newDirector(b, director.Config{}, urls...)
			smart := &http.Client{Transport: newTransport(b, d)}
			var dt, st []time.Duration
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				// Alternate which goes first, so neither always meets a
				// connection the other just warmed.
				t0 := time.Now()
				if i%2 == 0 {
					benchGet(b, direct, urls[0]+"/x")
					t1 := time.Now()
					benchGet(b, smart, "http://svc/x")
					dt, st = append(dt, t1.Sub(t0)), append(st, time.Since(t1))
				} else {
					benchGet(b, smart, "http://svc/x")
					t1 := time.Now()
					benchGet(b, direct, urls[0]+"/x")
					st, dt = append(st, t1.Sub(t0)), append(dt, time.Since(t1))
				}
			}
			dm, sm := median(dt), median(st)
			b.ReportMetric(float64(dm.Nanoseconds()), "direct-median-ns")
			b.ReportMetric(float64(sm.Nanoseconds()), "smart-median-ns")
			b.ReportMetric(float64(mean(dt).Nanoseconds()), "direct-mean-ns")
			b.ReportMetric(float64(mean(st).Nanoseconds()), "smart-mean-ns")
			b.ReportMetric(100*(float64(sm)/float64(dm)-1), "overhead-%")
		})
	}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}
