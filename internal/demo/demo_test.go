package demo

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemoKillAndAdd runs a short demo on real sockets: a member is
// crashed after 1s and another added after 2s, which the director must
// learn from replies.
func TestDemoKillAndAdd(t *testing.T) {
	var out bytes.Buffer
	cfg := Config{
		Duration:  3 * time.Second,
		KillAfter: 1 * time.Second,
		AddAfter:  2 * time.Second,
		Rate:      200,
		Refresh:   500 * time.Millisecond,
	}
	s, err := Run(context.Background(), cfg, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	// The load is open-loop at 200/s for 3s; allow for a slow start.
	if s.Requests < 400 {
		t.Errorf("requests = %d, want about 600", s.Requests)
	}
	if s.Failed != 0 {
		t.Errorf("failed = %d, want 0 (idempotent GETs must survive a crash); errors: %v", s.Failed, s.Errors)
	}
	if s.Killed == "" || s.Added == "" || s.Killed == s.Added {
		t.Fatalf("killed %q added %q", s.Killed, s.Added)
	}
	if s.MembersLearned != 1 || s.Epoch != 2 || s.LearnedAt < s.AddedAt {
		t.Errorf("members_learned=%d epoch=%d learned at %v (added at %v), want 1, 2, after the add",
			s.MembersLearned, s.Epoch, s.LearnedAt, s.AddedAt)
	}

	for _, m := range s.Members {
		switch {
		case m.Killed:
			if m.URL != s.Killed || m.Mean != DefaultServiceTimes[0] {
				t.Errorf("killed %s (mean %v), want the fastest member %s", m.URL, m.Mean, s.Killed)
			}
			// Nothing can come back from a closed socket; the grace covers
			// a reply already in the client's buffers at the kill.
			if grace := 100 * time.Millisecond; m.Served == 0 || m.Last > s.KilledAt+grace {
				t.Errorf("killed member served %d, last reply at %v, killed at %v", m.Served, m.Last, s.KilledAt)
			}
		case m.Added:
			if m.URL != s.Added || m.Served == 0 || m.First < s.AddedAt {
				t.Errorf("added member %s served %d, first at %v (added at %v)", m.URL, m.Served, m.First, s.AddedAt)
			}
		}
	}
	// Each request is one pick plus one per retry. The director's count of
	// a removed member stops at the last sample taken before its removal,
	// so the sum may fall short by a few, never exceed.
	var picks uint64
	for _, m := range s.Members {
		picks += m.Picks
	}
	if picks < s.Requests || picks > s.Requests+s.Retries+s.Hedges {
		t.Errorf("director picks %d, want between %d requests and %d with retries", picks, s.Requests, s.Requests+s.Retries+s.Hedges)
	}
	if s.P50 <= 0 || s.P99 < s.P50 {
		t.Errorf("p50 %v p99 %v", s.P50, s.P99)
	}

	text := out.String()
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if last := lines[len(lines)-1]; last != s.Line() || strings.Count(text, "summary:") != 1 {
		t.Errorf("last line %q, want the summary %q once", last, s.Line())
	}
	for _, want := range []string{"killed " + s.Killed, "added " + s.Added, "director learned membership epoch 2", "MEMBER", "final"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

var summaryRE = regexp.MustCompile(`^summary: requests=(\d+) failed=(\d+) retries=\d+ hedges=\d+ p50_ms=[0-9.]+ p99_ms=[0-9.]+ members_learned=\d+ epoch=\d+ killed=(\S+) added=(\S+) policy=(\S+) elapsed_s=[0-9.]+$`)

func TestSummaryLine(t *testing.T) {
	s := Summary{Policy: "p2c", Requests: 10, Failed: 1, Retries: 2, P50: 1500 * time.Microsecond, P99: 9 * time.Millisecond,
		MembersLearned: 1, Epoch: 2, Killed: "http://127.0.0.1:1", Elapsed: 3 * time.Second}
	line := s.Line()
	m := summaryRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("line %q does not match %v", line, summaryRE)
	}
	if m[1] != "10" || m[2] != "1" || m[3] != "http://127.0.0.1:1" || m[4] != "none" || m[5] != "p2c" {
		t.Errorf("fields %q", m[1:])
	}
	if !strings.Contains(line, "p50_ms=1.50 p99_ms=9.00") {
		t.Errorf("latencies in %q", line)
	}
}

// TestDemoANSI checks the terminal mode: the table is redrawn in place.
func TestDemoANSI(t *testing.T) {
	var out bytes.Buffer
	s, err := Run(context.Background(), Config{
		Duration: 1200 * time.Millisecond, KillAfter: -1, AddAfter: -1, Rate: 100,
		Refresh: 300 * time.Millisecond, ANSI: true, Servers: 2, Policy: "round-robin",
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Failed != 0 || s.Requests == 0 || s.Killed != "" || s.Added != "" || s.Policy != "round-robin" {
		t.Errorf("summary %+v", s)
	}
	if !strings.Contains(out.String(), "\x1b[") || !strings.Contains(out.String(), "\x1b[J") {
		t.Errorf("no cursor movement in ANSI mode:\n%q", out.String())
	}
	if m := summaryRE.FindStringSubmatch(strings.TrimSpace(lastLine(out.String()))); m == nil || m[3] != "none" {
		t.Errorf("summary line %q", lastLine(out.String()))
	}
}

func TestDemoStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	s, err := Run(ctx, Config{Duration: time.Minute, Servers: 2}, &out)
	if err != context.Canceled {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if !strings.HasPrefix(lastLine(out.String()), "summary: ") || s.Failed != 0 {
		t.Errorf("summary after cancel: %q %+v", lastLine(out.String()), s)
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // substring of the error; "" for valid
	}{
		{Config{}, ""},
		{Config{Servers: 1}, "Servers 1"},
		{Config{Servers: 33}, "Servers 33"},
		{Config{Duration: time.Second}, "KillAfter 6s must be before"},
		{Config{Duration: time.Second, KillAfter: -1, AddAfter: 500 * time.Millisecond}, ""},
		{Config{Duration: time.Second, KillAfter: -1, AddAfter: time.Second}, "AddAfter 1s"},
		{Config{Rate: -1}, "Rate -1"},
		{Config{Rate: 1e6}, "Rate 1e+06"},
		{Config{Policy: "nope"}, `unknown policy "nope"`},
		{Config{ServiceTimes: []time.Duration{-1}}, "service time"},
		{Config{Concurrency: -3}, "Concurrency -3"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}
}

func TestQuantiles(t *testing.T) {
	seq := func(n int) []time.Duration {
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(n - i) // reversed: quantiles must sort
		}
		return s
	}
	for _, tc := range []struct {
		n        int
		p50, p99 time.Duration
	}{
		{0, 0, 0},
		{1, 1, 1},
		{2, 1, 2},
		{100, 50, 99},
		{1000, 500, 990},
		{101, 51, 100},
	} {
		p50, p99 := quantiles(seq(tc.n))
		if p50 != tc.p50 || p99 != tc.p99 {
			t.Errorf("n=%d: p50 %v p99 %v, want %v %v", tc.n, p50, p99, tc.p50, tc.p99)
		}
	}
}
