package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Cmd is a process to start on a host.
type Cmd struct {
	Path   string   // the program; a name without a slash is looked up in PATH
	Args   []string // arguments, without the program name
	Env    []string // passed unchanged; nil means the test process's environment
	Dir    string   // working directory; "" means the test process's
	Stdout io.Writer
	Stderr io.Writer // nil: discarded
}

// Proc is a process running on a host. Kill, Stop and Cont signal its
// whole process group (a server's workers too); Signal only the process.
type Proc struct {
	host   *Host
	cmd    *exec.Cmd
	pid    int
	exited chan struct{}

	mu   sync.Mutex
	gone bool  // exited (maybe not yet reaped): its pid may not be signalled
	err  error // Wait's result, set before exited is closed
}

// waitDelay bounds how long Wait waits for output after the process has
// exited, when a child it left behind still holds its stdout.
const waitDelay = 2 * time.Second

// Start runs c inside the host's namespace (through `ip netns exec`, which
// also gives it the namespace's view of /sys) and returns once it has
// started. The process is in its own process group and gets SIGKILL when
// the test process dies, however it dies; Bed.Close kills it, and so does
// ctx ending before it exits.
func (h *Host) Start(ctx context.Context, c Cmd) (*Proc, error) {
	if c.Path == "" {
		return nil, errors.New("testbed: Start: empty Cmd.Path")
	}
	ip, err := tool("ip")
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:   ip,
		Args:   append([]string{"ip", "netns", "exec", h.ns, c.Path}, c.Args...),
		Env:    c.Env,
		Dir:    c.Dir,
		Stdout: c.Stdout,
		Stderr: c.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
		},
		WaitDelay: waitDelay,
	}
	p := &Proc{host: h, cmd: cmd, exited: make(chan struct{})}
	b := h.bed
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	// Registered before it starts, so that Close, which takes the lock,
	// either refuses the start or kills the process.
	err = startFromLockedThread(cmd)
	if err != nil {
		b.mu.Unlock()
		return nil, fmt.Errorf("testbed: starting %s on %s: %w", c.Path, h.Name, err)
	}
	p.pid = cmd.Process.Pid
	b.procs[p] = struct{}{}
	b.mu.Unlock()
	go p.wait()
	go func() {
		select {
		case <-ctx.Done():
			p.Kill()
		case <-p.exited:
		}
	}()
	return p, nil
}

// wait waits for the process to exit, marks it gone before reaping it (so
// no signal meant for it can reach a new process that reuses its pid),
// then reaps it.
func (p *Proc) wait() {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	p.mu.Lock()
	p.gone = true
	p.mu.Unlock()
	err := p.cmd.Wait()
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
	b := p.host.bed
	b.mu.Lock()
	delete(b.procs, p)
	b.mu.Unlock()
	close(p.exited)
}

// The parent-death signal fires when the OS thread that forked the child
// exits, not when the process does, and the Go runtime may end threads.
// So every process is forked from one goroutine locked to its thread for
// the life of the test process: that thread ends only with the process.
var starter struct {
	once sync.Once
	reqs chan startReq
}

type startReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startFromLockedThread(cmd *exec.Cmd) error {
	starter.once.Do(func() {
		starter.reqs = make(chan startReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must not end
			for r := range starter.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	starter.reqs <- startReq{cmd: cmd, done: done}
	return <-done
}

// Pid is the process's id (in the root namespace's pid space).
func (p *Proc) Pid() int { return p.pid }

// Host is the host the process runs on.
func (p *Proc) Host() *Host { return p.host }

// Kill sends SIGKILL to the process group: the crash fault. It returns
// os.ErrProcessDone if the process had already exited.
func (p *Proc) Kill() error { return p.signalGroup(syscall.SIGKILL) }

// Stop sends SIGSTOP to the process group: the hang fault. The kernel
// still completes TCP handshakes for its listening sockets, but nothing
// reads or answers until Cont.
func (p *Proc) Stop() error { return p.signalGroup(syscall.SIGSTOP) }

// Cont sends SIGCONT to the process group, healing Stop.
func (p *Proc) Cont() error { return p.signalGroup(syscall.SIGCONT) }

func (p *Proc) signalGroup(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return os.ErrProcessDone
	}
	// The group's id is the leader's pid, which cannot be reused while
	// the leader has not been reaped (gone is false).
	if err := syscall.Kill(-p.pid, sig); err != nil {
		return fmt.Errorf("testbed: %v to process group %d: %w", sig, p.pid, err)
	}
	return nil
}

// Signal sends sig to the process alone (SIGTERM for a graceful stop).
func (p *Proc) Signal(sig os.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return os.ErrProcessDone
	}
	return p.cmd.Process.Signal(sig)
}

// Exited is closed once the process has exited and been reaped, whatever
// ended it (Kill, Bed.Close, ctx, itself).
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Wait waits for the process to exit and returns its status as
// exec.Cmd.Wait does (an *exec.ExitError unless it exited 0).
func (p *Proc) Wait() error {
	<-p.exited
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// WaitTCP waits until the host accepts TCP connections on port, polling
// from the root namespace, or ctx ends.
func (h *Host) WaitTCP(ctx context.Context, port int) error {
	return h.waitTCP(ctx, port, nil)
}

// waitTCP is WaitTCP that also gives up when exited is closed (the
// server died before it listened).
func (h *Host) waitTCP(ctx context.Context, port int, exited <-chan struct{}) error {
	addr := netip.AddrPortFrom(h.Addr, uint16(port)).String()
	d := net.Dialer{Timeout: 250 * time.Millisecond}
	var last error
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		last = err
		select {
		case <-exited:
			return fmt.Errorf("testbed: the process exited before %s accepted connections", addr)
		default:
		}
		if perr := pause(ctx, 10*time.Millisecond); perr != nil {
			return fmt.Errorf("testbed: %s on %s not accepting connections: %w (last: %v)", addr, h.Name, perr, last)
		}
	}
}

// String names the process for messages.
func (p *Proc) String() string {
	return strconv.Itoa(p.pid) + "@" + p.host.Name
}

// WaitTCP waits until the process's host accepts TCP connections on port,
// failing at once if the process exits first (a server that could not
// start), or when ctx ends.
func (p *Proc) WaitTCP(ctx context.Context, port int) error {
	return p.host.waitTCP(ctx, port, p.exited)
}
