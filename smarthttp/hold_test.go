package smarthttp

import (
	"io"
	"net/http"
	"testing"

	"github.com/smartclient/smartclient/director"
)

// TestBodyHeldInFlight: a reply whose body is still streaming keeps its
// member counted in flight, so a long download loads the member in the
// director's eyes until the body is read to its end or closed.
func TestBodyHeldInFlight(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first part;")
		w.(http.Flusher).Flush()
		if r.URL.Path == "/stream" {
			<-release
		}
		io.WriteString(w, "second part")
	}))
	client, d := orderedClient(t, director.Config{}, srv.URL)
	e := d.Balancer().Endpoints()[0]

	resp, err := client.Get("http://svc/stream")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.InFlight(); got != 1 {
		t.Fatalf("in flight %d while the body streams, want 1", got)
	}
	close(release)
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "first part;second part" {
		t.Fatalf("body %q, %v", body, err)
	}
	if got := e.InFlight(); got != 0 {
		t.Fatalf("in flight %d after the body was read, want 0", got)
	}
	resp.Body.Close()

	// Closed without reading: released too.
	resp, err = client.Get("http://svc/short")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.InFlight(); got != 1 {
		t.Fatalf("in flight %d before Close, want 1", got)
	}
	resp.Body.Close()
	if got := e.InFlight(); got != 0 {
		t.Fatalf("in flight %d after Close, want 0", got)
	}
}
