package testbed_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smartclient/smartclient/testbed"
)

// The test binary doubles as the programs the tests run on hosts: with
// TESTBED_HELPER set, TestMain runs the helper instead of the tests.
const helperEnv = "TESTBED_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode))
	}
	code := m.Run()
	testbed.RemoveBuilds()
	os.Exit(code)
}

func helperMain(mode string) int {
	target := os.Getenv("TESTBED_TARGET")
	timeout, _ := time.ParseDuration(os.Getenv("TESTBED_TIMEOUT"))
	switch mode {
	case "serve":
		return serve(target, os.Getenv("TESTBED_NAME"))
	case "dial":
		c, err := net.DialTimeout("tcp", target, timeout)
		if err == nil {
			c.Close()
		}
		fmt.Println(classify(err))
		return 0
	case "get":
		fmt.Println(get(&http.Client{Timeout: timeout}, "http://"+target+"/"))
		return 0
	case "crashchild":
		return crashChild()
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

// serve is a small HTTP server: / answers with the server's name in a
// Member header, /big?n=N with N bytes.
func serve(addr, name string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	big := make([]byte, 8<<20)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Member", name)
		io.WriteString(w, "hello from "+name+"\n")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 || n > len(big) {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(big[:n])
	})
	fmt.Println("listening on", ln.Addr())
	return exitCode(http.Serve(ln, mux))
}

func exitCode(err error) int {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// classify names what happened to a connection attempt.
func classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "error: " + err.Error()
}

// get fetches url and returns "ok MEMBER" or classify's word.
func get(c *http.Client, url string) string {
	resp, err := c.Get(url)
	if err != nil {
		return classify(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return classify(err)
	}
	if resp.StatusCode != http.StatusOK {
		return "status " + strconv.Itoa(resp.StatusCode)
	}
	return "ok " + resp.Header.Get("Member")
}

// crashInfo is what the crashing child reports before it is killed.
type crashInfo struct {
	Name     string   `json:"name"`
	Netns    []string `json:"netns"`
	SleepPid int      `json:"sleep_pid"`
	NginxPid int      `json:"nginx_pid"`
}

// crashChild makes a bed, starts a process and nginx on it, reports, and
// waits to be killed: the first half of a crashed run.
func crashChild() int {
	ctx := context.Background()
	b, err := testbed.New(ctx, testbed.Config{Hosts: 2, Prefix: crashPrefix})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	hs := b.Hosts()
	sleep, err := hs[0].Start(ctx, testbed.Cmd{Path: "sleep", Args: []string{"1000"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The parent's temp directory: this process is killed, not cleaned up.
	ngx, err := hs[1].StartNginx(ctx, 8080, os.Getenv("TESTBED_TARGET"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	info := crashInfo{Name: b.Name(), SleepPid: sleep.Pid(), NginxPid: ngx.Pid()}
	for _, h := range hs {
		info.Netns = append(info.Netns, h.Namespace())
	}
	json.NewEncoder(os.Stdout).Encode(info)
	// Wait for the parent's SIGKILL (or its stdin closing, if it fails).
	bufio.NewReader(os.Stdin).ReadString('\n')
	return 3
}

// noExitSleep stops a -race build of a helper from sleeping a second as it
// exits (the race runtime's default atexit_sleep_ms=1000).
const noExitSleep = "GORACE=atexit_sleep_ms=0"

// helperCmd is a testbed.Cmd that runs this test binary as helper mode.
func helperCmd(t *testing.T, mode, target string, timeout time.Duration, out io.Writer, extraEnv ...string) testbed.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), helperEnv+"="+mode, "TESTBED_TARGET="+target, "TESTBED_TIMEOUT="+timeout.String(),
		noExitSleep)
	return testbed.Cmd{Path: exe, Env: append(env, extraEnv...), Stdout: out, Stderr: out}
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
