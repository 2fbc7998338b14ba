package agent

import (
	"context"
	"fmt"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/smarthttp"
	"github.com/smartclient/smartclient/wire"
)

// Poller is a director.LoadPoller for members that cannot report their own
// load: it asks each member's agent instead. smarthttp.LoadPoller asks the
// member's own URL, which for an unmodified server is the server, not the
// agent beside it; Poller maps the member to its agent and lets
// smarthttp.LoadPoller do the rest, so the record is read and vetted the
// same way.
type Poller struct {
	// Agents maps a member URL to the base URL of its agent, e.g.
	// "http://10.0.0.1:80" → "http://10.0.0.1:9100". Set it before use
	// and leave it alone after.
	Agents map[string]string
	// Poll reads the agent's load record. Its Path defaults to LoadPath.
	Poll smarthttp.LoadPoller
}

var _ director.LoadPoller = (*Poller)(nil)

// PollLoad implements director.LoadPoller. A member without an agent is an
// error, which the director counts as a failed poll.
func (p *Poller) PollLoad(ctx context.Context, m balance.Member) (wire.Load, error) {
	a, ok := p.Agents[m.URL]
	if !ok {
		return wire.Load{}, fmt.Errorf("agent: no agent known for member %s", m.URL)
	}
	lp := p.Poll
	if lp.Path == "" {
		lp.Path = LoadPath
	}
	return lp.PollLoad(ctx, balance.Member{URL: a, Weight: m.Weight, Zone: m.Zone})
}
