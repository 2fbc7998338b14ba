// Package nginxproc runs Debian's unmodified nginx outside /etc/nginx, for
// tests, the testbed and the benchmark: it writes a whole nginx.conf into a
// private prefix directory (pid file, error log and temp directories all
// inside it, so that nginx runs as root or unprivileged without touching
// /var), starts nginx in the foreground on that prefix, waits until it
// accepts connections and stops it again.
//
// How the process is started is the caller's choice (a Runner): by default
// a child of this process in its own process group (Exec); the testbed
// starts it inside a network namespace, the benchmark as one of its
// measured processes.
package nginxproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smartclient/smartclient/internal/procwait"
)

// Auto as Config.Workers is nginx's "worker_processes auto": one worker a
// CPU.
const Auto = -1

// Config is one nginx instance's configuration, apart from its prefix
// directory.
type Config struct {
	// HTTP is the body of the http{} block: server, upstream, types and
	// any other http-level directives. Config adds "access_log off" and
	// the temp paths.
	HTTP string
	// Workers is worker_processes: 0 means 1, Auto means one a CPU.
	Workers int
	// Connections is worker_connections: 0 means 1024.
	Connections int
	// User is the user directive, e.g. "root"; "" leaves nginx's default
	// (workers run as nobody when nginx is started as root, so the prefix
	// and anything they serve must be readable by nobody).
	User string
}

// Text returns the whole nginx.conf for prefix directory dir: in the
// foreground (daemon off) with a master, pid file, error log (level warn)
// and temp directories under dir.
func (c Config) Text(dir string) string {
	workers := "1"
	switch {
	case c.Workers == Auto:
		workers = "auto"
	case c.Workers > 0:
		workers = fmt.Sprint(c.Workers)
	}
	conns := c.Connections
	if conns <= 0 {
		conns = 1024
	}
	in := func(name string) string { return Quote(filepath.Join(dir, name)) }
	var b strings.Builder
	b.WriteString("daemon off;\nmaster_process on;\n")
	fmt.Fprintf(&b, "worker_processes %s;\n", workers)
	if c.User != "" {
		fmt.Fprintf(&b, "user %s;\n", c.User)
	}
	fmt.Fprintf(&b, "pid %s;\nerror_log %s warn;\n", in(pidFile), in(errorLog))
	fmt.Fprintf(&b, "events { worker_connections %d; }\n", conns)
	fmt.Fprintf(&b, `http {
	access_log off;
	client_body_temp_path %s;
	proxy_temp_path %s;
	fastcgi_temp_path %s;
	uwsgi_temp_path %s;
	scgi_temp_path %s;
`, in("client_body"), in("proxy"), in("fastcgi"), in("uwsgi"), in("scgi"))
	b.WriteString(c.HTTP)
	if !strings.HasSuffix(c.HTTP, "\n") {
		b.WriteByte('\n')
	}
	b.WriteString("}\n")
	return b.String()
}

// Quote returns s as a double-quoted nginx string, for paths in a
// configuration.
func Quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// The files nginx keeps in its prefix directory.
const (
	confFile = "nginx.conf"
	errorLog = "error.log"
	pidFile  = "nginx.pid"
)

// Args returns nginx's arguments, without the program name, to run the
// configuration Start writes into dir. -e names the error log before the
// configuration is read (nginx would otherwise try
// /var/log/nginx/error.log first).
func Args(dir string) []string {
	return []string{"-p", dir, "-c", filepath.Join(dir, confFile), "-e", filepath.Join(dir, errorLog)}
}

// LookPath finds nginx in PATH or, where a non-root PATH lacks it, in
// /usr/sbin. The error says how to install it.
func LookPath() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	const sbin = "/usr/sbin/nginx"
	if fi, err := os.Stat(sbin); err == nil && !fi.IsDir() {
		return sbin, nil
	}
	return "", errors.New("nginxproc: nginx not found in PATH or /usr/sbin: run scripts/install-deps.sh (Debian's nginx package)")
}

// Process is a started nginx master, as a Runner returns it. *testbed.Proc
// is one.
type Process interface {
	// Exited is closed once the process has exited and been reaped.
	Exited() <-chan struct{}
	// Signal sends sig to the master alone (SIGQUIT: graceful shutdown).
	// After the process has exited it returns an error and does nothing.
	Signal(sig os.Signal) error
	// Kill kills the master and its workers at once. It need not wait
	// for them; after the process has exited it does nothing.
	Kill() error
}

// Runner starts argv (argv[0] is the nginx program) and returns once it has
// started, not once it serves.
type Runner func(argv []string) (Process, error)

// Options says what Start runs and how.
type Options struct {
	// Binary is the nginx program; "" means the one LookPath finds.
	Binary string
	// Dir is the prefix directory, created if missing. Required. The
	// configuration, pid file, error log and temp directories go in it;
	// removing it is the caller's job.
	Dir string
	// Config is written to Dir/nginx.conf.
	Config Config
	// Addr is a host:port nginx listens on, dialled until it accepts to
	// know that nginx is ready. Required.
	Addr string
	// ReadyTimeout bounds the wait for Addr: 0 means 15 s.
	ReadyTimeout time.Duration
	// StopTimeout bounds Server.Stop's graceful phase: 0 means 5 s.
	StopTimeout time.Duration
	// Run starts nginx: nil means Exec.
	Run Runner
}

// Server is an nginx that Start started and found ready.
type Server struct {
	// Binary is the nginx program that runs.
	Binary string
	// Dir is its prefix directory.
	Dir string
	// Addr is the address it was found listening on.
	Addr string

	proc        Process
	stopTimeout time.Duration
	stopOnce    sync.Once
	stopErr     error
}

// Start writes o.Config into o.Dir, starts nginx on it through o.Run, and
// returns once it accepts connections on o.Addr. If nginx exits first, or
// o.ReadyTimeout passes or ctx ends, Start kills it, waits for it to exit
// and returns an error naming the nginx binary and the first lines of its
// error log.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Dir == "" || o.Addr == "" {
		return nil, errors.New("nginxproc: Start: Options.Dir and Options.Addr are required")
	}
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = LookPath(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("nginxproc: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.Dir, confFile), []byte(o.Config.Text(o.Dir)), 0o644); err != nil {
		return nil, fmt.Errorf("nginxproc: %w", err)
	}
	run := o.Run
	if run == nil {
		run = Exec
	}
	p, err := run(append([]string{bin}, Args(o.Dir)...))
	if err != nil {
		return nil, fmt.Errorf("nginxproc: starting %s: %w", bin, err)
	}
	s := &Server{Binary: bin, Dir: o.Dir, Addr: o.Addr, proc: p, stopTimeout: o.StopTimeout}
	if s.stopTimeout <= 0 {
		s.stopTimeout = 5 * time.Second
	}
	ready := o.ReadyTimeout
	if ready <= 0 {
		ready = 15 * time.Second
	}
	if err := waitReady(ctx, o.Addr, p.Exited(), ready); err != nil {
		p.Kill()
		<-p.Exited()
		return nil, fmt.Errorf("nginxproc: %s -p %s: %w; %s", bin, o.Dir, err, logHead(filepath.Join(o.Dir, errorLog)))
	}
	return s, nil
}

// waitReady dials addr until it accepts, exited is closed, timeout passes
// or ctx ends.
func waitReady(ctx context.Context, addr string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{Timeout: 250 * time.Millisecond}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before it accepted connections on %s", addr)
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections on %s within %v: %w (last: %v)", addr, timeout, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// logHead returns the first lines of the error log at path, for an error
// message: nginx's reason for not starting comes first.
func logHead(path string) string {
	const maxLines, maxBytes = 5, 1000
	f, err := os.Open(path)
	if err != nil {
		return "no error log: " + err.Error()
	}
	defer f.Close()
	var lines []string
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() && len(lines) < maxLines && n < maxBytes {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
			n += len(l)
		}
	}
	if len(lines) == 0 {
		return "error log " + path + " is empty"
	}
	s := strings.Join(lines, " | ")
	if len(s) > maxBytes {
		s = s[:maxBytes] + "…"
	}
	return "error log " + path + ": " + s
}

// Process is the running nginx master, as the Runner returned it.
func (s *Server) Process() Process { return s.proc }

// Exited is closed once nginx has exited, whatever ended it.
func (s *Server) Exited() <-chan struct{} { return s.proc.Exited() }

// Stop shuts nginx down gracefully (SIGQUIT to the master, which lets its
// workers finish their requests), kills it if it has not exited within
// Options.StopTimeout, and waits for it to exit. The error says it had to
// be killed. Safe to call more than once and after nginx has exited.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.proc.Signal(syscall.SIGQUIT)
		t := time.NewTimer(s.stopTimeout)
		defer t.Stop()
		select {
		case <-s.proc.Exited():
			return
		case <-t.C:
		}
		s.proc.Kill()
		<-s.proc.Exited()
		s.stopErr = fmt.Errorf("nginxproc: %s did not stop within %v of SIGQUIT; killed", s.Binary, s.stopTimeout)
	})
	return s.stopErr
}

// Exec is the default Runner: argv as a child of this process in its own
// process group, with standard output and error discarded (nginx writes to
// its error log). The child gets SIGKILL if the thread that started it
// ends. Once the master exits, whatever is left of its group (workers of
// a master that died hard) is killed before the master is reaped.
func Exec(argv []string) (Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("nginxproc: Exec: empty argv")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &execProcess{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	go p.wait()
	return p, nil
}

// execProcess is a Process that Exec started.
type execProcess struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{}

	mu   sync.Mutex
	gone bool // exited (maybe not yet reaped): its group may not be signalled
}

// wait waits for the master to exit, kills the rest of its group while the
// unreaped master still holds the group id (so the id cannot have been
// reused), then reaps it.
func (p *execProcess) wait() {
	procwait.Peek(p.pid, unix.WEXITED)
	p.mu.Lock()
	syscall.Kill(-p.pid, syscall.SIGKILL)
	p.gone = true
	p.mu.Unlock()
	p.cmd.Wait()
	close(p.exited)
}

func (p *execProcess) Exited() <-chan struct{} { return p.exited }

func (p *execProcess) Signal(sig os.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return os.ErrProcessDone
	}
	return p.cmd.Process.Signal(sig)
}

func (p *execProcess) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return os.ErrProcessDone
	}
	return syscall.Kill(-p.pid, syscall.SIGKILL)
}
