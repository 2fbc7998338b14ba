package balance

import (
	"fmt"
	"math"
	"time"
)

// HealthConfig tunes passive failure detection (outlier ejection). The zero
// value of each field means the default given beside it.
type HealthConfig struct {
	// ConsecutiveFailures ejects a member after this many failed attempts in
	// a row. Default 3; a request that could not even connect counts as a
	// failure, so a crashed member is gone after three refused connections.
	ConsecutiveFailures int
	// FailureRate ejects a member whose share of failed attempts in the
	// current window reaches this fraction. Default 0.5; range (0, 1].
	FailureRate float64
	// MinRequests is the number of attempts a window needs before
	// FailureRate is applied. Default 10.
	MinRequests int
	// Window is the length of the failure-rate window. Default 10s.
	Window time.Duration
	// BaseEjection is the first ejection's length; each further ejection
	// without a success in between doubles it. Default 500ms.
	BaseEjection time.Duration
	// MaxEjection caps the ejection length. Default 30s.
	MaxEjection time.Duration
	// Jitter spreads ejection lengths by up to this fraction either way, so
	// that many directors do not readmit a member at the same instant.
	// Default 0.2; range [0, 1).
	Jitter float64
	// PanicThreshold: when fewer than this fraction of members are eligible,
	// the director ignores ejections and spreads work over every member,
	// since failing everything is worse than trying members that look dead.
	// Default 0.5; a negative value disables panic mode, except that when no
	// member at all is eligible every member is used (and Snapshot.Panic set).
	PanicThreshold float64
}

// DefaultHealthConfig returns the defaults documented on HealthConfig.
func DefaultHealthConfig() HealthConfig {
	return HealthConfig{}.withDefaults()
}

func (c HealthConfig) withDefaults() HealthConfig {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = 3
	}
	if c.FailureRate == 0 {
		c.FailureRate = 0.5
	}
	if c.MinRequests == 0 {
		c.MinRequests = 10
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
	}
	if c.BaseEjection == 0 {
		c.BaseEjection = 500 * time.Millisecond
	}
	if c.MaxEjection == 0 {
		c.MaxEjection = 30 * time.Second
	}
	if c.Jitter == 0 {
		c.Jitter = 0.2
	}
	if c.PanicThreshold == 0 {
		c.PanicThreshold = 0.5
	}
	return c
}

// Validate reports the first field outside its range.
func (c HealthConfig) Validate() error {
	switch {
	case c.ConsecutiveFailures < 0:
		return fmt.Errorf("health: ConsecutiveFailures %d must be >= 0", c.ConsecutiveFailures)
	case c.FailureRate < 0 || c.FailureRate > 1 || math.IsNaN(c.FailureRate):
		return fmt.Errorf("health: FailureRate %v must be in (0, 1]", c.FailureRate)
	case c.MinRequests < 0:
		return fmt.Errorf("health: MinRequests %d must be >= 0", c.MinRequests)
	case c.Window < 0, c.BaseEjection < 0, c.MaxEjection < 0:
		return fmt.Errorf("health: Window, BaseEjection and MaxEjection must be >= 0")
	case c.MaxEjection != 0 && c.BaseEjection > c.MaxEjection:
		return fmt.Errorf("health: BaseEjection %v exceeds MaxEjection %v", c.BaseEjection, c.MaxEjection)
	case c.Jitter < 0 || c.Jitter >= 1 || math.IsNaN(c.Jitter):
		return fmt.Errorf("health: Jitter %v must be in [0, 1)", c.Jitter)
	case c.PanicThreshold > 1 || math.IsNaN(c.PanicThreshold):
		return fmt.Errorf("health: PanicThreshold %v must be <= 1", c.PanicThreshold)
	}
	return nil
}

// health is one member's failure-detector state. It is a pure state machine:
// every transition takes the time and, where jitter is needed, a Rand.
type health struct {
	state       State
	consecutive int
	ejections   int   // ejections since the last success; sets the backoff
	until       int64 // end of the current ejection
	windowStart int64
	winOK       int
	winFail     int
	total       int // ejections ever, for stats
}

// result records one attempt's outcome and reports whether the member's
// eligibility changed.
func (h *health) result(now int64, ok bool, c *HealthConfig, r Rand) bool {
	if d := int64(c.Window); now-h.windowStart >= d {
		h.windowStart, h.winOK, h.winFail = now, 0, 0
	}
	if ok {
		h.consecutive = 0
		h.winOK++
		// A success while ejected (in panic mode, or an attempt that began
		// before the ejection) does not readmit: the ejection runs its course.
		if h.state == Probing {
			h.state = Healthy
			h.ejections = 0
			return true
		}
		return false
	}
	h.consecutive++
	h.winFail++
	switch h.state {
	case Probing:
		h.eject(now, c, r)
		return true
	case Healthy:
		n := h.winOK + h.winFail
		if h.consecutive >= c.ConsecutiveFailures ||
			(n >= c.MinRequests && float64(h.winFail) >= c.FailureRate*float64(n)) {
			h.eject(now, c, r)
			return true
		}
	}
	return false
}

func (h *health) eject(now int64, c *HealthConfig, r Rand) {
	d := float64(c.BaseEjection) * math.Pow(2, float64(h.ejections))
	d = math.Min(d, float64(c.MaxEjection))
	d *= 1 + c.Jitter*(2*float01(r)-1)
	h.state = Ejected
	h.until = now + int64(d)
	h.ejections++
	h.total++
	h.consecutive = 0
	h.windowStart, h.winOK, h.winFail = now, 0, 0
}

// expire moves an ejected member whose ejection has ended to Probing and
// reports whether it did.
func (h *health) expire(now int64) bool {
	if h.state == Ejected && now >= h.until {
		h.state = Probing
		return true
	}
	return false
}

// probeResult applies an active probe's outcome to an ejected member whose
// ejection has ended: success readmits it, failure ejects it for longer.
func (h *health) probeResult(now int64, ok bool, c *HealthConfig, r Rand) bool {
	if h.state != Ejected && h.state != Probing {
		return false
	}
	if ok {
		h.state = Healthy
		h.ejections = 0
		h.consecutive = 0
		return true
	}
	h.eject(now, c, r)
	return true
}
