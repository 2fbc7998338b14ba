package download

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smartclient/smartclient/clock"
)

func httpAnswer(mirror string, size int64, etag string, mod time.Time) answer {
	m := meta{size: size, etag: etag, mtime: mod}
	if !mod.IsZero() {
		m.modified = mod.UTC().Format(http.TimeFormat)
	}
	return answer{mirror: mirror, m: m}
}

func ftpAnswer(mirror string, size int64, mod time.Time) answer {
	return answer{mirror: mirror, m: ftpMeta(size, mod), ftp: true}
}

func TestDecide(t *testing.T) {
	t1, t2 := time.Unix(1700000000, 0), time.Unix(1700000100, 0)
	for _, tc := range []struct {
		name    string
		answers []answer
		want    string // the chosen answer's mirror, or "" for ErrDisagree
	}{
		{"alone", []answer{httpAnswer("a", 10, `"v2"`, t1)}, "a"},
		{"majority over first", []answer{httpAnswer("stale", 10, `"v1"`, t1), httpAnswer("b", 10, `"v2"`, t1), httpAnswer("c", 10, `"v2"`, t1)}, "b"},
		{"size differs", []answer{httpAnswer("stale", 9, "", t1), httpAnswer("b", 10, "", t1), httpAnswer("c", 10, "", t1)}, "b"},
		{"no validators: size decides", []answer{httpAnswer("a", 10, "", time.Time{}), httpAnswer("b", 11, "", time.Time{}), httpAnswer("c", 11, "", time.Time{})}, "b"},
		{"FTP and HTTP agree by date", []answer{ftpAnswer("stale", 10, t1), ftpAnswer("b", 10, t2), httpAnswer("c", 10, `"x"`, t2)}, "b"},
		{"tie: newest", []answer{httpAnswer("old", 10, `"v1"`, t1), httpAnswer("new", 10, `"v2"`, t2)}, "new"},
		{"tie: newest FTP", []answer{ftpAnswer("old", 10, t1), ftpAnswer("new", 12, t2)}, "new"},
		{"two against two: newest", []answer{httpAnswer("a", 10, `"v1"`, t1), httpAnswer("b", 10, `"v1"`, t1), httpAnswer("c", 10, `"v2"`, t2), httpAnswer("d", 10, `"v2"`, t2)}, "c"},
		{"three versions, two newest", []answer{httpAnswer("a", 10, `"v1"`, t1), httpAnswer("b", 10, `"v2"`, t2), httpAnswer("c", 10, `"v3"`, t2)}, ""},
		{"tie, same date", []answer{httpAnswer("a", 10, `"v1"`, t1), httpAnswer("b", 10, `"v2"`, t1)}, ""},
		{"tie, no date", []answer{httpAnswer("a", 10, `"v1"`, time.Time{}), httpAnswer("b", 10, `"v2"`, time.Time{})}, ""},
		{"tie, one dated", []answer{httpAnswer("a", 10, `"v1"`, time.Time{}), httpAnswer("b", 10, `"v2"`, t2)}, ""},
		{"same version twice, one other", []answer{httpAnswer("a", 10, `"v1"`, t1), httpAnswer("b", 10, `"v1"`, t1)}, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i, err := decide(tc.answers)
			switch {
			case tc.want == "":
				if !errors.Is(err, ErrDisagree) {
					t.Fatalf("got %d, %v; want ErrDisagree", i, err)
				}
				for _, a := range tc.answers {
					if !strings.Contains(err.Error(), a.mirror) {
						t.Errorf("%v does not name %s", err, a.mirror)
					}
				}
			case err != nil:
				t.Fatal(err)
			case tc.answers[i].mirror != tc.want:
				t.Fatalf("chose %s, want %s", tc.answers[i].mirror, tc.want)
			}
		})
	}
}

// TestStaleFirst: the stale mirror (other content, ETag and date) is the
// one round robin asks first. With the default quorum the two good ones
// outvote it: the file is theirs and the stale mirror, named in the
// result, sent nothing. With Quorum 1 the first reply decides, as before:
// the stale file is downloaded and the good mirrors are refused.
func TestStaleFirst(t *testing.T) {
	data, old := randomBytes(1<<20, 60), randomBytes(1<<20, 61)
	for _, tc := range []struct {
		quorum int
		want   []byte
	}{{0, data}, {1, old}} {
		t.Run(fmt.Sprint("quorum ", tc.quorum), func(t *testing.T) {
			stale := newMirror(old, `"v1"`)
			stale.modtime = time.Unix(1600000000, 0)
			urls := []string{serve(t, stale), serve(t, newMirror(data, `"v2"`)), serve(t, newMirror(data, `"v2"`))}
			var logs logBuf
			dst := filepath.Join(t.TempDir(), "file")
			res, err := Get(t.Context(), newDirector(t, "round-robin", urls...), "/file", dst,
				Config{ChunkSize: 64 << 10, Parallel: 2, Quorum: tc.quorum, Logf: logs.logf})
			if err != nil {
				t.Fatal(err)
			}
			checkFile(t, dst, tc.want)
			if tc.quorum == 1 {
				return
			}
			if st := bytesFrom(res, urls[0]); st.Bytes != 0 || fmt.Sprint(res.Stale) != fmt.Sprint(urls[:1]) || res.Validator != `"v2"` {
				t.Fatalf("stale mirror %+v; result %+v", st, res)
			}
			// Named when asked, or on its first attempt if the good two
			// agreed before its answer came.
			if l := logs.String(); !strings.Contains(l, urls[0]+" is stale") && !strings.Contains(l, urls[0]+" bytes 0-65535: mirror serves a different version") {
				t.Errorf("log does not name the stale mirror:\n%s", logs.String())
			}
		})
	}
}

// TestQuorumTie: two mirrors, two versions of the same date: nothing
// tells which is right, and Get says so, naming both.
func TestQuorumTie(t *testing.T) {
	urls := []string{serve(t, newMirror(randomBytes(1000, 62), `"v1"`)), serve(t, newMirror(randomBytes(1000, 63), `"v2"`))}
	dir := t.TempDir()
	_, err := Get(t.Context(), newDirector(t, "round-robin", urls...), "/file", filepath.Join(dir, "file"), Config{})
	if !errors.Is(err, ErrDisagree) || !strings.Contains(err.Error(), urls[0]) || !strings.Contains(err.Error(), urls[1]) {
		t.Fatalf("error %v", err)
	}
	onlyFiles(t, dir)
}

// TestBlackHoleAsked: one of the three mirrors asked never answers the
// question. The two others are a majority, so the download starts without
// waiting: the fake clock is never advanced.
func TestBlackHoleAsked(t *testing.T) {
	data := randomBytes(300<<10, 64)
	hole := newMirror(data, `"v1"`)
	hole.askHang = true
	urls := []string{serve(t, hole), serve(t, newMirror(data, `"v1"`)), serve(t, newMirror(data, `"v1"`))}
	dst := filepath.Join(t.TempDir(), "file")
	clk := clock.NewFake(time.Unix(0, 0))
	res, err := Get(t.Context(), newDirector(t, "round-robin", urls...), "/file", dst, Config{ChunkSize: 64 << 10, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	// The hole may not even have seen the question when the others agreed.
	if res.Elapsed != 0 || hole.asked.Load() > 1 || len(res.Stale) != 0 {
		t.Fatalf("result %+v, black hole asked %d times", res, hole.asked.Load())
	}
}

// TestQuorumWait: two of the three mirrors asked never answer; no
// majority can form, so the download starts when QuorumWait has passed on
// the clock, not before.
func TestQuorumWait(t *testing.T) {
	data := randomBytes(300<<10, 65)
	good := newMirror(data, `"v1"`)
	var holes []*mirror
	urls := []string{serve(t, good)}
	for range 2 {
		h := newMirror(data, `"v1"`)
		h.askHang = true
		holes = append(holes, h)
		urls = append(urls, serve(t, h))
	}
	dst := filepath.Join(t.TempDir(), "file")
	clk := clock.NewFake(time.Unix(0, 0))
	type out struct {
		res Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := Get(t.Context(), newDirector(t, "round-robin", urls...), "/file", dst, Config{ChunkSize: 64 << 10, Clock: clk, QuorumWait: time.Second})
		done <- out{res, err}
	}()
	// The fake clock says nothing when a timer is armed: poll on a ticker
	// until the wait is armed and every mirror was asked, with a deadline.
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for clk.Pending() == 0 || good.asked.Load() == 0 || holes[0].asked.Load() == 0 || holes[1].asked.Load() == 0 {
		select {
		case <-deadline:
			t.Fatal("the mirrors were not asked")
		case <-tick.C:
		}
	}
	select {
	case o := <-done:
		t.Fatalf("started before the wait ended: %+v, %v", o.res, o.err)
	default:
	}
	clk.Advance(time.Second)
	select {
	case o := <-done:
		if o.err != nil {
			t.Fatal(o.err)
		}
		checkFile(t, dst, data)
		if o.res.Elapsed != time.Second {
			t.Fatalf("elapsed %v", o.res.Elapsed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no start after the wait")
	}
}

// logBuf collects Logf lines.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	fmt.Fprintf(&l.b, format+"\n", args...)
	l.mu.Unlock()
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
