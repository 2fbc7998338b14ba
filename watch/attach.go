package watch

import (
	"net/url"
	"sync/atomic"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/wire"
)

// Feed counts what Attach applied to a director.
type Feed struct {
	Learned  atomic.Uint64 // members records applied
	Rejected atomic.Uint64 // members records refused: learning off, AcceptMembers or SetMembers said no
	Stale    atomic.Uint64 // members records not newer than the director's epoch
	Loads    atomic.Uint64 // load records applied
	Unknown  atomic.Uint64 // load records for a URL that is not a member
}

// Attach makes w feed d: members records are vetted exactly like records
// piggy-backed on replies (applied only if d's Config.LearnMembers is set,
// only if newer than d's epoch, and only if Config.AcceptMembers, when
// set, accepts them), and load records go to the member with that URL. A
// load event without a URL is the load of the member serving the stream,
// taken to be w.URL's scheme and host ("http://10.0.0.1:8080").
//
// Attach replaces w.OnMembers and w.OnLoad; the new hooks apply the
// record, then call the previous hooks. Call it before w.Run.
//
// The director's own LearnedMembers/RejectedMembers statistics count only
// piggy-backed records; director has no exported method that applies a
// record with its vetting, so Attach repeats that vetting here and counts
// in Feed.
func Attach(d *director.Director, w *Watcher) *Feed {
	f := &Feed{}
	selfURL := ""
	if u, err := url.Parse(w.URL); err == nil && u.Scheme != "" && u.Host != "" {
		selfURL = u.Scheme + "://" + u.Host
	}
	prevM, prevL := w.OnMembers, w.OnLoad
	w.OnMembers = func(m wire.Members) {
		f.applyMembers(d, m)
		if prevM != nil {
			prevM(m)
		}
	}
	w.OnLoad = func(u string, l wire.Load) {
		self := u
		if self == "" {
			self = selfURL
		}
		f.applyLoad(d, self, l)
		if prevL != nil {
			prevL(u, l)
		}
	}
	return f
}

func (f *Feed) applyMembers(d *director.Director, m wire.Members) {
	cfg := d.Config()
	bal := d.Balancer()
	if !cfg.LearnMembers {
		f.Rejected.Add(1)
		return
	}
	if m.Epoch <= bal.Epoch() {
		f.Stale.Add(1)
		return
	}
	if cfg.AcceptMembers != nil {
		if err := cfg.AcceptMembers(m); err != nil {
			f.Rejected.Add(1)
			return
		}
	}
	ms := make([]balance.Member, len(m.Members))
	for i, x := range m.Members {
		ms[i] = balance.Member{URL: x.URL, Weight: x.Weight, Zone: x.Zone}
	}
	ok, err := bal.SetMembers(m.Epoch, ms)
	switch {
	case err != nil:
		f.Rejected.Add(1)
	case ok:
		f.Learned.Add(1)
	default:
		f.Stale.Add(1) // a newer epoch arrived meanwhile
	}
}

func (f *Feed) applyLoad(d *director.Director, u string, l wire.Load) {
	for _, e := range d.Balancer().Endpoints() {
		if e.Member.URL == u {
			d.Balancer().Report(e, d.Now(), l)
			f.Loads.Add(1)
			return
		}
	}
	f.Unknown.Add(1)
}
