package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/balance/policy"
)

// usageError is a bad command line: the command prints it on one line and
// exits with status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// newFlagSet returns a flag set that reports errors instead of printing
// them, so that every bad command line gets the same one-line message.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args into fs and refuses positional arguments. It
// returns flag.ErrHelp unchanged for -h.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// memberList is the repeatable --member flag. It only collects the values:
// members checks them after parsing, so that the message names the flag
// once instead of nesting it in the flag package's "invalid value" text.
type memberList []string

func (m *memberList) String() string {
	if m == nil {
		return ""
	}
	return strings.Join(*m, ",")
}

func (m *memberList) Set(s string) error {
	*m = append(*m, s)
	return nil
}

// members checks every member URL and refuses duplicates.
func (m memberList) members() ([]balance.Member, error) {
	out := make([]balance.Member, 0, len(m))
	first := make(map[string]string, len(m))
	for _, raw := range m {
		u, err := ParseMemberURL(raw)
		if err != nil {
			return nil, usagef("--member %q: %v", raw, err)
		}
		if prev, ok := first[u]; ok {
			return nil, usagef("--member %q: duplicate member, same as %q", raw, prev)
		}
		first[u] = raw
		out = append(out, balance.Member{URL: u})
	}
	return out, nil
}

// ParseMemberURL checks a member's base URL and returns it in canonical
// form: lower-case scheme and host, no trailing slash. Canonical form
// matters because members are identified by URL, so "http://A:80/" and
// "http://a:80" must not become two members, and membership records learned
// from replies (which carry canonical URLs) must match configured members.
func ParseMemberURL(s string) (string, error) {
	errAbs := errors.New("must be an absolute http:// or https:// URL with a host, like http://127.0.0.1:8081")
	u, err := url.Parse(s)
	if err != nil {
		return "", errAbs
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https", u.Opaque != "":
		return "", errAbs
	case u.Hostname() == "" || strings.HasSuffix(u.Host, ":"):
		return "", errAbs
	case u.User != nil:
		return "", errors.New("user information is not allowed in a member URL")
	case u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return "", errors.New("a member URL takes no query or fragment")
	case strings.ContainsAny(s, " ;,"):
		// Membership records use these as separators.
		return "", errors.New("a member URL may not contain white space, ';' or ','")
	}
	path := strings.TrimRight(u.EscapedPath(), "/")
	return scheme + "://" + strings.ToLower(u.Host) + path, nil
}

// checkPolicy checks a policy name against policy.Names.
func checkPolicy(name string) error {
	if _, err := policy.New(name); err != nil {
		return usagef("unknown policy %q; valid policies: %s (and locality:INNER)", name, strings.Join(policy.Names(), ", "))
	}
	return nil
}
