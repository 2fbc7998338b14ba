package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"github.com/smartclient/smartclient/internal/nginxproc"
)

var nginxSeq atomic.Int64

// StartNginx runs Debian's unmodified nginx on h, serving the files under
// root on port (every address of the host), and returns once it accepts
// connections. Its configuration, pid file, temp directories and error
// log live in the bed's scratch directory under RunDir, removed by Close.
// It runs in the foreground with a master and one worker (daemon off;
// master_process on), as root so that it can read a test's temp
// directory; Proc.Kill kills both, Proc.Signal(syscall.SIGQUIT) stops it
// gracefully. As with Start, ctx ending kills it. If nginx is not
// installed the error says how to install it.
func (h *Host) StartNginx(ctx context.Context, port int, root string) (*Proc, error) {
	nginx, err := tool("nginx")
	if err != nil {
		return nil, err
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("testbed: StartNginx: port %d out of 1..65535", port)
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("testbed: StartNginx: root %q is not a directory", root)
	}
	dir := filepath.Join(RunDir, h.bed.name, "nginx-"+h.Name+"-"+strconv.Itoa(port)+"-"+strconv.FormatInt(nginxSeq.Add(1), 10))
	var p *Proc
	_, err = nginxproc.Start(ctx, nginxproc.Options{
		Binary: nginx,
		Dir:    dir,
		Config: nginxproc.Config{User: "root", HTTP: nginxHTTP(port, root)},
		// Dialled from the root namespace, as WaitTCP does.
		Addr: netip.AddrPortFrom(h.Addr, uint16(port)).String(),
		Run: func(argv []string) (nginxproc.Process, error) {
			var err error
			p, err = h.Start(ctx, Cmd{Path: argv[0], Args: argv[1:]})
			if err != nil {
				return nil, err
			}
			return p, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("testbed: nginx on %s: %w", h.Name, err)
	}
	return p, nil
}

// nginxHTTP is the http{} body of StartNginx's configuration: static files
// under root on port.
func nginxHTTP(port int, root string) string {
	return fmt.Sprintf(`	types {
		text/html html htm;
		text/plain txt;
		application/json json;
	}
	default_type application/octet-stream;
	keepalive_requests 100000;
	server {
		listen %d;
		root %s;
	}
`, port, nginxproc.Quote(root))
}
