package download

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/smartclient/smartclient/clock"
)

// Defaults of Config's fields.
const (
	DefaultChunkSize = 1 << 20 // 1 MiB
	DefaultParallel  = 4
	// MaxParallel bounds Config.Parallel.
	MaxParallel = 64
	// DefaultQuorum mirrors are asked which version of the file they serve.
	DefaultQuorum = 3
	// MaxQuorum bounds Config.Quorum.
	MaxQuorum = 16
	// DefaultQuorumWait bounds the wait for their answers.
	DefaultQuorumWait = 2 * time.Second
	// MaxQuorumWait bounds Config.QuorumWait.
	MaxQuorumWait = time.Minute
	// bufSize is the copy buffer of one attempt: memory in use is about
	// Parallel × bufSize whatever the file size.
	bufSize = 64 << 10
)

// Config tunes a download. The zero value of each field means the default
// given beside it.
type Config struct {
	// ChunkSize is the size of the byte ranges fetched separately, each
	// through the director on a mirror of its choosing. Default 1 MiB;
	// valid 1 B .. 1 GiB.
	ChunkSize int64
	// Parallel is how many chunks are in flight at once. Default 4; valid
	// 1..MaxParallel.
	Parallel int
	// SHA256, if set, is the expected digest of the whole file in hex (64
	// digits, any case). The downloaded file is read back and checked
	// before it is moved to dst.
	SHA256 string
	// MaxSize refuses a file larger than this many bytes, before anything
	// is written. Default 0: no limit.
	MaxSize int64
	// Client sends the requests. Default: a client of its own with up to
	// Parallel idle connections per mirror and no overall timeout (the
	// caller's context and the director's AttemptTimeout bound the work).
	// Requests ask for Accept-Encoding: identity, so byte offsets are
	// offsets in the file.
	Client *http.Client
	// Quorum is how many mirrors (all of them if fewer) are asked for the
	// file's size and validator before the download starts; the version
	// most of them report is the one every reply, the first included, is
	// held to, and the others are refused as stale. Default 3; valid
	// 1..MaxQuorum; 1: no question, the first reply decides (the old
	// behaviour, which a stale mirror answering first wins).
	Quorum int
	// QuorumWait bounds the wait for those answers: the version is decided
	// as soon as more than half of the mirrors asked agree, else when all
	// have answered or the wait ends, with whatever answered. Default 2 s;
	// valid 0..MaxQuorumWait.
	QuorumWait time.Duration
	// Clock times the download for Result.Elapsed and the QuorumWait.
	// Default clock.Real.
	Clock clock.Clock
	// Progress, if set, is called after every write to the file with the
	// mirror the bytes came from and their number: for a progress display.
	// It may be called from several goroutines at once and must not block.
	Progress func(mirror string, n int)
	// Logf, if set, receives one line for each failed attempt and each
	// resumption. It must not block for long; it may be called from
	// several goroutines at once.
	Logf func(format string, args ...any)
}

// Validate reports the first field outside its range.
func (c Config) Validate() error {
	switch {
	case c.ChunkSize < 0 || c.ChunkSize > 1<<30:
		return fmt.Errorf("download: ChunkSize %d must be in 1..%d (0: default %d)", c.ChunkSize, 1<<30, DefaultChunkSize)
	case c.Parallel < 0 || c.Parallel > MaxParallel:
		return fmt.Errorf("download: Parallel %d must be in 1..%d (0: default %d)", c.Parallel, MaxParallel, DefaultParallel)
	case c.Quorum < 0 || c.Quorum > MaxQuorum:
		return fmt.Errorf("download: Quorum %d must be in 1..%d (0: default %d)", c.Quorum, MaxQuorum, DefaultQuorum)
	case c.QuorumWait < 0 || c.QuorumWait > MaxQuorumWait:
		return fmt.Errorf("download: QuorumWait %v must be in 1ns..%v (0: default %v)", c.QuorumWait, MaxQuorumWait, DefaultQuorumWait)
	case c.MaxSize < 0:
		return fmt.Errorf("download: MaxSize %d must be >= 0 (0: no limit)", c.MaxSize)
	}
	if c.SHA256 != "" {
		if b, err := hex.DecodeString(c.SHA256); err != nil || len(b) != 32 {
			return fmt.Errorf("download: SHA256 %s must be 64 hexadecimal digits", quote(c.SHA256))
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.Parallel == 0 {
		c.Parallel = DefaultParallel
	}
	if c.Quorum == 0 {
		c.Quorum = DefaultQuorum
	}
	if c.QuorumWait == 0 {
		c.QuorumWait = DefaultQuorumWait
	}
	if c.Client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = c.Parallel
		c.Client = &http.Client{Transport: t}
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}
