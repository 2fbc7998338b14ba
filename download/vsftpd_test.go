package download

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startVsftpd runs Debian's vsftpd in the foreground on a free loopback
// port with a generated configuration: anonymous, read-only, serving root.
// rate limits each transfer in bytes/s (0: none). It returns the mirror's
// URL and a function that kills it (its whole process group: vsftpd forks
// a process per session) and waits for it; the test's cleanup calls it too.
func startVsftpd(t *testing.T, root string, rate int) (string, func()) {
	t.Helper()
	bin, err := exec.LookPath("vsftpd")
	if err != nil {
		bin = "/usr/sbin/vsftpd"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("vsftpd not installed: run scripts/install-deps.sh (the test command does)")
		}
	}
	if _, err := user.Lookup("ftp"); err != nil {
		t.Fatal("no user ftp for anonymous sessions (Debian's vsftpd package creates it: run scripts/install-deps.sh)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("vsftpd needs root: the test command runs as root")
	}
	// The anonymous session runs as ftp, chrooted into root.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := strings.Join([]string{
		"listen=YES", "listen_ipv6=NO", "listen_address=127.0.0.1", fmt.Sprintf("listen_port=%d", addr.Port),
		"background=NO", "anonymous_enable=YES", "no_anon_password=YES", "anon_root=" + root,
		"ftp_username=ftp", "local_enable=NO", "write_enable=NO", "dirmessage_enable=NO",
		"connect_from_port_20=NO", "pasv_enable=YES", "secure_chroot_dir=" + empty,
		// Containers lack what the sandboxes need; this is a test server.
		"seccomp_sandbox=NO", "isolate=NO", "isolate_network=NO",
		"xferlog_enable=NO", "syslog_enable=NO", "vsftpd_log_file=" + filepath.Join(dir, "vsftpd.log"),
		"max_per_ip=0", "max_clients=0", "use_localtime=NO", fmt.Sprintf("anon_max_rate=%d", rate),
	}, "\n") + "\n"
	confPath := filepath.Join(dir, "vsftpd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, confPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stopped := false
	kill := func() {
		if stopped {
			return
		}
		stopped = true
		// Sessions call setsid, so the group misses them: kill every
		// descendant by id, then the master.
		for _, pid := range descendants(cmd.Process.Pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	t.Cleanup(kill)
	// Wait until it accepts connections, or has exited.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr.String())
		if err == nil {
			c.Close()
			return "ftp://" + addr.String(), kill
		}
		select {
		case <-exited:
			t.Fatalf("vsftpd exited: %s", out.String())
		case <-ctx.Done():
			t.Fatalf("vsftpd not accepting on %s: %v", addr, err)
		case <-tick.C:
		}
	}
}

// TestFTPMirrors: three unmodified vsftpd mirrors of one file; the
// download uses several of them, by REST offsets.
func TestFTPMirrors(t *testing.T) {
	data := randomBytes(4<<20+333, 40)
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "file.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var urls []string
	// Each limited to 8 MB/s a transfer, as TestNginxMirrors: p2c spreads
	// chunks only when one mirror's transfers overlap the next pick.
	for range 3 {
		u, _ := startVsftpd(t, root, 8<<20)
		urls = append(urls, u)
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "file.bin")
	res, err := Get(t.Context(), newDirector(t, "p2c", urls...), "/file.bin", dst, Config{ChunkSize: 512 << 10, SHA256: sum(data)})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	onlyFiles(t, dir, "file.bin")
	used := mirrorsUsed(res)
	if used < 2 || res.Fetched != res.Size || !strings.HasSuffix(res.Validator, "GMT") {
		t.Fatalf("%d mirrors used; result %+v", used, res)
	}
}

// TestFTPAndHTTPMirrors: nginx and vsftpd serving the same file are one
// version (nginx's Last-Modified is vsftpd's MDTM); an FTP mirror whose
// copy has another date is refused, and a dead one skipped.
func TestFTPAndHTTPMirrors(t *testing.T) {
	data := randomBytes(2<<20, 41)
	root, stale := t.TempDir(), t.TempDir()
	for _, d := range []string{root, stale} {
		if err := os.WriteFile(filepath.Join(d, "file.bin"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(stale, "file.bin"), time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
		t.Fatal(err)
	}
	httpURLs, _ := startNginxMirrors(t, root, 1, "")
	ftpURL, _ := startVsftpd(t, root, 0)
	staleURL, _ := startVsftpd(t, stale, 0)
	deadURL, kill := startVsftpd(t, root, 0)
	kill()
	// Round robin from the first: nginx answers first and fixes the version.
	urls := []string{httpURLs[0] + "/pub", ftpURL, staleURL, deadURL}
	dir := t.TempDir()
	dst := filepath.Join(dir, "file.bin")
	res, err := Get(t.Context(), newDirector(t, "round-robin", urls...), "/file.bin", dst, Config{ChunkSize: 256 << 10, Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if st := bytesFrom(res, ftpURL); st.Bytes == 0 {
		t.Errorf("the good FTP mirror sent nothing: %+v", res.Mirrors)
	}
	if st := bytesFrom(res, staleURL); st.Bytes != 0 || st.Failures == 0 {
		t.Errorf("stale FTP mirror: %+v", st)
	}
	if st := bytesFrom(res, deadURL); st.Failures == 0 {
		t.Errorf("dead FTP mirror: %+v", st)
	}
	if res.Fetched != res.Size {
		t.Errorf("fetched %d of %d", res.Fetched, res.Size)
	}
}

// TestFTPCancel: the caller gives up during a slow FTP transfer; Get
// returns the context's error and leaves nothing.
func TestFTPCancel(t *testing.T) {
	data := randomBytes(1<<20, 42)
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "file.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	u, _ := startVsftpd(t, root, 20000) // 1 MiB would take 50 s
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := Get(ctx, newDirector(t, "p2c", u), "/file.bin", filepath.Join(dir, "f"), Config{
		ChunkSize: 256 << 10, Parallel: 1,
		Progress: func(string, int) { cancel() }, // as soon as the first bytes land
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	onlyFiles(t, dir)
}

// descendants lists the processes below pid, from /proc.
func descendants(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				children[pp] = append(children[pp], p)
			}
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// TestFTPStaleFirst: a stale vsftpd mirror (other content, older date) is
// asked first; a good vsftpd and a good HTTP mirror of the same date
// outvote it, and it sends nothing.
func TestFTPStaleFirst(t *testing.T) {
	data, old := randomBytes(1<<20, 43), randomBytes(1<<20, 44)
	mod := time.Unix(1700000000, 0)
	root, stale := t.TempDir(), t.TempDir()
	for d, b := range map[string][]byte{root: data, stale: old} {
		f := filepath.Join(d, "file.bin")
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(filepath.Join(stale, "file.bin"), time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
		t.Fatal(err)
	}
	staleURL, _ := startVsftpd(t, stale, 0)
	ftpURL, _ := startVsftpd(t, root, 0)
	web := newMirror(data, "")
	web.modtime = mod
	urls := []string{staleURL, ftpURL, serve(t, web)}
	dst := filepath.Join(t.TempDir(), "file.bin")
	res, err := Get(t.Context(), newDirector(t, "round-robin", urls...), "/file.bin", dst, Config{ChunkSize: 256 << 10, Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if st := bytesFrom(res, staleURL); st.Bytes != 0 || len(res.Stale) != 1 || res.Stale[0] != staleURL {
		t.Fatalf("stale mirror %+v; result %+v", st, res)
	}
}
