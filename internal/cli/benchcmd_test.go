package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The suite itself is tested in package bench; here, the command line.
func TestBenchCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"--contenders", "direct,fastest"}, `unknown contender "fastest"; want one of direct, smartclient-random`},
		{[]string{"--scenarios", "nope"}, `unknown scenario "nope"; want one of slow-member`},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var o, e bytes.Buffer
		code := report("bench", runBench(context.Background(), tc.args, &o, &e), &o, &e)
		if code != ExitUsage || !strings.Contains(e.String(), tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q; want %d and %q", tc.args, code, e.String(), ExitUsage, tc.want)
		}
	}
	var o, e bytes.Buffer
	if code := report("bench", runBench(context.Background(), []string{"-h"}, &o, &e), &o, &e); code != ExitOK ||
		!strings.Contains(o.String(), "usage: smartclient bench") || !strings.Contains(o.String(), "-quick") {
		t.Errorf("bench -h: exit %d, stdout %q", code, o.String())
	}
	// The member process refuses a bad spec with a clear message.
	err := runBench(context.Background(), []string{"member", "--spec", `[{"concurrency":-1}]`}, &o, &e)
	if err == nil || !strings.Contains(err.Error(), "concurrency -1") {
		t.Errorf("bench member with a bad spec: %v", err)
	}
}
