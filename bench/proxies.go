package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/smartclient/smartclient/internal/nginxproc"
)

// HAProxy and nginx are configured as an operator would for a stateless
// HTTP service: keep-alive to the members, a connect timeout, and
// re-dispatch of requests whose connection failed (HAProxy: retries with
// redispatch and TCP health checks; nginx: its default proxy_next_upstream
// error timeout and passive max_fails). Nothing is tuned per scenario.

// haproxyConfig is the configuration for balance algo over members,
// listening on 127.0.0.1:port.
func haproxyConfig(algo string, port int, members []string) string {
	var b strings.Builder
	// No global maxconn: HAProxy then sizes it from the file-descriptor
	// limit it finds, which is enough for this load on any machine.
	fmt.Fprintf(&b, `defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout queue 60s
    retries 3
    option redispatch
    http-reuse safe

frontend fe
    bind 127.0.0.1:%d
    default_backend members

backend members
    balance %s
`, port, algo)
	for i, m := range members {
		fmt.Fprintf(&b, "    server m%d %s check inter 500ms fall 2 rise 2\n", i+1, m)
	}
	return b.String()
}

func haproxyStarter(algo string) func(ctx context.Context, e *runEnv, n int) (*target, error) {
	return func(ctx context.Context, e *runEnv, n int) (*target, error) {
		bin, err := lookBinary("haproxy", e.cfg.HAProxy, "haproxy")
		if err != nil {
			return nil, err
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cf := filepath.Join(e.dir, "haproxy.cfg")
		if err := os.WriteFile(cf, []byte(haproxyConfig(algo, port, e.members.hostPorts())), 0o644); err != nil {
			return nil, err
		}
		// -db: stay in the foreground, so the suite owns the process.
		p, err := startProc("haproxy", []string{bin, "-db", "-f", cf}, nil, e.dir)
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitListening(ctx, p, addr, 10*time.Second); err != nil {
			p.stop()
			return nil, err
		}
		return proxyTarget(p, addr, n), nil
	}
}

// nginxConfig is the configuration for an upstream with method ("" for
// round robin, or "least_conn"), under prefix dir.
func nginxConfig(method, dir string, port int, members []string) string {
	return nginxSettings(method, port, members).Text(dir)
}

// nginxSettings is nginxConfig before its prefix directory is known.
func nginxSettings(method string, port int, members []string) nginxproc.Config {
	var b strings.Builder
	b.WriteString("\tupstream members {\n")
	if method != "" {
		fmt.Fprintf(&b, "\t\t%s;\n", method)
	}
	for _, m := range members {
		fmt.Fprintf(&b, "\t\tserver %s;\n", m)
	}
	fmt.Fprintf(&b, `		keepalive 256;
	}
	server {
		listen 127.0.0.1:%d;
		location / {
			proxy_pass http://members;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
`, port)
	return nginxproc.Config{Workers: nginxproc.Auto, Connections: 8192, HTTP: b.String()}
}

func nginxStarter(method string) func(ctx context.Context, e *runEnv, n int) (*target, error) {
	return func(ctx context.Context, e *runEnv, n int) (*target, error) {
		bin, err := lookBinary("nginx", e.cfg.Nginx, "nginx")
		if err != nil {
			return nil, err
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(e.dir, "nginx")
		// Workers run as an unprivileged user when started as root: let
		// them reach their own directory.
		_ = os.Chmod(e.dir, 0o755)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		var p *proc
		_, err = nginxproc.Start(ctx, nginxproc.Options{
			Binary:       bin,
			Dir:          dir,
			Config:       nginxSettings(method, port, e.members.hostPorts()),
			Addr:         addr,
			ReadyTimeout: 10 * time.Second,
			// A suite proc, so that its process group is measured and
			// stopped as the other contenders' are.
			Run: func(argv []string) (nginxproc.Process, error) {
				var err error
				if p, err = startProc("nginx", argv, nil, dir); err != nil {
					return nil, err
				}
				p.term = syscall.SIGTERM // fast shutdown: the master reaps its workers
				return nginxProc{p}, nil
			},
		})
		if err != nil {
			return nil, err
		}
		return proxyTarget(p, addr, n), nil
	}
}

// nginxProc is a suite proc as nginxproc drives it while it starts.
type nginxProc struct{ p *proc }

func (n nginxProc) Exited() <-chan struct{}    { return n.p.done }
func (n nginxProc) Signal(sig os.Signal) error { return n.p.cmd.Process.Signal(sig) }
func (n nginxProc) Kill() error                { n.p.stop(); return nil }
