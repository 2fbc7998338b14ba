package cli

import (
	"encoding/json"
	"net/http"

	"github.com/smartclient/smartclient/director"
)

// StatsJSON is the body of GET /_smartclient/stats.
type StatsJSON struct {
	Policy          string       `json:"policy"`
	Requests        uint64       `json:"requests"`
	Failed          uint64       `json:"failed"`
	Retries         uint64       `json:"retries"`
	Hedges          uint64       `json:"hedges"`
	BudgetDenied    uint64       `json:"budget_denied"`
	BudgetTokens    float64      `json:"budget_tokens"`
	BadReports      uint64       `json:"bad_reports"`
	LearnedMembers  uint64       `json:"learned_members"`
	RejectedMembers uint64       `json:"rejected_members"`
	Epoch           uint64       `json:"epoch"`
	Panic           bool         `json:"panic"`
	ProxyInFlight   int64        `json:"proxy_in_flight"`
	Members         []MemberJSON `json:"members"`
}

// MemberJSON is one member in StatsJSON.
type MemberJSON struct {
	URL           string    `json:"url"`
	Zone          string    `json:"zone,omitempty"`
	Weight        float64   `json:"weight,omitempty"`
	State         string    `json:"state"`
	Picks         uint64    `json:"picks"`
	InFlight      int64     `json:"in_flight"`
	EWMALatencyMS float64   `json:"ewma_latency_ms"`
	Successes     uint64    `json:"successes"`
	Failures      uint64    `json:"failures"`
	Ejections     int       `json:"ejections"`
	LastLoad      *LoadJSON `json:"last_load"` // null until the member has reported
}

// LoadJSON is a member's last load report.
type LoadJSON struct {
	TimeMillis int64   `json:"time_ms"`
	InFlight   int     `json:"in_flight"`
	Capacity   int     `json:"capacity"`
	Util       float64 `json:"util"`
	State      string  `json:"state"`
	Epoch      uint64  `json:"epoch"`
}

// NewStatsJSON converts director statistics for the stats endpoint.
func NewStatsJSON(st director.Stats) StatsJSON {
	out := StatsJSON{
		Policy:          st.Policy,
		Requests:        st.Requests,
		Failed:          st.Failed,
		Retries:         st.Retries,
		Hedges:          st.Hedges,
		BudgetDenied:    st.BudgetDenied,
		BudgetTokens:    st.BudgetTokens,
		BadReports:      st.BadReports,
		LearnedMembers:  st.LearnedMembers,
		RejectedMembers: st.RejectedMembers,
		Epoch:           st.Epoch,
		Panic:           st.Panic,
		Members:         make([]MemberJSON, 0, len(st.Members)),
	}
	for _, m := range st.Members {
		mj := MemberJSON{
			URL:           m.Member.URL,
			Zone:          m.Member.Zone,
			Weight:        m.Member.Weight,
			State:         m.State.String(),
			Picks:         m.Picks,
			InFlight:      m.InFlight,
			EWMALatencyMS: m.CostNanos / 1e6,
			Successes:     m.Successes,
			Failures:      m.Failures,
			Ejections:     m.Ejections,
		}
		if l := m.LastLoad; l.TimeMillis != 0 {
			mj.LastLoad = &LoadJSON{
				TimeMillis: l.TimeMillis, InFlight: l.InFlight, Capacity: l.Capacity,
				Util: l.Util, State: l.State.String(), Epoch: l.Epoch,
			}
		}
		out.Members = append(out.Members, mj)
	}
	return out
}

func (p *Proxy) serveStats(w http.ResponseWriter, r *http.Request) {
	s := NewStatsJSON(p.dir.Stats())
	s.ProxyInFlight = p.inFlight.Load()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s)
}
