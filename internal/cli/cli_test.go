package cli

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/smarthttp"
)

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Run(context.Background(), args, &o, &e, nil)
	return code, o.String(), e.String()
}

func TestBadCommandLines(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	const m = "http://127.0.0.1:9"
	for _, tc := range []struct {
		name string
		args []string
		want string // in the one line on stderr
	}{
		{"no command", nil, "usage: smartclient"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"no members", []string{"proxy"}, "no members: give at least one --member"},
		{"not a URL", []string{"proxy", "--member", "localhost:8080"}, `--member "localhost:8080": must be an absolute http:// or https:// URL`},
		{"wrong scheme", []string{"proxy", "--member", "ftp://h:21"}, `--member "ftp://h:21": must be an absolute`},
		{"no host", []string{"proxy", "--member", "http://"}, `--member "http://": must be an absolute`},
		{"empty port", []string{"proxy", "--member", "http://h:"}, `must be an absolute`},
		{"query", []string{"proxy", "--member", "http://h:1/?a=b"}, "no query or fragment"},
		{"user", []string{"proxy", "--member", "http://u:p@h:1"}, "user information"},
		{"duplicate", []string{"proxy", "--member", "http://H:1/", "--member", "http://h:1"}, `--member "http://h:1": duplicate member, same as "http://H:1/"`},
		{"unknown policy", []string{"proxy", "--member", m, "--policy", "best"}, `unknown policy "best"; valid policies: hash, least-loaded, locality, p2c, random, random-biased, round-robin, weighted`},
		{"unknown flag", []string{"proxy", "--member", m, "--bogus"}, "flag provided but not defined: -bogus"},
		{"bad duration", []string{"proxy", "--member", m, "--attempt-timeout", "soon"}, `invalid value "soon" for flag -attempt-timeout`},
		{"max attempts", []string{"proxy", "--member", m, "--max-attempts", "0"}, "--max-attempts 0: must be in 1..100"},
		{"negative timeout", []string{"proxy", "--member", m, "--attempt-timeout", "-1s"}, "--attempt-timeout -1s: must be >= 0"},
		{"relative probe path", []string{"proxy", "--member", m, "--probe-path", "healthz"}, `--probe-path "healthz": must start with /`},
		{"poll interval", []string{"proxy", "--member", m, "--poll-path", "/load", "--poll-interval", "0s"}, "--poll-interval 0s: must be > 0"},
		{"extra argument", []string{"proxy", "--member", m, "extra"}, `unexpected argument "extra"`},
		{"port in use", []string{"proxy", "--member", m, "--listen", busy.Addr().String()}, "address already in use"},
		{"bad listen", []string{"proxy", "--member", m, "--listen", "nonsense"}, "listen tcp: address nonsense"},
		{"demo policy", []string{"demo", "--policy", "best"}, `unknown policy "best"`},
		{"demo servers", []string{"demo", "--servers", "1"}, "Servers 1 must be in 2..32"},
		{"demo kill late", []string{"demo", "--duration", "5s"}, "KillAfter 6s must be before the end"},
		{"demo zero rate", []string{"demo", "--rate", "0"}, "must be > 0"},
		{"demo flag", []string{"demo", "--servrs", "3"}, "flag provided but not defined: -servrs"},
		{"version arg", []string{"version", "x"}, `unexpected argument "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(tc.args...)
			if code != ExitUsage {
				t.Errorf("exit status %d, want %d; stderr %q", code, ExitUsage, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q, want it to contain %q", stderr, tc.want)
			}
			if tc.args != nil && strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr is %d lines, want 1: %q", strings.Count(stderr, "\n"), stderr)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, out, _ := run("help")
	if code != 0 {
		t.Fatalf("help: %d", code)
	}
	for _, c := range []string{"demo ", "proxy ", "version ", "help "} {
		if !strings.Contains(out, "\n  "+c) {
			t.Errorf("help lacks command %q:\n%s", c, out)
		}
	}
	for _, args := range [][]string{{"help", "proxy"}, {"proxy", "-h"}} {
		code, out, _ = run(args...)
		if code != 0 || !strings.Contains(out, "-member") || !strings.Contains(out, "-learn-members") {
			t.Errorf("%v: %d\n%s", args, code, out)
		}
	}
	code, out, _ = run("help", "demo")
	if code != 0 || !strings.Contains(out, "-kill-after") {
		t.Errorf("help demo: %d\n%s", code, out)
	}
	code, out, _ = run("version")
	if code != 0 || !strings.HasPrefix(out, "smartclient ") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestParseMemberURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://127.0.0.1:8081", "http://127.0.0.1:8081"},
		{"HTTP://Example.COM:80/", "http://example.com:80"},
		{"https://h/prefix/", "https://h/prefix"},
		{"http://[::1]:8080", "http://[::1]:8080"},
	} {
		got, err := ParseMemberURL(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseMemberURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "h:1", "/path", "http://", "http://h:", "mailto:a@b", "http://h:1#f", "http://h:1?", "http://h 1:2", "http://h;x:1"} {
		if got, err := ParseMemberURL(bad); err == nil {
			t.Errorf("ParseMemberURL(%q) = %q, want an error", bad, got)
		}
	}
}

func TestDemoFlags(t *testing.T) {
	cfg, err := parseDemoFlags([]string{"--servers", "5", "--duration", "30s", "--kill-after", "-1s", "--add-after", "10s", "--rate", "50", "--policy", "least-loaded"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Servers != 5 || cfg.Duration.Seconds() != 30 || cfg.KillAfter >= 0 || cfg.AddAfter.Seconds() != 10 || cfg.Rate != 50 || cfg.Policy != "least-loaded" {
		t.Errorf("cfg %+v", cfg)
	}
}

func TestProbeAndPollFlags(t *testing.T) {
	cfg, err := parseProxyFlags([]string{"--member", "http://h:1", "--probe-path", "/healthz", "--poll-path", "/load", "--poll-interval", "250ms"})
	if err != nil {
		t.Fatal(err)
	}
	pr, ok := cfg.Director.Prober.(*smarthttp.Prober)
	if !ok || pr.Path != "/healthz" {
		t.Errorf("Prober = %#v, want an HTTP prober of /healthz", cfg.Director.Prober)
	}
	po, ok := cfg.Director.Poller.(*smarthttp.LoadPoller)
	if !ok || po.Path != "/load" || cfg.Director.PollInterval != 250*time.Millisecond {
		t.Errorf("Poller = %#v every %v, want /load every 250ms", cfg.Director.Poller, cfg.Director.PollInterval)
	}
	cfg, err = parseProxyFlags([]string{"--member", "http://h:1"})
	if err != nil || cfg.Director.Prober != nil || cfg.Director.Poller != nil {
		t.Errorf("without the flags: prober %v poller %v err %v, want none", cfg.Director.Prober, cfg.Director.Poller, err)
	}
}
