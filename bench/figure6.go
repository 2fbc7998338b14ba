package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smartclient/smartclient/balance"
	"github.com/smartclient/smartclient/director"
	"github.com/smartclient/smartclient/download"
	"github.com/smartclient/smartclient/smarthttp"
)

// The seed paper's Figure 6: FTP servers on a switched 10 Mb/s Ethernet,
// clients repeatedly fetching a 512 KB file through a director that picks
// a server at random. Its text gives three numbers: one server saturates at
// 1.2 MB/s with 8 clients; 16 clients get about 2 MB/s from two servers and
// about 3 MB/s from four.
const fig6Link = 1.25e6 // bytes/s: 10 Mb/s

// paperFigure6 are the points the paper's text states, in MB/s.
var paperFigure6 = []Fig6Point{
	{Downloader: "paper", Servers: 1, Clients: 8, MBps: 1.2},
	{Downloader: "paper", Servers: 2, Clients: 16, MBps: 2.0},
	{Downloader: "paper", Servers: 4, Clients: 16, MBps: 3.0},
}

// Figure 6's downloaders.
const (
	// DownloaderRandom is the paper's applet: each download goes whole to
	// a member chosen at random.
	DownloaderRandom = "random-whole-file"
	// DownloaderRanges is ours: the file is fetched as ranges, several at
	// once, each through a p2c director, so that fast members take more of
	// it and no member idles while another has a queue.
	DownloaderRanges = "p2c-ranges"
)

// Fig6Point is the aggregate bandwidth clients got from servers.
type Fig6Point struct {
	Downloader string  `json:"downloader"`
	Servers    int     `json:"servers"`
	Clients    int     `json:"clients"`
	MBps       float64 `json:"mb_per_s"` // 10^6 bytes per second
	Errors     int     `json:"errors,omitempty"`
}

// Figure6Result is the experiment's outcome.
type Figure6Result struct {
	Status   string      `json:"status"`
	LinkMBps float64     `json:"link_mb_per_s"`
	WindowS  float64     `json:"window_s"`
	Points   []Fig6Point `json:"points"`
	Paper    []Fig6Point `json:"paper"`
}

func (f *Figure6Result) point(dl string, servers, clients int) *Fig6Point {
	for i := range f.Points {
		p := &f.Points[i]
		if p.Downloader == dl && p.Servers == servers && p.Clients == clients {
			return p
		}
	}
	return nil
}

func runFigure6(ctx context.Context, cfg *Config) (*Figure6Result, error) {
	servers := []int{1, 2, 4}
	clients := []int{1, 4, 8, 16}
	warm, window := 300*time.Millisecond, time.Second
	if cfg.Quick {
		servers, clients = []int{1, 4}, []int{1, 16}
		warm, window = 150*time.Millisecond, 300*time.Millisecond
	}
	res := &Figure6Result{Status: "ok", LinkMBps: fig6Link / 1e6, WindowS: window.Seconds(), Paper: paperFigure6}
	// The paper's FTP server allowed 16 simultaneous retrievals.
	spec := MemberSpec{Concurrency: 16, Bandwidth: fig6Link}
	for _, s := range servers {
		specs := make([]MemberSpec, s)
		for i := range specs {
			specs[i] = spec
		}
		ms, err := startMembers(ctx, cfg, specs, cfg.Seed)
		if err != nil {
			return res, err
		}
		for _, c := range clients {
			for _, dl := range []string{DownloaderRandom, DownloaderRanges} {
				p, err := fig6Point(ctx, ms, dl, c, warm, window)
				if err != nil {
					ms.stop()
					return res, err
				}
				res.Points = append(res.Points, p)
				progress(cfg, "%-15s %-25s servers %d clients %2d: %.2f MB/s", ScenarioFigure6, dl, s, c, p.MBps)
			}
		}
		ms.stop()
	}
	return res, nil
}

// fig6Point runs n clients, each with its own director, downloading the
// file over and over; it counts the bytes that arrive during the window.
func fig6Point(ctx context.Context, ms *members, dl string, n int, warm, window time.Duration) (Fig6Point, error) {
	pt := Fig6Point{Downloader: dl, Servers: len(ms.urls), Clients: n}
	cfg := director.Config{Policy: "random"}
	if dl == DownloaderRanges {
		cfg.Policy = "p2c"
	}
	mem := make([]balance.Member, len(ms.urls))
	for i, u := range ms.urls {
		mem[i] = balance.Member{URL: u}
	}
	dir, err := os.MkdirTemp("", "smartclient-figure6-")
	if err != nil {
		return pt, err
	}
	defer os.RemoveAll(dir)
	var bytes atomic.Int64
	var errs atomic.Int64
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		d, err := director.New(cfg, mem)
		if err != nil {
			return pt, err
		}
		tr := smarthttp.NewTransport(d, nil)
		client := &http.Client{Transport: tr}
		// Our downloader is package download itself, as `smartclient get`
		// runs it, writing each copy into a file of its own.
		plain := smarthttp.NewBaseTransport()
		dlCfg := download.Config{
			ChunkSize: 64 << 10, Parallel: 4,
			Client:   &http.Client{Transport: plain},
			Progress: func(_ string, k int) { bytes.Add(int64(k)) },
		}
		dst := filepath.Join(dir, fmt.Sprintf("client-%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer d.Close()
			defer tr.CloseIdleConnections()
			defer plain.CloseIdleConnections()
			for runCtx.Err() == nil {
				var err error
				if dl == DownloaderRanges {
					_, err = download.Get(runCtx, d, filePath, dst, dlCfg)
				} else {
					err = downloadWhole(runCtx, client, "http://service"+filePath, &bytes)
				}
				if err != nil && runCtx.Err() == nil {
					errs.Add(1)
				}
			}
		}()
	}
	t := time.NewTimer(warm)
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b0 := bytes.Load()
	t.Reset(window)
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b1 := bytes.Load()
	cancel()
	wg.Wait()
	pt.MBps = float64(b1-b0) / window.Seconds() / 1e6
	pt.Errors = int(errs.Load())
	return pt, ctx.Err()
}

// countingReader adds every byte read to n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

func downloadWhole(ctx context.Context, c *http.Client, url string, n *atomic.Int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	_, err = io.Copy(io.Discard, countingReader{resp.Body, n})
	return err
}

func (f *Figure6Result) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "#### %s\n\n", ScenarioFigure6)
	if f.Status != "ok" {
		fmt.Fprintf(w, "Not completed: %s\n\n", f.Status)
	}
	fmt.Fprintf(w, "Aggregate MB/s (10^6 B/s) delivered to N clients, each with its own director, fetching a 512 KiB file over and over from servers whose links carry %.2f MB/s each (the paper's 10 Mb/s Ethernet) and serve at most 16 at once; %.1f s per point.\n\n", f.LinkMBps, f.WindowS)
	var servers, clients []int
	for _, p := range f.Points {
		if !containsInt(servers, p.Servers) {
			servers = append(servers, p.Servers)
		}
		if !containsInt(clients, p.Clients) {
			clients = append(clients, p.Clients)
		}
	}
	fmt.Fprint(w, "| downloader | servers |")
	for _, c := range clients {
		fmt.Fprintf(w, " %d clients |", c)
	}
	fmt.Fprint(w, "\n|---|---|")
	for range clients {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	for _, dl := range []string{DownloaderRandom, DownloaderRanges} {
		for _, s := range servers {
			fmt.Fprintf(w, "| %s | %d |", dl, s)
			for _, c := range clients {
				if p := f.point(dl, s, c); p != nil {
					fmt.Fprintf(w, " %.2f |", p.MBps)
				} else {
					fmt.Fprint(w, " — |")
				}
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w, "\nAgainst the numbers the paper's text gives (ratio = ours / paper; link share = MB/s over the servers' combined link rate):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| servers | clients | paper MB/s (share) | "+DownloaderRandom+" MB/s (ratio, share) | "+DownloaderRanges+" MB/s (ratio, share) |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, pp := range f.Paper {
		link := float64(pp.Servers) * f.LinkMBps
		fmt.Fprintf(w, "| %d | %d | %.1f (%.0f%%) |", pp.Servers, pp.Clients, pp.MBps, 100*pp.MBps/link)
		for _, dl := range []string{DownloaderRandom, DownloaderRanges} {
			if p := f.point(dl, pp.Servers, pp.Clients); p != nil {
				fmt.Fprintf(w, " %.2f (%.2f, %.0f%%) |", p.MBps, p.MBps/pp.MBps, 100*p.MBps/link)
			} else {
				fmt.Fprint(w, " not run |")
			}
		}
		fmt.Fprintln(w)
	}
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
