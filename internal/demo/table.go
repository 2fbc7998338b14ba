package demo

import (
	"fmt"
	"strings"

	"github.com/smartclient/smartclient/balance"
)

// draw writes the live table. In ANSI mode it replaces the previous
// drawing (cursor up, clear to end of screen) and includes the events so
// far; otherwise it appends a block, events having been printed as they
// happened.
func (r *runner) draw(final bool) {
	var b strings.Builder
	st := r.dir.Stats()
	requests, failed, p50, p99, views := r.rec.view()
	byURL := r.remember(st.Members)
	label := fmt.Sprintf("t=%5.1fs", r.since().Seconds())
	if final {
		label = fmt.Sprintf("final %5.1fs", r.elapsed.Seconds())
	}
	fmt.Fprintf(&b, "%s  requests=%d failed=%d retries=%d hedges=%d p50=%sms p99=%sms epoch=%d policy=%s\n",
		label, requests, failed, st.Retries, st.Hedges, round(p50), round(p99), st.Epoch, st.Policy)

	const row = "%-*s %5s %-10s %7s %9s %7s %7s %7s %6s %5s  %s\n"
	width := len("MEMBER")
	for _, m := range r.cl.all() {
		width = max(width, len(m.url))
	}
	fmt.Fprintf(&b, row, width, "MEMBER", "MEAN", "STATE", "PICKS", "IN-FLIGHT", "SERVED", "P50ms", "P99ms", "ERRORS", "LOAD", "NOTE")
	for _, m := range r.cl.all() {
		v := views[m.url]
		es, inList := byURL[m.url]
		last, known := r.lastSeen[m.url]
		if !inList {
			es = last
		}
		state := es.State.String()
		picks, inflight, failures := fmt.Sprint(es.Picks), fmt.Sprint(es.InFlight), fmt.Sprint(es.Failures)
		load := "-"
		if es.LastLoad.TimeMillis != 0 {
			load = fmt.Sprintf("%d/%d", es.LastLoad.InFlight, es.LastLoad.Capacity)
		}
		switch {
		case inList:
		case known:
			// Dropped from the director's list by a newer membership
			// record: show its last statistics.
			state, inflight = "removed", "-"
		default:
			// Not yet learned by the director.
			state, picks, inflight, failures = "unknown", "-", "-", "-"
		}
		var notes []string
		if m.killed.Load() {
			notes = append(notes, "killed")
		}
		if m.added {
			notes = append(notes, "added")
		}
		line := fmt.Sprintf(row, width, m.url, m.mean, state, picks, inflight, fmt.Sprint(v.served),
			round(v.p50), round(v.p99), failures, load, strings.Join(notes, ","))
		b.WriteString(strings.TrimRight(line, " \n") + "\n")
	}

	if !r.cfg.ANSI {
		b.WriteString("\n")
		fmt.Fprint(r.out, b.String())
		return
	}
	for _, e := range r.events {
		b.WriteString(e)
		b.WriteString("\n")
	}
	// Autowrap is off while drawing (DECAWM), so a line wider than the
	// terminal is cut rather than wrapped and every line takes exactly one
	// row: the cursor-up count below stays right on narrow terminals.
	var frame strings.Builder
	frame.WriteString("\x1b[?7l")
	if r.drawn > 0 {
		fmt.Fprintf(&frame, "\x1b[%dA\x1b[J", r.drawn)
	}
	// Autowrap comes back on before the last newline, so the output's
	// lines still begin with their text.
	frame.WriteString(strings.TrimSuffix(b.String(), "\n"))
	frame.WriteString("\x1b[?7h\n")
	fmt.Fprint(r.out, frame.String())
	r.drawn = strings.Count(b.String(), "\n")
}

// remember records the director's latest statistics for each member it
// lists, so that a member dropped from the list keeps its final numbers in
// the table and the summary, and returns them by URL.
func (r *runner) remember(ms []balance.EndpointStats) map[string]balance.EndpointStats {
	byURL := make(map[string]balance.EndpointStats, len(ms))
	for _, m := range ms {
		byURL[m.Member.URL] = m
		r.lastSeen[m.Member.URL] = m
	}
	return byURL
}
