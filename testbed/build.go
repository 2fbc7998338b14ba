package testbed

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// TB is the part of testing.TB that BuildSmartclient uses (so that this
// package, which the smartclient command also links, needs no "testing").
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

const module = "github.com/smartclient/smartclient"

// buildPrefix names the directories builds go to, with the building
// process's pid, so that a later build sweeps those of dead processes.
const buildPrefix = "smartclient-testbed-build-"

var built struct {
	sync.Mutex
	dir, path string
	err       error
}

// BuildSmartclient builds the smartclient command (./cmd/smartclient of
// this module) once per test binary and returns the executable's path; the
// go tool's build cache makes later test binaries' builds quick. Call
// RemoveBuilds from TestMain after m.Run:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		testbed.RemoveBuilds()
//		os.Exit(code)
//	}
//
// A test binary that was killed leaves its build behind; the next
// BuildSmartclient of any test binary removes it.
func BuildSmartclient(tb TB) string {
	tb.Helper()
	path, err := buildSmartclient()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return path
}

func buildSmartclient() (string, error) {
	built.Lock()
	defer built.Unlock()
	if built.path != "" || built.err != nil {
		return built.path, built.err
	}
	sweepBuilds()
	root, err := moduleRoot()
	if err != nil {
		built.err = err
		return "", err
	}
	dir, err := os.MkdirTemp("", buildPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		built.err = fmt.Errorf("testbed: %w", err)
		return "", built.err
	}
	path := filepath.Join(dir, "smartclient")
	cmd := exec.Command(goTool(), "build", "-o", path, module+"/cmd/smartclient")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		built.err = fmt.Errorf("testbed: go build %s/cmd/smartclient: %v\n%s", module, err, out)
		return "", built.err
	}
	built.dir, built.path = dir, path
	return path, nil
}

// RemoveBuilds removes what BuildSmartclient built in this process.
func RemoveBuilds() {
	built.Lock()
	defer built.Unlock()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	built.dir, built.path, built.err = "", "", nil
}

// sweepBuilds removes the build directories of processes that are gone.
func sweepBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), buildPrefix+"*-*"))
	for _, d := range dirs {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), buildPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + pidStr); os.IsNotExist(err) {
			os.RemoveAll(d)
		}
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// moduleRoot finds this module's directory from the working directory (a
// test runs in its package's directory), checking go.mod names it.
func moduleRoot() (string, error) {
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("testbed: go env GOMOD: %w (is the go tool installed?)", err)
	}
	gomod := strings.TrimSpace(string(out))
	b, err := os.ReadFile(gomod)
	if err != nil || !bytes.Contains(b, []byte("module "+module+"\n")) {
		return "", fmt.Errorf("testbed: BuildSmartclient must run inside the %s module (go env GOMOD: %q)", module, gomod)
	}
	return filepath.Dir(gomod), nil
}
