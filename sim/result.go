package sim

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Result is what one run of a scenario under one policy produced.
type Result struct {
	Scenario, Policy string
	Seed             uint64
	Members          int
	Directors        int

	// Offered requests arrived; each then Succeeded, Failed, or was still
	// Unfinished at the hard stop (arrival window + Scenario.Drain).
	Offered, Succeeded, Failed, Unfinished int
	// Throughput is the share of offered requests that succeeded within the
	// arrival window. It falls short of 1 by the requests in flight at the
	// window's end (rate × mean latency, by Little's law: under 0.1% for
	// the standard 8-member scenarios, about 6% for the 18ms window of the
	// 1000-member one), and by much more when work piles up or fails. A
	// request that timed out and succeeded on a retry within the window
	// counts as done: its cost shows in the latency quantiles.
	Throughput float64
	// P50, P99 and P999 are nearest-rank quantiles of request latency (first
	// attempt's start to the successful reply, retries included) over the
	// requests that succeeded plus the unfinished ones, which count as
	// infinitely slow. Failed requests are not in them.
	P50, P99, P999 time.Duration

	// Attempts started, of which Retries were second or later attempts
	// after a failure and Hedges were sent while another attempt of the
	// same request was still outstanding.
	Attempts, Retries, Hedges int
	// Why requests failed: retry budget empty, MaxAttempts used up (or no
	// member left after a new round), a timeout or reset on a
	// non-idempotent request.
	BudgetDenied, Exhausted, NotRetryable int
	// How attempts failed.
	Refused, Resets, Timeouts int

	// Share is each member's share of all attempts, in member order.
	Share []float64
	// Window is the arrival window's length in virtual time.
	Window time.Duration
	// Events is how many simulation events were processed.
	Events int
}

// Table is a set of results, rendered as a markdown table by String.
type Table struct {
	Rows []Result
}

// Compare runs every scenario under every policy with the same seed, so that
// within a scenario every policy faces exactly the same arrivals and work.
func Compare(scenarios []Scenario, policies []string, seed uint64) (Table, error) {
	var t Table
	for _, sc := range scenarios {
		for _, p := range policies {
			r, err := Run(sc, p, seed)
			if err != nil {
				return Table{}, fmt.Errorf("sim: scenario %q, policy %q: %w", sc.Name, p, err)
			}
			t.Rows = append(t.Rows, r)
		}
	}
	return t, nil
}

// Find returns the row for scenario and policy, and whether there is one.
func (t Table) Find(scenario, policy string) (Result, bool) {
	for _, r := range t.Rows {
		if r.Scenario == scenario && r.Policy == policy {
			return r, true
		}
	}
	return Result{}, false
}

// String renders the table as markdown.
func (t Table) String() string {
	var b strings.Builder
	b.WriteString("| scenario | policy | p50 | p99 | p99.9 | throughput | failed | retries | share of attempts per member (%) |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range t.Rows {
		failed := fmt.Sprint(r.Failed)
		if r.Unfinished > 0 {
			failed += fmt.Sprintf(" (+%d unfinished)", r.Unfinished)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.4f | %s | %d | %s |\n",
			r.Scenario, r.Policy, fmtDur(r.P50), fmtDur(r.P99), fmtDur(r.P999),
			r.Throughput, failed, r.Retries, fmtShare(r.Share))
	}
	return b.String()
}

// fmtDur prints a latency in milliseconds with three significant digits.
func fmtDur(d time.Duration) string {
	if d == math.MaxInt64 {
		return "∞"
	}
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0fms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fms", ms)
}

// fmtShare lists every member's share for small clusters, else the range.
func fmtShare(share []float64) string {
	if len(share) == 0 {
		return ""
	}
	if len(share) > 8 {
		lo, hi := share[0], share[0]
		for _, s := range share {
			lo, hi = min(lo, s), max(hi, s)
		}
		return fmt.Sprintf("%d members: %.2f–%.2f", len(share), 100*lo, 100*hi)
	}
	parts := make([]string, len(share))
	for i, s := range share {
		parts[i] = fmt.Sprintf("%.1f", 100*s)
	}
	return strings.Join(parts, " ")
}
