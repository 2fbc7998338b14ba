package failsuite

import (
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smartclient/smartclient/testbed"
)

const msec = time.Millisecond

// steady returns one request every `every` scheduled in [from, to), each
// taking lat, answered by member 0 with one attempt.
func steady(from, to, every, lat time.Duration) []Record {
	var rs []Record
	for t := from; t < to; t += every {
		rs = append(rs, Record{Start: t, End: t + lat, Member: 0, Attempts: 1, Outcome: OK})
	}
	return rs
}

// edit applies f to every record scheduled in [from, to).
func edit(rs []Record, from, to time.Duration, f func(*Record)) []Record {
	for i := range rs {
		if rs[i].Start >= from && rs[i].Start < to {
			f(&rs[i])
		}
	}
	return rs
}

// phases: warm-up to 1s, fault 2s..3s, end 4s, margin 100ms.
var testPhases = Phases{Begin: 1000 * msec, FaultStart: 2000 * msec, FaultEnd: 3000 * msec, End: 4000 * msec, Margin: 100 * msec}

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name    string
		records []Record
		phases  Phases
		whole   Counts
		during  Counts
		victim  string
		check   func(t *testing.T, r Report)
	}{
		{
			name:    "steady load, no fault effect: gap is the arrival spacing",
			records: steady(0, 4000*msec, 5*msec, 2*msec),
			phases:  testPhases,
			check: func(t *testing.T, r Report) {
				want(t, "requests", r.Requests, 600) // 1s..4s at 200/s
				want(t, "failed", r.Failed, 0)
				wantF(t, "gap_ms", r.GapMS, 5)
				wantF(t, "base_gap_ms", r.BaseGapMS, 5)
				wantF(t, "extra_load_pct", r.ExtraLoadPct, 0)
				wantF(t, "worst_ms", r.WorstMS, 2)
				want(t, "before.n", r.Before.N, 200)
				want(t, "during.n", r.During.N, 200)
				want(t, "after.n", r.After.N, 200)
				wantF(t, "p50", r.During.P50MS, 2)
				wantF(t, "fault_ms", r.FaultMS, 1000)
			},
		},
		{
			name: "requests stall for 300ms in the fault: the gap spans the stall",
			// Requests scheduled 2.200..2.500 s all complete at 2.500+1ms.
			records: edit(steady(0, 4000*msec, 5*msec, 2*msec), 2200*msec, 2500*msec, func(r *Record) { r.End = 2501 * msec }),
			phases:  testPhases,
			check: func(t *testing.T, r Report) {
				// Last completion before the stall: request at 2.195 s ends 2.197 s.
				wantF(t, "gap_ms", r.GapMS, 2501-2197)
				wantF(t, "gap_at_s", r.GapAtS, 2.197)
				wantF(t, "worst_ms", r.WorstMS, 2501-2200)
				wantF(t, "base_gap_ms", r.BaseGapMS, 5)
				wantF(t, "during max", r.During.MaxMS, 301)
			},
		},
		{
			name: "failed requests are counted and their completions do not close the gap",
			records: edit(steady(0, 4000*msec, 5*msec, 2*msec), 2000*msec, 2100*msec, func(r *Record) {
				r.Outcome = Failed
				r.Member = -1
			}),
			phases: testPhases,
			check: func(t *testing.T, r Report) {
				want(t, "failed", r.Failed, 20)
				// Last success ends 1.997 s; the next, scheduled 2.100 s, ends 2.102 s.
				wantF(t, "gap_ms", r.GapMS, 2102-1997)
				want(t, "member 0 during", r.Members[0].During, 180)
				wantF(t, "p50 includes failed", r.During.P50MS, 2)
			},
		},
		{
			name: "a stall that began before the window counts from the window's start",
			records: edit(steady(0, 4000*msec, 5*msec, 2*msec), 1700*msec, 2000*msec, func(r *Record) {
				r.End = 2001 * msec
			}),
			phases: testPhases,
			check: func(t *testing.T, r Report) {
				wantF(t, "gap_ms", r.GapMS, 2001-1900)
				wantF(t, "gap_at_s", r.GapAtS, 1.9)
				// Before the window: 1.697 s to its start at 1.9 s.
				wantF(t, "base_gap_ms", r.BaseGapMS, 1900-1697)
			},
		},
		{
			name: "a stall outside the window ± margin is not the failover gap",
			records: edit(steady(0, 4000*msec, 5*msec, 2*msec), 1300*msec, 1500*msec, func(r *Record) {
				r.End = 1501 * msec
			}),
			phases: testPhases,
			check: func(t *testing.T, r Report) {
				wantF(t, "gap_ms", r.GapMS, 5)
				wantF(t, "base_gap_ms", r.BaseGapMS, 1501-1297)
				wantF(t, "worst_ms", r.WorstMS, 2)
			},
		},
		{
			name: "a stall that runs past the window counts only within it",
			records: edit(steady(0, 4000*msec, 5*msec, 2*msec), 3050*msec, 3150*msec, func(r *Record) {
				r.End = 3150 * msec
			}),
			phases: testPhases,
			check: func(t *testing.T, r Report) {
				// 3.047 s to 3.150 s, clipped at 3.1 s.
				wantF(t, "gap_ms", r.GapMS, 3100-3047)
				wantF(t, "worst_ms", r.WorstMS, 100)
			},
		},
		{
			name: "nothing completes after the fault: the gap runs to the end of the window",
			records: edit(steady(0, 4000*msec, 5*msec, 2*msec), 2500*msec, 4000*msec, func(r *Record) {
				r.Outcome = Failed
				r.End = r.Start + time.Second
			}),
			phases: testPhases,
			check: func(t *testing.T, r Report) {
				want(t, "failed", r.Failed, 300)
				// Last success ends 2.497 s; the window ends at 3.1 s.
				wantF(t, "gap_ms", r.GapMS, 3100-2497)
			},
		},
		{
			name:    "no completion at all: the gap is the whole window",
			records: edit(steady(0, 4000*msec, 5*msec, 2*msec), 0, 4000*msec, func(r *Record) { r.Outcome = Failed }),
			phases:  testPhases,
			check: func(t *testing.T, r Report) {
				wantF(t, "gap_ms", r.GapMS, 3100-1900)
				wantF(t, "gap_at_s", r.GapAtS, 1.9)
				wantF(t, "base_gap_ms", r.BaseGapMS, 1900-1000)
			},
		},
		{
			name: "pending requests are failures",
			records: edit(steady(0, 4000*msec, 5*msec, 2*msec), 3000*msec, 3010*msec, func(r *Record) {
				*r = Record{Start: r.Start, Member: -1}
			}),
			phases: testPhases,
			check: func(t *testing.T, r Report) {
				want(t, "failed", r.Failed, 2)
			},
		},
		{
			name: "retries and hedges are extra load, whole run and fault alone",
			records: edit(steady(0, 4000*msec, 5*msec, 2*msec), 2000*msec, 2500*msec, func(r *Record) {
				r.Attempts = 2
			}),
			phases: testPhases,
			check: func(t *testing.T, r Report) {
				want(t, "attempts", int(r.Attempts), 700)
				wantF(t, "extra_load_pct", r.ExtraLoadPct, 100.0/6)
				wantF(t, "extra_during_pct", r.ExtraDuringPct, 50)
			},
		},
		{
			name:    "counts from the director replace the records' attempts",
			records: steady(0, 4000*msec, 5*msec, 2*msec),
			phases:  testPhases,
			whole:   Counts{Requests: 600, Attempts: 630},
			during:  Counts{Requests: 200, Attempts: 220},
			check: func(t *testing.T, r Report) {
				wantF(t, "extra_load_pct", r.ExtraLoadPct, 5)
				wantF(t, "extra_during_pct", r.ExtraDuringPct, 10)
			},
		},
		{
			name: "members are counted per phase by successful replies",
			records: edit(steady(0, 4000*msec, 5*msec, 2*msec), 2000*msec, 3000*msec, func(r *Record) {
				if (r.Start/(5*msec))%2 == 0 {
					r.Member = 1
				}
			}),
			phases: testPhases,
			check: func(t *testing.T, r Report) {
				if got := r.Members; !slices.Equal(got, []MemberCount{{"a", 200, 100, 200}, {"b", 0, 100, 0}}) {
					t.Errorf("members = %+v", got)
				}
			},
		},
		{
			name: "the victim rejoins with its first reply to a request scheduled after the heal",
			records: edit(steady(0, 4000*msec, 5*msec, 2*msec), 2000*msec, 3300*msec, func(r *Record) {
				if r.Start < 3000*msec || (r.Start/(5*msec))%2 == 0 {
					r.Member = 1 // b answers everything in the fault and every other request after
				}
			}),
			phases: testPhases,
			victim: "a",
			check: func(t *testing.T, r Report) {
				want(t, "a during", r.Members[0].During, 0)
				// The first request a answers after the heal at 3 s: scheduled 3.005 s, ends 3.007 s.
				wantF(t, "rejoin_ms", r.RejoinMS, 7)
				if r.Victim != "a" || !strings.Contains(r.Line(), " victim=a rejoin_ms=7") {
					t.Errorf("victim missing from %q", r.Line())
				}
			},
		},
		{
			name:    "a victim that never answers again",
			records: edit(steady(0, 4000*msec, 5*msec, 2*msec), 2000*msec, 4000*msec, func(r *Record) { r.Member = 1 }),
			phases:  testPhases,
			victim:  "a",
			check: func(t *testing.T, r Report) {
				wantF(t, "rejoin_ms", r.RejoinMS, -1)
			},
		},
		{
			name: "quantiles by nearest rank",
			records: func() []Record {
				var rs []Record
				for i := range 100 { // latencies 1..100 ms, scheduled before the fault
					s := 1000*msec + time.Duration(i)*msec
					rs = append(rs, Record{Start: s, End: s + time.Duration(i+1)*msec, Outcome: OK, Member: 0})
				}
				return rs
			}(),
			phases: testPhases,
			check: func(t *testing.T, r Report) {
				wantF(t, "p50", r.Before.P50MS, 50)
				wantF(t, "p99", r.Before.P99MS, 99)
				wantF(t, "max", r.Before.MaxMS, 100)
				want(t, "during n", r.During.N, 0)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Analyze(Input{Scenario: "x", Records: tc.records, Members: []string{"a", "b"}, Phases: tc.phases, Whole: tc.whole, During: tc.during, Victim: tc.victim})
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}
}

func TestAnalyzeRejectsBadPhases(t *testing.T) {
	for _, p := range []Phases{
		{Begin: 2 * time.Second, FaultStart: time.Second, FaultEnd: 3 * time.Second, End: 4 * time.Second},
		{Begin: 0, FaultStart: 3 * time.Second, FaultEnd: 2 * time.Second, End: 4 * time.Second},
		{Begin: 0, FaultStart: time.Second, FaultEnd: 2 * time.Second, End: time.Second},
		{Begin: 0, FaultStart: time.Second, FaultEnd: 2 * time.Second, End: 3 * time.Second, Margin: -1},
	} {
		if _, err := Analyze(Input{Phases: p}); err == nil {
			t.Errorf("Analyze(%+v) accepted bad phases", p)
		}
	}
}

func TestLineContract(t *testing.T) {
	r, err := Analyze(Input{Scenario: "library/crash", Records: steady(0, 4000*msec, 5*msec, 2*msec),
		Members: []string{"h1", "h2"}, Phases: testPhases, GapTarget: 50 * msec})
	if err != nil {
		t.Fatal(err)
	}
	line := r.Line()
	// The contract: this prefix exactly, then key=value pairs.
	if !regexp.MustCompile(`^scenario=library/crash failed=0 gap_ms=5\.0 extra_load_pct=0\.0( [a-z0-9_]+=[^ =]+)+$`).MatchString(line) {
		t.Errorf("line does not follow the contract:\n%s", line)
	}
	for _, kv := range []string{" requests=600", " p50_before_ms=2.00", " p99_after_ms=2.00", " members_during=h1:200,h2:0", " gap_target_ms=50", " targets=met"} {
		if !strings.Contains(line, kv) {
			t.Errorf("line lacks %q:\n%s", kv, line)
		}
	}
}

func TestMissed(t *testing.T) {
	tests := []struct {
		r    Report
		want []string
	}{
		{Report{}, nil},
		{Report{Failed: 1}, []string{"failed"}},
		{Report{GapMS: 49.9, GapTargetMS: 50}, nil},
		{Report{GapMS: 50, GapTargetMS: 50}, []string{"gap"}},
		{Report{GapMS: 900}, nil}, // no target for this scenario
		{Report{ExtraLoadPct: 20}, nil},
		{Report{ExtraLoadPct: 20.1, Failed: 2, GapMS: 300, GapTargetMS: 250}, []string{"failed", "gap", "extra_load"}},
	}
	for _, tc := range tests {
		if got := tc.r.Missed(); !slices.Equal(got, tc.want) {
			t.Errorf("%+v.Missed() = %v, want %v", tc.r, got, tc.want)
		}
		if line := tc.r.Line(); (len(tc.want) == 0) != strings.HasSuffix(line, " targets=met") {
			t.Errorf("line %q disagrees with Missed %v", line, tc.want)
		}
	}
}

func want(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", what, got, want)
	}
}

func wantF(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-6 {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestTable(t *testing.T) {
	r, err := Analyze(Input{Scenario: "library/crash", Records: steady(0, 4000*msec, 5*msec, 2*msec),
		Members: []string{"h1"}, Phases: testPhases, GapTarget: 50 * msec, Victim: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	got := Table([]Report{r})
	want := "| library/crash | 0 of 600 | 5.0 (<50) | 2.0 | 0.0 (0.0) | 2.0 / 2.0 | 2.0 / 2.0 | 2.0 / 2.0 | not within run |\n"
	if !strings.HasSuffix(got, want) || strings.Count(got, "\n") != 3 {
		t.Errorf("table:\n%s\nwant its last line:\n%s", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{},
		{Binary: "x"},
	}
	for _, c := range bad {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	// The rest need a bed; a non-nil pointer is enough for Validate.
	bed := new(testbed.Bed)
	for _, c := range []Config{
		{Binary: "x", Bed: bed, Load: LoadSpec{Rate: -1}},
		{Binary: "x", Bed: bed, Timing: Timing{After: -1}},
		{Binary: "x", Bed: bed, Member: Member{Port: 70000}},
		{Binary: "x", Bed: bed, Member: Member{ServiceDist: "pareto"}},
		{Binary: "x", Bed: bed, Modes: []Mode{"grpc"}},
		{Binary: "x", Bed: bed, Scenarios: []string{"meteor"}},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (Config{Binary: "x", Bed: bed, Scenarios: []string{"crash", "rolling"}}).Validate(); err != nil {
		t.Errorf("good config refused: %v", err)
	}
}
