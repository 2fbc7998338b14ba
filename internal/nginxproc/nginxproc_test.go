package nginxproc

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freeAddr returns a loopback address nothing listens on just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestNginxServesAndStops: Debian's nginx serves a static reply on a
// loopback port, and after Stop nothing listens there any more.
func TestNginxServesAndStops(t *testing.T) {
	addr := freeAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Options{Dir: t.TempDir(), Addr: addr, Config: Config{
		Connections: 64,
		HTTP:        "server {\n\tlisten " + addr + ";\n\tlocation / { return 200 \"hello from nginx\\n\"; }\n}\n",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from nginx\n" || !strings.HasPrefix(resp.Header.Get("Server"), "nginx") {
		t.Fatalf("nginx answered %d %q, Server %q", resp.StatusCode, body, resp.Header.Get("Server"))
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Exited():
	default:
		t.Fatal("Stop returned before nginx exited")
	}
	// The master waits for its workers on SIGQUIT, and Exec kills what is
	// left of the group: nobody holds the port.
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after Stop: %v, want connection refused", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestNginxBadConfig: nginx refuses the configuration and exits; the error
// names the binary and carries nginx's own reason from its error log.
func TestNginxBadConfig(t *testing.T) {
	bin, err := LookPath()
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	_, err = Start(t.Context(), Options{Binary: bin, Dir: t.TempDir(), Addr: addr, Config: Config{
		HTTP: "server { listen " + addr + "; no_such_directive on; }",
	}})
	if err == nil {
		t.Fatal("Start accepted a configuration with an unknown directive")
	}
	t.Log(err)
	for _, want := range []string{bin, `unknown directive "no_such_directive"`, "exited before"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

// TestNginxRunnerHook: Start runs the command line through Options.Run, and a
// process that exits at once is reported, not waited for until the timeout.
func TestNginxRunnerHook(t *testing.T) {
	var got []string
	_, err := Start(t.Context(), Options{Binary: "/bin/false", Dir: t.TempDir(), Addr: freeAddr(t),
		ReadyTimeout: time.Minute,
		Run: func(argv []string) (Process, error) {
			got = argv
			return Exec(argv)
		}})
	if err == nil || !strings.Contains(err.Error(), "/bin/false") || !strings.Contains(err.Error(), "exited before") {
		t.Fatalf("error %v, want one naming /bin/false that exited", err)
	}
	if len(got) != 7 || got[0] != "/bin/false" || got[1] != "-p" || got[5] != "-e" {
		t.Errorf("argv %q", got)
	}
	if _, err := os.Stat(got[4]); err != nil {
		t.Errorf("configuration not written: %v", err)
	}
}
