package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the suite started in its own process group, so
// that the group (nginx's master and workers, say) can be measured and
// killed as one, by its id.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	lines  chan string // stdout lines, until EOF
	done   chan struct{}
	err    error // Wait's result, set before done closes

	// term, if set, is sent to the leader first on stop, so that a master
	// process (nginx) reaps its workers instead of leaving them to init.
	term syscall.Signal

	stopOnce sync.Once
}

// startProc starts argv with env added to the suite's environment. The
// child gets SIGKILL if the suite's thread dies (Pdeathsig), and its own
// process group.
func startProc(name string, argv []string, env []string, dir string) (*proc, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("%s: no command", name)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, stderr: &tailBuffer{max: 4096}, lines: make(chan string, 64), done: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody is reading: drop rather than block the child
			}
		}
		close(p.lines)
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pgid is the child's process group id (its pid: Setpgid).
func (p *proc) pgid() int { return p.cmd.Process.Pid }

// waitLine returns the first stdout line with prefix, or an error when the
// child exits or the timeout passes first.
func (p *proc) waitLine(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				<-p.done
				return "", p.exitError()
			}
			if strings.HasPrefix(l, prefix) {
				return strings.TrimSpace(strings.TrimPrefix(l, prefix)), nil
			}
		case <-t.C:
			return "", fmt.Errorf("%s: no %q line within %v; stderr: %s", p.name, prefix, timeout, p.stderr.oneLine())
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func (p *proc) exitError() error {
	return fmt.Errorf("%s exited (%v): %s", p.name, p.err, p.stderr.oneLine())
}

// exited reports whether the child has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop kills the child's whole process group and waits for the child.
// Safe to call more than once.
func (p *proc) stop() {
	p.stopOnce.Do(func() {
		p.stdin.Close()
		if p.term != 0 && !p.exited() {
			_ = p.cmd.Process.Signal(p.term)
			t := time.NewTimer(3 * time.Second)
			select {
			case <-p.done:
			case <-t.C:
			}
			t.Stop()
		}
		if !p.exited() {
			// Negative pid: the group this child leads, and only it,
			// while the leader still holds the id (never after it was
			// reaped, when the number could be reused).
			_ = syscall.Kill(-p.pgid(), syscall.SIGKILL)
		}
		<-p.done
	})
}

// tailBuffer keeps the last max bytes written: a child's stderr, for error
// messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) oneLine() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.Join(strings.Fields(string(b.buf)), " ")
	if len(s) > 300 {
		s = "…" + s[len(s)-300:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's utime and stime. It
// is 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// groupCPU returns the user+system CPU of every live process in process
// group pgid, read from /proc. Threads are included (a process's stat sums
// them); processes that already exited are not, which is why the suite
// samples a group while it runs.
func groupCPU(pgid int) (time.Duration, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var total time.Duration
	found := false
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone since ReadDir
		}
		grp, cpu, err := parseStat(b)
		if err != nil || grp != pgid {
			continue
		}
		found = true
		total += cpu
	}
	if !found {
		return 0, fmt.Errorf("no process in group %d", pgid)
	}
	return total, nil
}

// parseStat reads the process group and utime+stime from a /proc/PID/stat
// line. The command name (field 2) may hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStat(b []byte) (pgrp int, cpu time.Duration, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); pgrp is field 5, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, errors.New("stat: too few fields")
	}
	pgrp, err = strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, fmt.Errorf("stat: pgrp: %w", err)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, errors.New("stat: utime/stime not numbers")
	}
	return pgrp, time.Duration(ut+st) * clockTick, nil
}

// selfCPU is this process's user+system CPU from getrusage: microsecond
// resolution, all threads.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
