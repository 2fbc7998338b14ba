package cli

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
)

// Collector exports a director's statistics to Prometheus. It reads
// director.Stats at scrape time, so the request path pays nothing for
// metrics and members learned or dropped since the last scrape simply
// appear or disappear.
type Collector struct {
	stats func() director.Stats

	info, requests, failed, retries, hedges, budgetDenied *prometheus.Desc
	badReports, learned, rejected, tokens, epoch, panic   *prometheus.Desc

	picks, successes, failures, ejections, inFlight, ewma *prometheus.Desc
	state, reportedInFlight, reportedUtil                 *prometheus.Desc
}

// memberStates are the values of the member state label, one series each,
// so that a dashboard can sum members by state.
var memberStates = []balance.State{balance.Healthy, balance.Probing, balance.Ejected, balance.Draining}

// NewCollector returns a collector for d.
func NewCollector(d *director.Director) *Collector {
	return newCollector(d.Stats)
}

func newCollector(stats func() director.Stats) *Collector {
	g := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("smartclient_"+name, help, labels, nil)
	}
	m := func(name, help string, labels ...string) *prometheus.Desc {
		return g("member_"+name, help, append([]string{"member"}, labels...)...)
	}
	return &Collector{
		stats:        stats,
		info:         g("director_info", "Always 1; the policy label names the selection policy.", "policy"),
		requests:     g("requests_total", "Requests applied through the director."),
		failed:       g("failed_requests_total", "Requests that failed on every attempt allowed."),
		retries:      g("retries_total", "Attempts after the first, hedges excluded."),
		hedges:       g("hedges_total", "Hedged attempts."),
		budgetDenied: g("budget_denied_total", "Retries or hedges refused by the retry budget."),
		badReports:   g("bad_reports_total", "Load or membership records that could not be parsed."),
		learned:      g("membership_records_learned_total", "Membership records applied from replies."),
		rejected:     g("membership_records_rejected_total", "Membership records refused."),
		tokens:       g("retry_budget_tokens", "Tokens left in the retry budget."),
		epoch:        g("membership_epoch", "Epoch of the member list in use."),
		panic:        g("panic", "1 when too few members are eligible and ejections are ignored."),

		picks:            m("picks_total", "Attempts sent to the member."),
		successes:        m("successes_total", "Attempts the member answered."),
		failures:         m("failures_total", "Attempts that failed at the member."),
		ejections:        m("ejections_total", "Times the member was ejected."),
		inFlight:         m("in_flight", "Attempts outstanding at the member from this director."),
		ewma:             m("ewma_latency_seconds", "Peak-EWMA latency estimate of the member."),
		state:            m("state", "1 for the member's current state, 0 for the others.", "state"),
		reportedInFlight: m("reported_in_flight", "In-flight requests the member last reported (all clients)."),
		reportedUtil:     m("reported_utilization", "Utilisation the member last reported."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.info, c.requests, c.failed, c.retries, c.hedges, c.budgetDenied,
		c.badReports, c.learned, c.rejected, c.tokens, c.epoch, c.panic,
		c.picks, c.successes, c.failures, c.ejections, c.inFlight, c.ewma,
		c.state, c.reportedInFlight, c.reportedUtil,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.info, 1, st.Policy)
	counter(c.requests, st.Requests)
	counter(c.failed, st.Failed)
	counter(c.retries, st.Retries)
	counter(c.hedges, st.Hedges)
	counter(c.budgetDenied, st.BudgetDenied)
	counter(c.badReports, st.BadReports)
	counter(c.learned, st.LearnedMembers)
	counter(c.rejected, st.RejectedMembers)
	gauge(c.tokens, st.BudgetTokens)
	gauge(c.epoch, float64(st.Epoch))
	gauge(c.panic, b2f(st.Panic))
	for _, m := range st.Members {
		u := m.Member.URL
		counter(c.picks, m.Picks, u)
		counter(c.successes, m.Successes, u)
		counter(c.failures, m.Failures, u)
		counter(c.ejections, uint64(m.Ejections), u)
		gauge(c.inFlight, float64(m.InFlight), u)
		gauge(c.ewma, m.CostNanos/1e9, u)
		for _, s := range memberStates {
			gauge(c.state, b2f(m.State == s), u, s.String())
		}
		if m.LastLoad.TimeMillis != 0 {
			gauge(c.reportedInFlight, float64(m.LastLoad.InFlight), u)
			gauge(c.reportedUtil, m.LastLoad.Util, u)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
