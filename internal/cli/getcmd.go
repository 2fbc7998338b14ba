package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
	"github.com/smartclient/smartclient/bootstrap"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/download"
	"github.com/smartclient/smartclient/smarthttp"
)

const getUsage = `usage: smartclient get --member URL [--member URL ...] [flags] PATH
       smartclient get --service service://NAME --root URL --trust KEY.pub [flags] PATH

Downloads PATH (e.g. /pub/file.iso) from a group of mirrors (http://,
https:// or anonymous ftp:// base URLs, mixed as you like): the file
is fetched in chunks, each from the mirror the director picks, in
parallel; a chunk that fails part-way is resumed from where it broke off
on another mirror. Up to --quorum mirrors are first asked which version
of the file they serve (size and ETag or Last-Modified; over FTP, SIZE
and MDTM): the version most of them report is downloaded, and a mirror
serving another (a stale one) is never used for data. The file appears under its
name (-o, default the last element of PATH) only once complete (and
checked with --sha256); a failed download leaves nothing behind. Prints one
'summary:' line. Exit status 0 on success, 1 if the download failed, 2 for
a bad command line. SIZE takes a suffix K, M or G (powers of 1024).
`

// getConfig is what `smartclient get` runs.
type getConfig struct {
	path     string
	out      string
	members  []balance.Member
	dir      director.Config
	service  *bootstrap.Config
	download download.Config
}

func parseGetFlags(args []string) (getConfig, error) {
	var (
		cfg            getConfig
		members        memberList
		svc            serviceFlags
		chunk, maxSize string
	)
	fs := newFlagSet("get")
	fs.Var(&members, "member", "mirror base URL, http://, https:// or ftp://, e.g. http://10.0.0.1:8080 (repeat for each mirror)")
	svc.register(fs)
	fs.StringVar(&cfg.out, "o", "", "file to write (default: the last element of PATH, in the current directory)")
	fs.StringVar(&cfg.dir.Policy, "policy", policy.Default, "selection policy: "+strings.Join(policy.Names(), ", "))
	fs.IntVar(&cfg.dir.MaxAttempts, "max-attempts", 3, "attempts per chunk before the download gives up if none made progress, first included")
	fs.DurationVar(&cfg.dir.AttemptTimeout, "attempt-timeout", 0, "move a chunk to another mirror after this long, keeping what arrived (0: none)")
	fs.StringVar(&chunk, "chunk", "1M", "chunk size: the unit each mirror is asked for")
	fs.IntVar(&cfg.download.Parallel, "parallel", download.DefaultParallel, "chunks in flight at once, 1.."+strconv.Itoa(download.MaxParallel))
	fs.StringVar(&cfg.download.SHA256, "sha256", "", "expected SHA-256 of the whole file, hex; checked before the file is moved into place")
	fs.StringVar(&maxSize, "max-size", "0", "refuse a file larger than SIZE (0: no limit)")
	fs.IntVar(&cfg.download.Quorum, "quorum", download.DefaultQuorum, "ask this many mirrors for the file's version first and download the one most report, 1.."+strconv.Itoa(download.MaxQuorum)+" (1: the first reply decides)")
	fs.DurationVar(&cfg.download.QuorumWait, "quorum-wait", download.DefaultQuorumWait, "start with the answers received after this long, if the mirrors asked have not agreed by then")
	pos, err := splitArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return cfg, helpError{fs: fs, usage: getUsage}
	}
	if err != nil {
		return cfg, err
	}
	if len(pos) != 1 {
		return cfg, usagef("want exactly one PATH to download, got %d arguments", len(pos))
	}
	cfg.path = pos[0]
	if !strings.HasPrefix(cfg.path, "/") {
		return cfg, usagef("PATH %q: must start with /", cfg.path)
	}
	if cfg.out == "" {
		p, _, _ := strings.Cut(cfg.path, "?")
		base := path.Base(p)
		if strings.HasSuffix(p, "/") || base == "/" || base == "." || base == ".." {
			return cfg, usagef("PATH %q names no file: give -o FILE", cfg.path)
		}
		cfg.out = base
	}
	if cfg.download.ChunkSize, err = parseSize(chunk); err != nil || cfg.download.ChunkSize < 1 {
		return cfg, usagef("--chunk %q: want a size such as 1M or 262144, at least 1 byte", chunk)
	}
	if cfg.download.MaxSize, err = parseSize(maxSize); err != nil {
		return cfg, usagef("--max-size %q: want a size such as 4G, or 0 for no limit", maxSize)
	}
	if p := cfg.download.Parallel; p < 1 || p > download.MaxParallel {
		return cfg, usagef("--parallel %d: must be in 1..%d", p, download.MaxParallel)
	}
	if q := cfg.download.Quorum; q < 1 || q > download.MaxQuorum {
		return cfg, usagef("--quorum %d: must be in 1..%d", q, download.MaxQuorum)
	}
	if w := cfg.download.QuorumWait; w <= 0 || w > download.MaxQuorumWait {
		return cfg, usagef("--quorum-wait %v: must be in 1ns..%v", w, download.MaxQuorumWait)
	}
	if err := cfg.download.Validate(); err != nil {
		return cfg, usagef("%v", strings.TrimPrefix(err.Error(), "download: "))
	}
	ms, err := mirrors(members)
	if err != nil {
		return cfg, err
	}
	switch {
	case svc.name != "" && len(ms) > 0:
		return cfg, usagef("give either --service or --member, not both")
	case svc.name != "":
		bc, err := svc.config()
		if err != nil {
			return cfg, err
		}
		cfg.service = &bc
		leaveToCertificate(fs, &cfg.dir)
	case len(ms) == 0:
		return cfg, usagef("no mirrors: give at least one --member http://HOST:PORT or --service service://NAME")
	}
	cfg.members = ms
	if err := checkPolicy(cfg.dir.Policy); err != nil {
		return cfg, err
	}
	if a := cfg.dir.MaxAttempts; a < 0 || a > 100 || a == 0 && cfg.service == nil {
		return cfg, usagef("--max-attempts %d: must be in 1..100", a)
	}
	if cfg.dir.AttemptTimeout < 0 {
		return cfg, usagef("--attempt-timeout %v: must be >= 0", cfg.dir.AttemptTimeout)
	}
	return cfg, nil
}

// mirrors checks every --member of `get`, which unlike the proxy's may
// also be ftp://HOST[:PORT][/PREFIX], and refuses duplicates.
func mirrors(raw memberList) ([]balance.Member, error) {
	out := make([]balance.Member, 0, len(raw))
	first := make(map[string]string, len(raw))
	for _, r := range raw {
		u, err := parseMirrorURL(r)
		if err != nil {
			return nil, usagef("--member %q: %v", r, err)
		}
		if prev, ok := first[u]; ok {
			return nil, usagef("--member %q: duplicate mirror, same as %q", r, prev)
		}
		first[u] = r
		out = append(out, balance.Member{URL: u})
	}
	return out, nil
}

// parseMirrorURL is ParseMemberURL extended to anonymous FTP mirrors.
func parseMirrorURL(s string) (string, error) {
	if !strings.HasPrefix(strings.ToLower(s), "ftp://") {
		u, err := ParseMemberURL(s)
		if err != nil {
			return "", errors.New(strings.Replace(err.Error(), "http:// or https://", "http://, https:// or ftp://", 1))
		}
		return u, nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Hostname() == "" || strings.HasSuffix(u.Host, ":"):
		return "", errors.New("must be an absolute URL with a host, like ftp://10.0.0.1:21/pub")
	case u.User != nil:
		return "", errors.New("user information is not allowed: FTP mirrors are read anonymously")
	case u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return "", errors.New("a mirror URL takes no query or fragment")
	case strings.ContainsAny(s, " ;,"):
		return "", errors.New("a mirror URL may not contain white space, ';' or ','")
	}
	return "ftp://" + strings.ToLower(u.Host) + strings.TrimRight(u.EscapedPath(), "/"), nil
}

// parseSize reads a byte count: digits with an optional K, M or G suffix
// (powers of 1024; KiB, MiB, GiB and KB, MB, GB mean the same).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	shift := 0
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			shift = 10
		case 'M':
			shift = 20
		case 'G':
			shift = 30
		}
		if shift > 0 {
			t = t[:len(t)-1]
		}
	}
	if t == "" || strings.TrimLeft(t, "0123456789") != "" {
		return 0, fmt.Errorf("size %q: want digits with an optional K, M or G", s)
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n > (1<<62)>>shift {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n << shift, nil
}

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseGetFlags(args)
	if err != nil {
		return err
	}
	logger := log.New(stderr, "smartclient get: ", 0)
	base := smarthttp.NewBaseTransport()
	base.MaxIdleConnsPerHost = cfg.download.Parallel
	var rt http.RoundTripper = base
	var d *director.Director
	if cfg.service != nil {
		bc := *cfg.service
		bc.Director = cfg.dir
		bc.Logf = logger.Printf
		c, err := bootstrap.Open(ctx, bc)
		if err != nil {
			return err
		}
		defer c.Close()
		d = c.Director
		// The certificate's member key pins are checked on every handshake.
		if rt, err = smarthttp.PinTLS(base, c.Pins()); err != nil {
			return err
		}
	} else {
		if d, err = director.New(cfg.dir, cfg.members); err != nil {
			return usagef("%v", err)
		}
		defer d.Close()
	}
	cfg.download.Client = &http.Client{Transport: rt}
	cfg.download.Logf = logger.Printf
	res, err := download.Get(ctx, d, cfg.path, cfg.out, cfg.download)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, getSummary(cfg.out, res))
	return nil
}

// getSummary is the one line printed after a download.
func getSummary(out string, r download.Result) string {
	secs := r.Elapsed.Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(r.Size) / secs / 1e6
	}
	var ms []string
	for _, m := range r.Mirrors {
		s := m.URL + "=" + strconv.FormatInt(m.Bytes, 10)
		if m.Failures > 0 {
			s += "(" + strconv.Itoa(m.Failures) + " failed)"
		}
		ms = append(ms, s)
	}
	line := fmt.Sprintf("summary: file=%s bytes=%d seconds=%.3f mb_per_s=%.2f fetched=%d retries=%d mirrors=%s",
		out, r.Size, secs, rate, r.Fetched, r.Retries, strings.Join(ms, ","))
	if len(r.Stale) > 0 {
		line += " stale=" + strings.Join(r.Stale, ",")
	}
	return line
}
