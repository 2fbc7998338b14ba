package procwait

import (
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Peek reports a stop and an exit and leaves the child to be reaped by
// exec.Cmd.Wait, which then sees the real exit status.
func TestPeek(t *testing.T) {
	cmd := exec.Command("sh", "-c", "kill -STOP $$; exit 7")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	info, err := Peek(pid, unix.WSTOPPED|unix.WEXITED)
	if err != nil || info.Code != 5 { // CLD_STOPPED
		t.Fatalf("Peek = code %d, %v; want a stop", info.Code, err)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if info, err = Peek(pid, unix.WEXITED); err != nil || info.Code != 1 { // CLD_EXITED
		t.Fatalf("Peek = code %d, %v; want an exit", info.Code, err)
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("Wait after Peek = %v, want exit status 7", err)
	}
}
