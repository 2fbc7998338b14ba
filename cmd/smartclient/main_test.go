package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildBinary compiles the command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "smartclient")
	out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBinary runs the real binary: bad flags, version, and a proxy that is
// started on port 0, used, and stopped with SIGTERM.
func TestBinary(t *testing.T) {
	bin := buildBinary(t)

	t.Run("bad flag", func(t *testing.T) {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "proxy", "--member", "not-a-url")
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("exit: %v, want status 2", err)
		}
		msg := stderr.String()
		if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, `--member "not-a-url": must be an absolute`) {
			t.Errorf("stderr %q, want one line naming the member", msg)
		}
	})

	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(bin, "version").Output()
		if err != nil || !strings.HasPrefix(string(out), "smartclient ") {
			t.Errorf("version: %q %v", out, err)
		}
	})

	t.Run("proxy and SIGTERM", func(t *testing.T) {
		member := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello from the member")
		}))
		defer member.Close()

		cmd := exec.Command(bin, "proxy", "--listen", "127.0.0.1:0", "--member", member.URL)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
			// Wait only after the pipe is drained, as os/exec requires.
			exited <- cmd.Wait()
		}()
		waited := false
		t.Cleanup(func() {
			// No process may outlive the test, whatever failed.
			if !waited {
				cmd.Process.Kill()
				<-exited
			}
		})

		timeout := time.After(20 * time.Second)
		var url string
		for url == "" {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("proxy exited before listening: %v\n%s", <-exited, stderr.String())
				}
				if rest, ok := strings.CutPrefix(l, "listening: "); ok {
					url, _, _ = strings.Cut(rest, " ")
				}
			case <-timeout:
				t.Fatal("no 'listening:' line within 20s")
			}
		}

		resp, err := http.Get(url + "/hi")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "hello from the member" {
			t.Fatalf("through the binary: %d %q", resp.StatusCode, body)
		}

		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		var rest []string
		timeout = time.After(20 * time.Second)
		for !waited {
			select {
			case l, ok := <-lines:
				if !ok {
					lines = nil // closed: wait for the exit alone
					continue
				}
				rest = append(rest, l)
			case err := <-exited:
				waited = true
				if err != nil {
					t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
				}
			case <-timeout:
				t.Fatal("binary did not exit within 20s of SIGTERM")
			}
		}
		if len(rest) == 0 || rest[len(rest)-1] != "stopped" {
			t.Errorf("output after SIGTERM %q, want it to end with 'stopped'", rest)
		}
	})
}
