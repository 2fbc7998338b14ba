package frontend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/smartclient/smartclient/director"
)

// DefaultBannerTimeout bounds connecting to a member and reading its banner.
const DefaultBannerTimeout = 5 * time.Second

// DefaultPort is the SSH port of a member URL without one.
const DefaultPort = 22

// Config tunes Open. The zero value of each field means its default.
type Config struct {
	// BannerTimeout bounds the probe of one member: the TCP connect plus
	// reading its identification. Default DefaultBannerTimeout.
	BannerTimeout time.Duration
	// Dial opens the probe's connection. Default: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logf, if set, is told which member was chosen and why, and why each
	// failed attempt failed. It must not block for long.
	Logf func(format string, args ...any)
}

// Validate reports a field outside its range.
func (c Config) Validate() error {
	if c.BannerTimeout < 0 {
		return fmt.Errorf("frontend: BannerTimeout %v must be >= 0", c.BannerTimeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.BannerTimeout == 0 {
		c.BannerTimeout = DefaultBannerTimeout
	}
	if c.Dial == nil {
		c.Dial = (&net.Dialer{}).DialContext
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

// Target is the member a session is opened on.
type Target struct {
	URL  string // the member, ssh://HOST[:PORT]
	Host string // HOST, without brackets for IPv6
	Port int
}

// Addr is HOST:PORT.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// Outcome is how a session ended.
type Outcome struct {
	// Status is the exit status to hand on: the remote command's, ssh's own
	// (255 for its errors), or 128+N if ssh was killed by signal N.
	Status int
	// Started reports that the session got past authentication, so the
	// remote side may have run something: such a session is never retried.
	Started bool
}

// Session runs the user's session on a member. Run blocks until the
// session ends; it returns an error only when the session could not be run
// at all (the client program is missing), never for the remote side's exit
// status. It should end the session early when ctx ends.
type Session interface {
	Run(ctx context.Context, t Target) (Outcome, error)
}

// Result is the session that ran.
type Result struct {
	Target  Target
	Banner  Banner
	Outcome Outcome
}

// ErrNotStarted is the cause of an attempt whose session failed before it
// started (ssh exited 255 before authentication completed).
var ErrNotStarted = errors.New("ssh exited 255 before the session started")

// ParseMember checks a member URL, ssh://HOST[:PORT], and returns it in
// canonical form (lower-case host, no default port, no trailing slash), so
// that the same server given twice is one member.
func ParseMember(s string) (string, error) {
	errAbs := errors.New("must be ssh://HOST or ssh://HOST:PORT, like ssh://10.0.0.1:22")
	u, err := url.Parse(s)
	switch {
	case err != nil || !strings.EqualFold(u.Scheme, "ssh") || u.Opaque != "":
		return "", errAbs
	case u.User != nil:
		return "", errors.New("user information is not allowed in a member URL: give -l USER")
	case u.Hostname() == "" || strings.HasSuffix(u.Host, ":"):
		return "", errAbs
	case strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return "", errors.New("an ssh member URL takes no path, query or fragment")
	case strings.ContainsAny(s, " ;,"):
		return "", errors.New("a member URL may not contain white space, ';' or ','")
	}
	host := strings.ToLower(u.Hostname())
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("port %q must be in 1..65535", p)
		}
		if n != DefaultPort {
			return "ssh://" + net.JoinHostPort(host, strconv.Itoa(n)), nil
		}
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return "ssh://" + host, nil
}

// TargetOf splits a canonical member URL into host and port.
func TargetOf(member string) (Target, error) {
	u, err := url.Parse(member)
	if err != nil || u.Scheme != "ssh" || u.Hostname() == "" {
		return Target{}, fmt.Errorf("frontend: member %q is not ssh://HOST[:PORT]", member)
	}
	t := Target{URL: member, Host: u.Hostname(), Port: DefaultPort}
	if p := u.Port(); p != "" {
		if t.Port, err = strconv.Atoi(p); err != nil {
			return Target{}, fmt.Errorf("frontend: member %q: bad port", member)
		}
	}
	return t, nil
}

// Probe connects to t and reads its SSH identification within cfg's
// BannerTimeout. Every error is classed NotReached: the member did not get
// to see any request.
func Probe(ctx context.Context, cfg Config, t Target) (Banner, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.BannerTimeout)
	defer cancel()
	conn, err := cfg.Dial(ctx, "tcp", t.Addr())
	if err != nil {
		return Banner{}, director.WithClass(err, director.NotReached)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) }) // caller gave up
	defer stop()
	b, err := ReadBanner(conn)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("no SSH banner within %v: %w", cfg.BannerTimeout, err)
		}
		return Banner{}, director.WithClass(fmt.Errorf("%s: %w", t.Addr(), err), director.NotReached)
	}
	return b, nil
}

// Classify turns a session's outcome into the attempt's error: nil for a
// session that ran (whatever its status), NotReached for one that failed
// before it started, Permanent when the client could not be run (another
// member would not help).
func Classify(o Outcome, err error) error {
	switch {
	case err != nil:
		return director.WithClass(err, director.Permanent)
	case o.Status == 255 && !o.Started:
		return director.WithClass(ErrNotStarted, director.NotReached)
	}
	return nil
}

// Open runs s on a member chosen by d: the director's policy ranks the
// members (least-loaded: by the load their agents report), the probe
// proves a live sshd, and a member that fails before the session starts is
// left for the next one. The caller polls the members' load first (d.Poll)
// if it wants a fresh picture. It returns the session that ran, or the
// director's *director.Error listing every attempt.
func Open(ctx context.Context, d *director.Director, cfg Config, s Session) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	cfg = cfg.withDefaults()
	var res Result
	err := d.Do(ctx, &director.Call{
		Do: func(ctx context.Context, a *director.Attempt) error {
			t, err := TargetOf(a.Member.URL)
			if err != nil {
				return director.WithClass(err, director.Permanent)
			}
			b, err := Probe(ctx, cfg, t)
			if err != nil {
				return err
			}
			cfg.Logf("chose %s (load %s, policy %s; members %s): %s", t.URL, loadOf(d, t.URL), d.Policy(), Loads(d), b)
			o, err := s.Run(ctx, t)
			if err := Classify(o, err); err != nil {
				return err
			}
			res = Result{Target: t, Banner: b, Outcome: o}
			return nil
		},
		OnCleanup: func(a *director.Attempt, err error) {
			cfg.Logf("%s: attempt %d failed (%s): %v", a.Member.URL, a.Number, director.Classify(err), err)
		},
	})
	if err != nil {
		err = withUntried(d, err)
	}
	return res, err
}

// withUntried adds to a failed Open's error the members it never
// attempted and why (draining: the agent reports sshd unhealthy or
// drained; ejected: recent failures), so the message accounts for every
// member. The *director.Error stays reachable with errors.As.
func withUntried(d *director.Director, err error) error {
	var de *director.Error
	if !errors.As(err, &de) {
		return err
	}
	tried := map[string]bool{}
	for _, a := range de.Attempts {
		tried[a.Member] = true
	}
	var untried []string
	for _, st := range d.Balancer().Stats(d.Now()) {
		if !tried[st.Member.URL] {
			untried = append(untried, st.Member.URL+" ("+st.State.String()+")")
		}
	}
	if len(untried) == 0 {
		return err
	}
	return fmt.Errorf("%w; not tried: %s", err, strings.Join(untried, ", "))
}

// loadOf is one member's load as Loads shows it.
func loadOf(d *director.Director, member string) string {
	now := d.Now()
	for _, e := range d.Balancer().Endpoints() {
		if e.Member.URL == member {
			if u := e.ReportedUtil(now); u >= 0 {
				return strconv.FormatFloat(u, 'f', 2, 64)
			}
		}
	}
	return "?"
}

// Loads lists every member with the load its agent last reported (the
// utilisation least-loaded ranks by), lowest first and "?" last for members
// without a fresh report: "ssh://a=0.10 ssh://b=0.50 ssh://c=?".
func Loads(d *director.Director) string {
	now := d.Now()
	type ml struct {
		url   string
		load  float64
		known bool
	}
	var ms []ml
	for _, e := range d.Balancer().Endpoints() {
		u := e.ReportedUtil(now)
		ms = append(ms, ml{e.Member.URL, u, u >= 0})
	}
	sort.SliceStable(ms, func(i, j int) bool {
		if ms[i].known != ms[j].known {
			return ms[i].known
		}
		return ms[i].load < ms[j].load
	})
	parts := make([]string, len(ms))
	for i, m := range ms {
		v := "?"
		if m.known {
			v = strconv.FormatFloat(m.load, 'f', 2, 64)
		}
		parts[i] = m.url + "=" + v
	}
	return strings.Join(parts, " ")
}
