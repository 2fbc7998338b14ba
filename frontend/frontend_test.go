package frontend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

func TestParseMember(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"ssh://10.0.0.1", "ssh://10.0.0.1", ""},
		{"SSH://Host.Example:22", "ssh://host.example", ""},
		{"ssh://h:2222/", "ssh://h:2222", ""},
		{"ssh://[::1]:2222", "ssh://[::1]:2222", ""},
		{"ssh://[::1]", "ssh://[::1]", ""},
		{"ssh://root@h", "", "give -l USER"},
		{"http://h", "", "must be ssh://HOST"},
		{"h:22", "", "must be ssh://HOST"},
		{"ssh://", "", "must be ssh://HOST"},
		{"ssh://h:", "", "must be ssh://HOST"},
		{"ssh://h:0", "", "port \"0\" must be in 1..65535"},
		{"ssh://h:70000", "", "must be in 1..65535"},
		{"ssh://h/home", "", "no path"},
		{"ssh://h?x=1", "", "no path, query"},
	} {
		got, err := ParseMember(tc.in)
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseMember(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
		if err == nil {
			if _, err := TargetOf(got); err != nil {
				t.Errorf("TargetOf(%q): %v", got, err)
			}
		}
	}
	tg, _ := TargetOf("ssh://[::1]:2222")
	if tg.Host != "::1" || tg.Port != 2222 || tg.Addr() != "[::1]:2222" {
		t.Errorf("TargetOf: %+v", tg)
	}
}

func TestClassify(t *testing.T) {
	boom := errors.New("exec: ssh: not found")
	for _, tc := range []struct {
		o    Outcome
		err  error
		want director.Class // 0: success
	}{
		{Outcome{Status: 0, Started: true}, nil, 0},
		{Outcome{Status: 3, Started: true}, nil, 0},
		{Outcome{Status: 255, Started: true}, nil, 0}, // lost mid-session: never re-run
		{Outcome{Status: 255}, nil, director.NotReached},
		{Outcome{Status: 130}, nil, 0}, // interrupted by the user
		{Outcome{}, boom, director.Permanent},
	} {
		err := Classify(tc.o, tc.err)
		if tc.want == 0 && err != nil || tc.want != 0 && (err == nil || director.Classify(err) != tc.want) {
			t.Errorf("Classify(%+v, %v) = %v; want class %v", tc.o, tc.err, err, tc.want)
		}
	}
}

func TestArgv(t *testing.T) {
	s := &SSH{User: "root", Args: []string{"-i", "k"}, Command: []string{"-x", "y"}}
	got := strings.Join(s.Argv(Target{Host: "::1", Port: 2222}, "/tmp/a'b%c/started"), " ")
	want := `ssh -o PermitLocalCommand=yes -o LocalCommand=touch '/tmp/a'\''b%%c/started' -o ControlPath=none -i k -p 2222 -l root -- ::1 -x y`
	if got != want {
		t.Errorf("Argv:\n got %s\nwant %s", got, want)
	}
}

// server is a loopback TCP server that greets each connection with greet
// (nothing: it stays silent) and holds it until the test ends, or closes it
// at once if greet ends in EOT (\x04, not sent).
func server(t *testing.T, greet string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				g, hangUp := strings.CutSuffix(greet, "\x04")
				c.Write([]byte(g))
				if !hangUp {
					<-done
				}
			}()
		}
	}()
	return "ssh://" + ln.Addr().String()
}

// refused is the URL of a port nothing listens on.
func refused(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "ssh://" + addr
}

func TestProbe(t *testing.T) {
	cfg := Config{BannerTimeout: 300 * time.Millisecond}
	for _, tc := range []struct {
		name, url, err string
	}{
		{"sshd", server(t, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\r\n"), ""},
		{"silent", server(t, ""), "no SSH banner within 300ms"},
		{"ftp", server(t, "220 ftp ready\r\n"), `no SSH banner within 300ms: read tcp 127.0.0.1:`},
		{"ftp names the line", server(t, "220 ftp ready\r\n"), `(after 1 lines not starting with SSH-, the first "220 ftp ready")`},
		{"http", server(t, "HTTP/1.1 400 Bad Request\r\n\r\n<html>\x04"), "not an SSH server: connection closed"},
		{"refused", refused(t), "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, err := TargetOf(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Probe(context.Background(), cfg, tg)
			if tc.err == "" {
				if err != nil || b.Software != "OpenSSH_9.2p1" {
					t.Fatalf("Probe = %+v, %v", b, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || director.Classify(err) != director.NotReached {
				t.Fatalf("Probe error %v (class %v); want %q, not-reached", err, director.Classify(err), tc.err)
			}
		})
	}
}

// fakeSession records where it ran and answers from a script per member.
type fakeSession struct {
	mu      sync.Mutex
	ran     []string
	outcome map[string]Outcome
}

func (f *fakeSession) Run(_ context.Context, tg Target) (Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ran = append(f.ran, tg.URL)
	if o, ok := f.outcome[tg.URL]; ok {
		return o, nil
	}
	return Outcome{Started: true}, nil
}

// loads is a LoadPoller with fixed utilisations.
type loads map[string]float64

func (l loads) PollLoad(_ context.Context, m balance.Member) (wire.Load, error) {
	u, ok := l[m.URL]
	if !ok {
		return wire.Load{}, fmt.Errorf("no load for %s", m.URL)
	}
	return wire.Load{TimeMillis: 1, Util: u}, nil
}

func newDirector(t *testing.T, l loads, urls ...string) *director.Director {
	t.Helper()
	ms := make([]balance.Member, len(urls))
	for i, u := range urls {
		ms[i] = balance.Member{URL: u}
	}
	d, err := director.New(director.Config{PolicyImpl: PolledLeastLoaded{}, MaxAttempts: len(urls), Poller: l, PollInterval: time.Hour, LoadTTL: time.Hour}, ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	d.Poll()
	return d
}

func TestOpenLeastLoadedAndFailover(t *testing.T) {
	good := "SSH-2.0-OpenSSH_9.2p1\r\n"
	silent, garbled, a, b := server(t, ""), server(t, "220 ftp ready\r\n"), server(t, good), server(t, good)
	dead := refused(t)
	cfg := Config{BannerTimeout: 300 * time.Millisecond}

	// Least-loaded wins.
	var log []string
	cfg.Logf = func(f string, args ...any) { log = append(log, fmt.Sprintf(f, args...)) }
	s := &fakeSession{}
	res, err := Open(context.Background(), newDirector(t, loads{a: 0.5, b: 0.1}, a, b), cfg, s)
	if err != nil || res.Target.URL != b || len(s.ran) != 1 {
		t.Fatalf("Open = %+v, %v; ran %v", res, err, s.ran)
	}
	if want := "chose " + b + " (load 0.10, policy least-loaded; members " + b + "=0.10 " + a + "=0.50): SSH-2.0-OpenSSH_9.2p1"; len(log) != 1 || log[0] != want {
		t.Errorf("log %q; want %q", log, want)
	}

	// The least-loaded members are silent, garbled, dead, or fail before
	// the session: each is left for the next; the session runs once.
	log = nil
	s = &fakeSession{outcome: map[string]Outcome{a: {Status: 255}}}
	d := newDirector(t, loads{silent: 0.1, garbled: 0.2, dead: 0.3, a: 0.4, b: 0.9}, silent, garbled, dead, a, b)
	res, err = Open(context.Background(), d, cfg, s)
	if err != nil || res.Target.URL != b || strings.Join(s.ran, ",") != a+","+b {
		t.Fatalf("Open = %+v, %v; ran %v", res, err, s.ran)
	}
	failed := []string{}
	for _, l := range log {
		if strings.Contains(l, "failed (not-reached)") {
			failed = append(failed, l)
		}
	}
	for i, want := range []string{silent + ": attempt 1 failed (not-reached): 127.0.0.1:", "no SSH banner within 300ms",
		garbled + ": attempt 2", `the first "220 ftp ready"`, dead + ": attempt 3", "connection refused",
		a + ": attempt 4", "ssh exited 255 before the session started"} {
		if len(failed) != 4 || !strings.Contains(failed[i/2], want) {
			t.Errorf("failed attempts %q: #%d lacks %q", failed, i/2+1, want)
		}
	}

	// A session that started is the result, even with ssh's 255: never re-run.
	s = &fakeSession{outcome: map[string]Outcome{a: {Status: 255, Started: true}}}
	res, err = Open(context.Background(), newDirector(t, loads{a: 0.1, b: 0.9}, a, b), Config{}, s)
	if err != nil || res.Target.URL != a || res.Outcome.Status != 255 || len(s.ran) != 1 {
		t.Fatalf("Open = %+v, %v; ran %v", res, err, s.ran)
	}

	// Nothing answers: every attempt is in the error.
	_, err = Open(context.Background(), newDirector(t, loads{}, silent, dead), cfg, &fakeSession{})
	var de *director.Error
	if !errors.As(err, &de) || !errors.Is(err, director.ErrExhausted) || len(de.Attempts) != 2 {
		t.Fatalf("Open error %v", err)
	}
	for _, m := range []string{silent, dead} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %v does not name %s", err, m)
		}
	}

	// A member its agent calls draining is not tried, and the error says so.
	d = newDirector(t, loads{dead: 0.1}, dead, b)
	d.Balancer().Report(d.Balancer().Endpoints()[1], d.Now(), wire.Load{TimeMillis: 2, State: wire.StateDraining})
	_, err = Open(context.Background(), d, cfg, &fakeSession{})
	if !errors.As(err, &de) || !strings.HasSuffix(err.Error(), "; not tried: "+b+" (draining)") {
		t.Fatalf("Open error %v", err)
	}
}

// A member whose agent did not answer ranks after every member with a
// report: least-loaded alone would take it for idle.
func TestPolledLeastLoaded(t *testing.T) {
	good := "SSH-2.0-OpenSSH_9.2p1\r\n"
	a, b, c := server(t, good), server(t, good), server(t, good)
	for range 20 { // ties and the random start must not matter
		s := &fakeSession{}
		res, err := Open(context.Background(), newDirector(t, loads{b: 0.9, c: 0.7}, a, b, c), Config{}, s)
		if err != nil || res.Target.URL != c {
			t.Fatalf("Open = %+v, %v; want %s", res, err, c)
		}
	}
	// With no report at all, it is least-loaded over in-flight sessions.
	res, err := Open(context.Background(), newDirector(t, loads{}, a, b), Config{}, &fakeSession{})
	if err != nil || res.Target.URL != a && res.Target.URL != b {
		t.Fatalf("Open = %+v, %v", res, err)
	}
	// Its name is the policy's, for messages and stats.
	if n := (PolledLeastLoaded{}).Name(); n != "least-loaded" {
		t.Errorf("Name %q", n)
	}
}
