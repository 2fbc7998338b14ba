package download

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
)

// answer is one mirror's reply to "which version do you serve?".
type answer struct {
	mirror string
	m      meta
	ftp    bool // the version came from SIZE and MDTM
}

// accepts reports whether a reply with a's size and validators passes the
// checks every reply is held to when m is the version (nil), or why not
// (wrapping ErrVersion). An unknown size (-1, a whole-file reply without
// Content-Length) is not compared.
func (m *meta) accepts(a answer) error {
	if a.ftp {
		return m.sameFTPVersion(a.m.size, a.m.mtime)
	}
	if a.m.size >= 0 && a.m.size != m.size {
		return fmt.Errorf("%w: size %d, want %d", ErrVersion, a.m.size, m.size)
	}
	return m.sameValidators(a.m.etag, a.m.modified)
}

func (m *meta) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "size %d", m.size)
	if m.etag != "" {
		fmt.Fprintf(&b, ", ETag %s", m.etag)
	}
	if m.modified != "" {
		fmt.Fprintf(&b, ", modified %s", m.modified)
	}
	return b.String()
}

// votes is, for each answer, how many answers its version accepts (itself
// included).
func votes(as []answer) []int {
	n := make([]int, len(as))
	for i := range as {
		for _, b := range as {
			if as[i].m.accepts(b) == nil {
				n[i]++
			}
		}
	}
	return n
}

// majority reports whether more than half of asked mirrors agree among
// the answers: the decision cannot change whatever the others say.
func majority(as []answer, asked int) bool {
	for _, n := range votes(as) {
		if 2*n > asked {
			return true
		}
	}
	return false
}

// decide picks the version from the answers: the one that most answers
// accept. A tie between versions that do not accept each other goes to
// the strictly newest modification time, since a lagging mirror serves an
// older file, never a newer one; if the dates are missing or equal,
// nothing tells which is right and decide fails with ErrDisagree naming
// the versions and their mirrors. It returns the index of the chosen
// answer, which is the earliest of its version; answers is not empty.
func decide(as []answer) (int, error) {
	n := votes(as)
	best := 0
	for i := range as {
		if n[i] > n[best] {
			best = i
		}
	}
	var tied []int // versions with best's votes that best refuses
	for i := range as {
		if n[i] == n[best] && as[best].m.accepts(as[i]) != nil {
			tied = append(tied, i)
		}
	}
	if len(tied) == 0 {
		return best, nil
	}
	newest := best
	unique := true
	for _, i := range tied {
		if as[newest].m.accepts(as[i]) == nil {
			continue // another answer of the newest version so far
		}
		t, nt := as[i].m.mtime, as[newest].m.mtime
		switch {
		case t.IsZero() || nt.IsZero():
			return -1, disagreement(as, append([]int{best}, tied...))
		case t.After(nt):
			newest, unique = i, true
		case t.Equal(nt):
			unique = false
		}
	}
	if !unique {
		return -1, disagreement(as, append([]int{best}, tied...))
	}
	return newest, nil
}

// disagreement describes the tied versions (as[i] for i in tied) with the
// mirrors that report each.
func disagreement(as []answer, tied []int) error {
	var parts []string
	var listed []int
	for _, i := range tied {
		if slices.ContainsFunc(listed, func(j int) bool { return as[j].m.accepts(as[i]) == nil }) {
			continue
		}
		listed = append(listed, i)
		var ms []string
		for _, b := range as {
			if as[i].m.accepts(b) == nil {
				ms = append(ms, b.mirror)
			}
		}
		sort.Strings(ms)
		parts = append(parts, fmt.Sprintf("%s from %s", as[i].m.String(), strings.Join(ms, ", ")))
	}
	return fmt.Errorf("%w: %s", ErrDisagree, strings.Join(parts, "; "))
}

// agree asks up to Config.Quorum mirrors (see pickMirrors) which version of the file they serve, and sets g.want to the version
// decide chooses. It returns once more than half of those asked agree, all
// have answered or Config.QuorumWait has passed on the Clock, so a
// black-holed mirror delays the start by QuorumWait at most. Mirrors
// reporting another version are marked stale. With Quorum 1, a single
// mirror, or no answer in time, g.want stays nil and the first reply
// decides, as it did before; a stale mirror that is the only one to answer
// is thus the version.
func (g *getter) agree(ctx context.Context) error {
	if g.cfg.Quorum <= 1 {
		return nil
	}
	mirrors := g.pickMirrors(g.cfg.Quorum)
	if len(mirrors) <= 1 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the questions still open
	replies := make(chan result, len(mirrors))
	for _, u := range mirrors {
		go func() {
			a, err := g.ask(ctx, u)
			replies <- result{a, err}
		}()
	}
	timeout := make(chan struct{})
	t := g.cfg.Clock.AfterFunc(g.cfg.QuorumWait, func() { close(timeout) })
	defer t.Stop()
	var as []answer
wait:
	for range mirrors {
		select {
		case r := <-replies:
			if r.err != nil {
				g.cfg.Logf("download %s: asking for the version: %v", g.path, r.err)
				continue
			}
			as = append(as, r.a)
			if majority(as, len(mirrors)) {
				break wait
			}
		case <-timeout:
			g.cfg.Logf("download %s: %d of %d mirrors asked for the version answered within %v", g.path, len(as), len(mirrors), g.cfg.QuorumWait)
			break wait
		case <-ctx.Done():
			return fmt.Errorf("download %s: asking for the version: %w", g.path, context.Cause(ctx))
		}
	}
	if len(as) == 0 {
		g.cfg.Logf("download %s: no mirror told its version: the first reply decides", g.path)
		return nil
	}
	i, err := decide(as)
	if err != nil {
		return fmt.Errorf("download %s: %w", g.path, err)
	}
	want := as[i].m
	g.want = &want
	for _, a := range as {
		if err := want.accepts(a); err != nil {
			g.markStale(a.mirror)
			g.cfg.Logf("download %s: %s is stale: %v (%d of %d mirrors asked agree on %s)", g.path, a.mirror, err, votes(as)[i], len(mirrors), want.String())
		}
	}
	return nil
}

type result struct {
	a   answer
	err error
}

// pickMirrors returns up to k distinct mirrors among those the director
// may pick (ejected members are left out), in the members' order. Picking
// them through the policy would disturb its state (a round-robin's turn)
// for a question whose answer does not depend on speed.
func (g *getter) pickMirrors(k int) []string {
	var urls []string
	for _, e := range g.d.Balancer().Snapshot().Endpoints {
		if len(urls) == k {
			break
		}
		if !slices.Contains(urls, e.Member.URL) {
			urls = append(urls, e.Member.URL)
		}
	}
	return urls
}

func (g *getter) markStale(mirror string) {
	g.mu.Lock()
	g.stale[mirror] = true
	g.mu.Unlock()
}

// wanted checks the first reply's version m against the agreed one.
func (g *getter) wanted(m meta, ftp bool) error {
	if g.want == nil {
		return nil
	}
	return g.want.accepts(answer{m: m, ftp: ftp})
}

// ask asks one mirror for the file's size and validators: SIZE and MDTM
// over FTP, a GET of byte 0 over HTTP (the reply a chunk gets, validators
// included; a mirror ignoring the range has its whole-file reply closed
// unread).
func (g *getter) ask(ctx context.Context, mirror string) (answer, error) {
	a := answer{mirror: mirror}
	fail := func(err error) (answer, error) {
		return a, &MirrorError{Mirror: mirror, From: 0, To: 1, Err: err}
	}
	if strings.HasPrefix(mirror, "ftp://") {
		fc, err := ftpOpen(ctx, mirror, g.path)
		if fc != nil {
			fc.close()
		}
		if err != nil {
			return fail(err.(*ftpError).err)
		}
		a.m, a.ftp = ftpMeta(fc.size, fc.mtime), true
		return a, nil
	}
	u, err := joinURL(mirror, g.path)
	if err != nil {
		return fail(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("Range", rangeHeader(0, 1))
	resp, err := g.cfg.Client.Do(req)
	if err != nil {
		return fail(err)
	}
	resp.Body.Close()
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fail(fmt.Errorf("%w: Content-Encoding %s", ErrBadRange, quote(ce)))
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr, err := ParseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || cr.Total < 0 || cr.Unsatisfied() {
			return fail(fmt.Errorf("%w: Content-Range %q tells no size", ErrBadRange, resp.Header.Get("Content-Range")))
		}
		a.m = httpMeta(cr.Total, resp.Header)
	case http.StatusOK:
		a.m = httpMeta(resp.ContentLength, resp.Header)
	case http.StatusRequestedRangeNotSatisfiable:
		cr, err := ParseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || !cr.Unsatisfied() || cr.Total != 0 {
			return fail(fmt.Errorf("%w %d", ErrStatus, resp.StatusCode))
		}
		a.m = httpMeta(0, resp.Header)
	default:
		return fail(fmt.Errorf("%w %d", ErrStatus, resp.StatusCode))
	}
	return a, nil
}
