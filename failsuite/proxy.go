package failsuite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proxyProc is a `smartclient proxy` process in the root namespace, the
// client's own machine.
type proxyProc struct {
	cmd    *exec.Cmd
	url    string // http://127.0.0.1:PORT
	client *http.Client
	base   *http.Transport
	logs   *tailBuffer
	exited chan struct{}
}

// startProxy runs `BINARY proxy --listen 127.0.0.1:0 FLAGS --member URL...`
// and waits until it says where it listens.
func startProxy(ctx context.Context, binary string, flags, members []string) (*proxyProc, error) {
	args := append([]string{"proxy", "--listen", "127.0.0.1:0"}, flags...)
	for _, m := range members {
		args = append(args, "--member", m)
	}
	cmd := exec.Command(binary, args...)
	// The proxy must not outlive the suite, even if the suite's process is
	// killed: the kernel sends it SIGKILL when its parent dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logs := &tailBuffer{max: 64 << 10}
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s proxy: %w", binary, err)
	}
	p := &proxyProc{cmd: cmd, logs: logs, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			logs.Write([]byte(line + "\n"))
			if u, ok := parseListening(line); ok {
				select {
				case addr <- u:
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
	}()
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	select {
	case p.url = <-addr:
	case <-p.exited:
		return nil, fmt.Errorf("proxy exited before listening: %s", logs.String())
	case <-time.After(10 * time.Second):
		p.kill()
		return nil, fmt.Errorf("proxy did not say it was listening within 10s: %s", logs.String())
	case <-ctx.Done():
		p.kill()
		return nil, ctx.Err()
	}
	p.base = &http.Transport{MaxIdleConnsPerHost: 512, IdleConnTimeout: 30 * time.Second}
	p.client = &http.Client{Transport: p.base}
	return p, nil
}

// parseListening reads the proxy's "listening: http://HOST:PORT (stats …)"
// line, and refuses anything but an http URL with a host and port.
func parseListening(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "listening: ")
	if !ok {
		return "", false
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return "", false
	}
	u, err := url.Parse(f[0])
	if err != nil || u.Scheme != "http" || u.Port() == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
		return "", false
	}
	return "http://" + u.Host, true
}

// counts reads the proxy director's request and attempt counters.
func (p *proxyProc) counts(ctx context.Context) (Counts, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/_smartclient/stats", nil)
	if err != nil {
		return Counts{}, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return Counts{}, fmt.Errorf("proxy stats: %w", err)
	}
	defer resp.Body.Close()
	var st struct {
		Requests int64 `json:"requests"`
		Retries  int64 `json:"retries"`
		Hedges   int64 `json:"hedges"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return Counts{}, fmt.Errorf("proxy stats: %w", err)
	}
	return Counts{Requests: st.Requests, Attempts: st.Requests + st.Retries + st.Hedges}, nil
}

// stop ends the proxy gracefully, or kills it after 5s.
func (p *proxyProc) stop() error {
	p.base.CloseIdleConnections()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(5 * time.Second):
		p.kill()
		return errors.New("proxy did not stop within 5s of SIGTERM; killed")
	}
}

func (p *proxyProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = t.b[over:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}
