package failsuite

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Phases cut a run into before, during and after its fault. Every field is
// an offset from the Recorder's origin.
type Phases struct {
	// Begin ends the warm-up: requests scheduled earlier are not reported
	// (the director is still learning latencies), though their completions
	// still count for the gap.
	Begin time.Duration
	// FaultStart is when the fault was injected, FaultEnd when it was
	// healed (for a crash: when the member was listening again).
	FaultStart, FaultEnd time.Duration
	// End: no request was scheduled at or after it.
	End time.Duration
	// Margin widens the gap window on either side of the fault.
	Margin time.Duration
}

// Validate reports phases out of order.
func (p Phases) Validate() error {
	if !(0 <= p.Begin && p.Begin <= p.FaultStart && p.FaultStart <= p.FaultEnd && p.FaultEnd <= p.End) {
		return fmt.Errorf("failsuite: phases out of order: begin %v, fault %v..%v, end %v", p.Begin, p.FaultStart, p.FaultEnd, p.End)
	}
	if p.Margin < 0 {
		return fmt.Errorf("failsuite: margin %v: must be >= 0", p.Margin)
	}
	return nil
}

// Counts are attempts counted by the director itself, for a client that
// cannot count them per request (the proxy: see Record.Attempts).
type Counts struct {
	Requests int64 // requests the director was asked to apply
	Attempts int64 // attempts it sent: requests + retries + hedges
}

// Input is everything Analyze needs.
type Input struct {
	Scenario string
	Records  []Record
	Members  []string // names Record.Member indexes
	Phases   Phases
	// Whole and During, if their Requests is not zero, replace the attempt
	// counts summed from Records over [Begin, End) and over the fault.
	Whole, During Counts
	// GapTarget is the failover gap the scenario promises; 0 for none.
	GapTarget time.Duration
	// Errors are a few error messages, copied into the report.
	Errors []string
	// Victim names the member the fault hit, if one member; "" otherwise.
	Victim string
	// Polls is the number of load polls the director sent over [Begin,
	// End): load too, though not retries or hedges. Negative: unknown.
	Polls int64
}

// Quantiles summarise the latency of one phase. Failed requests count with
// the time they took to fail.
type Quantiles struct {
	N     int     `json:"n"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
}

// MemberCount is how many requests one member answered in each phase.
type MemberCount struct {
	Name   string `json:"name"`
	Before int    `json:"before"`
	During int    `json:"during"`
	After  int    `json:"after"`
}

func (m *MemberCount) phase(i int) *int {
	switch i {
	case 0:
		return &m.Before
	case 1:
		return &m.During
	}
	return &m.After
}

// Report is the outcome of one scenario.
type Report struct {
	Scenario string `json:"scenario"`
	// Requests scheduled in [Begin, End), and how many of them failed.
	Requests int `json:"requests"`
	Failed   int `json:"failed"`
	// GapMS is the failover gap (see Analyze); GapAtS is when it began, in
	// seconds from the origin. BaseGapMS is the same measure over the
	// fault-free time before the gap window: what the offered rate and the
	// machine's noise give anyway.
	GapMS     float64 `json:"gap_ms"`
	GapAtS    float64 `json:"gap_at_s"`
	BaseGapMS float64 `json:"base_gap_ms"`
	// WorstMS is the longest latency of a request scheduled inside the gap
	// window: the wait of the unluckiest user, which is what Figure 8 of the
	// paper shows as its 1 s spike.
	WorstMS float64 `json:"worst_ms"`
	// ExtraLoadPct is attempts sent / requests offered - 1, in percent, over
	// [Begin, End); ExtraDuringPct the same over the fault alone.
	ExtraLoadPct   float64 `json:"extra_load_pct"`
	ExtraDuringPct float64 `json:"extra_during_pct"`
	Attempts       int64   `json:"attempts"`
	// PollPct is load polls as a share of the requests offered, in
	// percent; -1 when unknown (the proxy does not export its count).
	PollPct float64 `json:"poll_pct"`

	Before Quantiles `json:"before"`
	During Quantiles `json:"during"`
	After  Quantiles `json:"after"`

	// Victim is the member the fault hit; RejoinMS the time from the heal
	// to the end of its first successful reply to a request scheduled
	// after the heal: how long the director took to use it again (-1: not
	// within the run).
	Victim   string  `json:"victim,omitempty"`
	RejoinMS float64 `json:"rejoin_ms,omitempty"`

	Members     []MemberCount `json:"members"`
	FaultMS     float64       `json:"fault_ms"`
	GapTargetMS float64       `json:"gap_target_ms,omitempty"`
	Errors      []string      `json:"errors,omitempty"`
}

// Extra-load target: retries plus hedges add at most this share of the
// offered load.
const MaxExtraLoadPct = 20

// Missed lists the targets the report misses: "failed" (any failed request),
// "gap" (GapMS at or over the scenario's target) and "extra_load"
// (ExtraLoadPct over MaxExtraLoadPct).
func (r Report) Missed() []string {
	var m []string
	if r.Failed > 0 {
		m = append(m, "failed")
	}
	if r.GapTargetMS > 0 && r.GapMS >= r.GapTargetMS {
		m = append(m, "gap")
	}
	if r.ExtraLoadPct > MaxExtraLoadPct {
		m = append(m, "extra_load")
	}
	return m
}

// Line is the report in the suite's contract form: `scenario=NAME failed=N
// gap_ms=X extra_load_pct=Y` followed by further key=value pairs, one
// space apart, no spaces inside a value.
func (r Report) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario=%s failed=%d gap_ms=%.1f extra_load_pct=%.1f", r.Scenario, r.Failed, r.GapMS, r.ExtraLoadPct)
	fmt.Fprintf(&b, " requests=%d worst_ms=%.1f base_gap_ms=%.1f extra_during_pct=%.1f attempts=%d fault_ms=%.0f",
		r.Requests, r.WorstMS, r.BaseGapMS, r.ExtraDuringPct, r.Attempts, r.FaultMS)
	if r.PollPct >= 0 {
		fmt.Fprintf(&b, " poll_pct=%.1f", r.PollPct)
	}
	if r.Victim != "" {
		fmt.Fprintf(&b, " victim=%s rejoin_ms=%.0f", r.Victim, r.RejoinMS)
	}
	for _, p := range []struct {
		name string
		q    Quantiles
	}{{"before", r.Before}, {"during", r.During}, {"after", r.After}} {
		fmt.Fprintf(&b, " p50_%s_ms=%.2f p99_%s_ms=%.2f", p.name, p.q.P50MS, p.name, p.q.P99MS)
	}
	for i, ph := range []string{"before", "during", "after"} {
		parts := make([]string, 0, len(r.Members))
		for _, m := range r.Members {
			parts = append(parts, fmt.Sprintf("%s:%d", m.Name, *m.phase(i)))
		}
		if len(parts) == 0 {
			parts = append(parts, "none")
		}
		fmt.Fprintf(&b, " members_%s=%s", ph, strings.Join(parts, ","))
	}
	if r.GapTargetMS > 0 {
		fmt.Fprintf(&b, " gap_target_ms=%.0f", r.GapTargetMS)
	}
	missed := r.Missed()
	if len(missed) == 0 {
		b.WriteString(" targets=met")
	} else {
		b.WriteString(" targets=missed:" + strings.Join(missed, ","))
	}
	return b.String()
}

// Analyze turns one scenario's records into its report. It is a pure
// function of its input.
//
// Phases: a request belongs to the phase in which it was scheduled — before
// [Begin, FaultStart), during [FaultStart, FaultEnd), after [FaultEnd, End);
// requests scheduled before Begin (warm-up) are left out of everything but
// the gap.
//
// The failover gap is the longest interval within the gap window
// [FaultStart-Margin, FaultEnd+Margin] in which no request completed
// successfully. Precisely: take the times at which requests completed
// successfully, strictly between Begin and the end of the observation (the
// latest End of any record, or End if later), add those two bounds, and
// sort; clip each pair of neighbours to the window; the gap is the longest
// clipped interval. Completions of every request count, whichever phase it
// was scheduled in; a failed request's end is not a completion. A total
// outage gives the window's length. With no fault at all the gap is about
// the time between two arrivals (5 ms at 200 requests/s) plus the
// machine's noise: BaseGapMS measures the same over [Begin,
// FaultStart-Margin].
//
// Extra load is attempts sent / requests offered - 1, in percent, over the
// requests scheduled in [Begin, End) (or Input.Whole), and over the fault
// window alone (or Input.During). A request whose Attempts is 0 counts as
// one attempt.
func Analyze(in Input) (Report, error) {
	p := in.Phases
	if err := p.Validate(); err != nil {
		return Report{}, err
	}
	r := Report{
		Scenario:    in.Scenario,
		FaultMS:     ms(p.FaultEnd - p.FaultStart),
		GapTargetMS: ms(in.GapTarget),
		Errors:      in.Errors,
	}
	var (
		before, during, after []time.Duration
		done                  []time.Duration
		counts                = make([]MemberCount, len(in.Members))
		whole, fault          Counts
		stop                  = p.End
		wLo, wHi              = p.FaultStart - p.Margin, p.FaultEnd + p.Margin
		worst                 time.Duration
		victim                = int16(slices.Index(in.Members, in.Victim))
		rejoin                = time.Duration(-1)
	)
	for i, m := range in.Members {
		counts[i].Name = m
	}
	for _, rec := range in.Records {
		stop = max(stop, rec.End)
		if rec.Outcome == OK {
			done = append(done, rec.End)
			if in.Victim != "" && rec.Member == victim && rec.Start >= p.FaultEnd && (rejoin < 0 || rec.End < rejoin) {
				rejoin = rec.End
			}
		}
		if rec.Start < p.Begin || rec.Start >= p.End {
			continue
		}
		lat := rec.Latency()
		if rec.Outcome == Pending {
			lat = 0
		}
		if rec.Start >= wLo && rec.Start < wHi {
			worst = max(worst, lat)
		}
		r.Requests++
		if rec.Outcome != OK {
			r.Failed++
		}
		att := int64(max(rec.Attempts, 1))
		whole.Requests++
		whole.Attempts += att
		phase := 2
		switch {
		case rec.Start < p.FaultStart:
			phase = 0
			before = append(before, lat)
		case rec.Start < p.FaultEnd:
			phase = 1
			during = append(during, lat)
			fault.Requests++
			fault.Attempts += att
		default:
			after = append(after, lat)
		}
		if rec.Outcome == OK && rec.Member >= 0 && int(rec.Member) < len(counts) {
			*counts[rec.Member].phase(phase)++
		}
	}
	if in.Whole.Requests > 0 {
		whole = in.Whole
	}
	if in.During.Requests > 0 {
		fault = in.During
	}
	r.Attempts = whole.Attempts
	r.PollPct = -1
	if in.Polls >= 0 && whole.Requests > 0 {
		r.PollPct = float64(in.Polls) / float64(whole.Requests) * 100
	}
	r.ExtraLoadPct = extraPct(whole)
	r.ExtraDuringPct = extraPct(fault)
	r.Before, r.During, r.After = quantiles(before), quantiles(during), quantiles(after)
	r.WorstMS = ms(worst)
	if in.Victim != "" {
		r.Victim, r.RejoinMS = in.Victim, -1
		if rejoin >= 0 {
			r.RejoinMS = ms(rejoin - p.FaultEnd)
		}
	}
	r.Members = counts

	// The gap: completions between Begin and stop, with both bounds.
	s := make([]time.Duration, 0, len(done)+2)
	s = append(s, p.Begin)
	for _, t := range done {
		if t > p.Begin && t < stop {
			s = append(s, t)
		}
	}
	s = append(s, stop)
	slices.Sort(s)
	gap, at := longestGap(s, wLo, wHi)
	r.GapMS, r.GapAtS = ms(gap), at.Seconds()
	base, _ := longestGap(s, p.Begin, wLo)
	r.BaseGapMS = ms(base)
	return r, nil
}

// longestGap returns the longest stretch of [lo, hi] that holds no element
// of sorted s in its interior, and where it began: the largest difference
// between neighbours, each pair clipped to [lo, hi].
func longestGap(s []time.Duration, lo, hi time.Duration) (gap, at time.Duration) {
	for k := 0; k+1 < len(s); k++ {
		a, b := max(s[k], lo), min(s[k+1], hi)
		if d := b - a; d > gap {
			gap, at = d, a
		}
	}
	return gap, at
}

func extraPct(c Counts) float64 {
	if c.Requests == 0 {
		return 0
	}
	return (float64(c.Attempts)/float64(c.Requests) - 1) * 100
}

func quantiles(s []time.Duration) Quantiles {
	if len(s) == 0 {
		return Quantiles{}
	}
	slices.Sort(s)
	return Quantiles{N: len(s), P50MS: ms(nearestRank(s, 0.50)), P99MS: ms(nearestRank(s, 0.99)), MaxMS: ms(s[len(s)-1])}
}

// nearestRank returns the smallest sample with at least q of the samples at
// or below it. s must be sorted and non-empty.
func nearestRank(s []time.Duration, q float64) time.Duration {
	// The epsilon keeps 0.99*100 = 99.00000000000001 at rank 99.
	i := int(math.Ceil(q*float64(len(s))-1e-9)) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
