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
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smartclient/smartclient/internal/procwait"
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
	procwait.Peek(p.pid, unix.WEXITED)
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

// Stop sends SIGSTOP to the process group, the hang fault, and returns
// once every process in the group has stopped: kill returns before its
// target has been scheduled to stop, and on a busy machine a server goes
// on answering for milliseconds after it. The kernel still completes TCP
// handshakes for its listening sockets, but nothing reads or answers until
// Cont. Stop returns os.ErrProcessDone if the process had exited or exits
// meanwhile, and an error if the group has not stopped within 10s.
func (p *Proc) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.signalGroupLocked(syscall.SIGSTOP); err != nil {
		return err
	}
	return p.waitStoppedLocked(stopTimeout)
}

// Cont sends SIGCONT to the process group, healing Stop. The kernel makes
// the stopped threads runnable before kill returns.
func (p *Proc) Cont() error { return p.signalGroup(syscall.SIGCONT) }

func (p *Proc) signalGroup(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signalGroupLocked(sig)
}

// signalGroupLocked is signalGroup for a caller holding p.mu.
func (p *Proc) signalGroupLocked(sig syscall.Signal) error {
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

// stopTimeout bounds Stop's wait: a thread in uninterruptible sleep stops
// only once it leaves it.
const stopTimeout = 10 * time.Second

// cldStopped is waitid's si_code for a child that has stopped (CLD_STOPPED).
const cldStopped = 5

// waitStoppedLocked waits until every process in the group has stopped.
// The caller holds p.mu, so the leader is not reaped meanwhile and its pid
// names it (and the group) throughout.
func (p *Proc) waitStoppedLocked(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The leader is this process's child: the kernel reports its stop once
	// every one of its threads has stopped. WNOWAIT leaves the report, and
	// an exit, to whoever waits next, so a waitid that outlives a timeout
	// changes nothing when it returns.
	leader := make(chan error, 1)
	go func() {
		info, err := procwait.Peek(p.pid, unix.WSTOPPED|unix.WEXITED)
		if err == nil && info.Code != cldStopped {
			err = os.ErrProcessDone // it exited instead
		}
		leader <- err
	}()
	select {
	case err := <-leader:
		if errors.Is(err, os.ErrProcessDone) {
			return err
		}
		if err != nil {
			return fmt.Errorf("testbed: waiting for process %d to stop: %w", p.pid, err)
		}
	case <-ctx.Done():
		return fmt.Errorf("testbed: process %d still running %v after SIGSTOP", p.pid, timeout)
	}
	// The rest of the group (nginx's workers) are not this process's
	// children, and no event says when they stop: poll their threads.
	for _, pid := range groupMembers(p.pid) {
		if pid == p.pid {
			continue
		}
		for !threadsStopped(pid) {
			if pause(ctx, time.Millisecond) != nil {
				return fmt.Errorf("testbed: process %d of group %d still running %v after SIGSTOP", pid, p.pid, timeout)
			}
		}
	}
	return nil
}

// groupMembers lists the processes whose process group is pgid.
func groupMembers(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// Fields from 3 on: state, ppid, pgrp.
		if f, err := statFields("/proc/" + e.Name() + "/stat"); err == nil && len(f) > 2 && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// threadsStopped reports whether every thread of pid is stopped (or
// traced, or gone): none of them can run until SIGCONT.
func threadsStopped(pid int) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return true // gone
	}
	for _, e := range ents {
		f, err := statFields(dir + "/" + e.Name() + "/stat")
		if err == nil && len(f) > 0 && !strings.ContainsAny(f[0], "TtZX") {
			return false
		}
	}
	return true
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
