package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

func fmtMs(v *float64) string {
	switch {
	case v == nil:
		return "∞"
	case *v >= 100:
		return fmt.Sprintf("%.0f", *v)
	default:
		return fmt.Sprintf("%.1f", *v)
	}
}

func ratio(v, floor *float64) string {
	if v == nil {
		return "∞"
	}
	if floor == nil || *floor <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", *v / *floor)
}

// contenderOrder is the table order of the contenders in the report.
func (r *Report) contenderOrder() []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range ContenderNames() {
		for _, x := range r.Results {
			if x.Contender == n && !seen[n] {
				out = append(out, n)
				seen[n] = true
			}
		}
	}
	return out
}

// WriteSummary writes the headline table: one row per contender, the first
// column its name. Cells come from the scenario named in the header; "—"
// means that scenario was not run or the contender had no numbers there.
func (r *Report) WriteSummary(w io.Writer) {
	floor := func(sc string) *float64 {
		if d := r.get(sc, "direct"); d != nil && d.Status == "ok" {
			return d.P99Ms
		}
		return nil
	}
	cell := func(sc, name string, f func(x *Result) string) string {
		x := r.get(sc, name)
		if x == nil || x.Offered == 0 {
			return "—"
		}
		return f(x)
	}
	fastDirect := r.get(ScenarioFast, "direct")
	fmt.Fprintln(w, "| contender | throughput / capacity (saturated) | p99 ms (slow member) | p99 / floor | failed (slow member) | p99 / floor, 32 clients | failed, 32 clients | p99 ms (rare slow) | failed (crash) | CPU µs/req, client + proxy | fast replies: req/s vs direct | status |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, n := range r.contenderOrder() {
		status := "ok"
		for _, x := range r.Results {
			if x.Contender == n && x.Status != "ok" {
				status = x.Scenario + ": " + x.Status
				break
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n,
			cell(ScenarioSaturated, n, func(x *Result) string { return fmt.Sprintf("%.3f", x.CapacityFrac) }),
			cell(ScenarioSlow, n, func(x *Result) string { return fmtMs(x.P99Ms) }),
			cell(ScenarioSlow, n, func(x *Result) string { return ratio(x.P99Ms, floor(ScenarioSlow)) }),
			cell(ScenarioSlow, n, func(x *Result) string { return fmt.Sprintf("%d / %d", x.Failed, x.Offered) }),
			cell(ScenarioSlow32, n, func(x *Result) string { return ratio(x.P99Ms, floor(ScenarioSlow32)) }),
			cell(ScenarioSlow32, n, func(x *Result) string { return fmt.Sprintf("%d / %d", x.Failed, x.Offered) }),
			cell(ScenarioTail, n, func(x *Result) string { return fmtMs(x.P99Ms) }),
			cell(ScenarioCrash, n, func(x *Result) string { return fmt.Sprintf("%d / %d", x.Failed, x.Offered) }),
			cell(ScenarioSlow, n, func(x *Result) string {
				if x.HopCPUMs == 0 {
					return fmt.Sprintf("%.0f", x.CPUPerReqUs)
				}
				return fmt.Sprintf("%.0f (proxy %.0f)", x.CPUPerReqUs, x.HopCPUMs*1e3/float64(x.Offered))
			}),
			cell(ScenarioFast, n, func(x *Result) string {
				if fastDirect == nil || fastDirect.ReqPerSec == 0 {
					return fmt.Sprintf("%.0f", x.ReqPerSec)
				}
				return fmt.Sprintf("%.0f (%.2f)", x.ReqPerSec, x.ReqPerSec/fastDirect.ReqPerSec)
			}),
			strings.ReplaceAll(status, "|", "/"),
		)
	}
}

// WriteScenarios writes one detailed table per scenario.
func (r *Report) WriteScenarios(w io.Writer) {
	for _, sc := range r.Scenarios {
		fmt.Fprintf(w, "\n#### %s\n\n%s. ", sc.Name, sc.Title)
		if sc.Rate > 0 {
			fmt.Fprintf(w, "Offered %.0f req/s for %.1f s", sc.Rate, sc.WindowS)
		} else {
			fmt.Fprintf(w, "Measured for %.1f s", sc.WindowS)
		}
		if sc.Capacity > 0 {
			fmt.Fprintf(w, "; members' capacity %.0f req/s", sc.Capacity)
		}
		fmt.Fprint(w, ".\n\n")
		var floor *float64
		if d := r.get(sc.Name, "direct"); d != nil && d.Status == "ok" {
			floor = d.P99Ms
		}
		fmt.Fprintln(w, "| contender | completed / offered | throughput / capacity | req/s | failed | p50 ms | p99 ms | p999 ms | p99 / floor | CPU client µs/req | CPU proxy µs/req | errors | status |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, n := range r.contenderOrder() {
			x := r.get(sc.Name, n)
			if x == nil {
				continue
			}
			if x.Offered == 0 {
				fmt.Fprintf(w, "| %s | — | — | — | — | — | — | — | — | — | — | — | %s |\n", n, strings.ReplaceAll(x.Status, "|", "/"))
				continue
			}
			per := func(ms float64) string { return fmt.Sprintf("%.0f", ms*1e3/float64(x.Offered)) }
			capf := "—"
			if x.CapacityFrac > 0 {
				capf = fmt.Sprintf("%.3f", x.CapacityFrac)
			}
			fmt.Fprintf(w, "| %s | %.4f | %s | %.0f | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", n,
				x.CompletedFrac, capf, x.ReqPerSec, x.Failed, fmtMs(x.P50Ms), fmtMs(x.P99Ms), fmtMs(x.P999Ms),
				ratio(x.P99Ms, floor), per(x.ClientCPUMs), per(x.HopCPUMs), errSummary(x.Errors),
				strings.ReplaceAll(x.Status, "|", "/"))
		}
	}
}

func errSummary(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range m {
		kvs = append(kvs, kv{k, v})
	}
	// Largest first, then by name, so the cell is stable.
	for i := 1; i < len(kvs); i++ {
		for j := i; j > 0 && (kvs[j].v > kvs[j-1].v || kvs[j].v == kvs[j-1].v && kvs[j].k < kvs[j-1].k); j-- {
			kvs[j], kvs[j-1] = kvs[j-1], kvs[j]
		}
	}
	var parts []string
	for i, x := range kvs {
		if i == 3 {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", strings.ReplaceAll(x.k, "|", "/"), x.v))
	}
	return strings.Join(parts, ", ")
}

// WriteMarkdown writes the summary, every scenario's table and Figure 6.
func (r *Report) WriteMarkdown(w io.Writer) {
	mode := "full"
	if r.Quick {
		mode = "quick (numbers show that everything runs; windows are too short to measure)"
	}
	fmt.Fprintf(w, "Mode: %s. Suite wall time: %.0f s.\n\n", mode, r.Seconds)
	r.WriteSummary(w)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Contenders:")
	fmt.Fprintln(w)
	for _, n := range r.contenderOrder() {
		fmt.Fprintf(w, "- `%s`: %s\n", n, r.Desc[n])
	}
	r.WriteScenarios(w)
	if r.Figure6 != nil {
		fmt.Fprintln(w)
		r.Figure6.writeMarkdown(w)
	}
}

// write stores results.json, report.md and the plots in dir.
func (r *Report) write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	jf := filepath.Join(dir, "results.json")
	if err := os.WriteFile(jf, b, 0o644); err != nil {
		return nil, err
	}
	files = append(files, jf)
	var md strings.Builder
	r.WriteMarkdown(&md)
	mf := filepath.Join(dir, "report.md")
	if err := os.WriteFile(mf, []byte(md.String()), 0o644); err != nil {
		return files, err
	}
	files = append(files, mf)
	pf, err := r.plot(dir)
	files = append(files, pf...)
	return files, err
}
