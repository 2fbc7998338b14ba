package failsuite

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	imagedraw "image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Results is what results.json holds: how the suite was run and every
// scenario's report.
type Results struct {
	Started   time.Time `json:"started"`
	Seconds   float64   `json:"seconds"`
	GoVersion string    `json:"go_version"`
	CPUs      int       `json:"cpus"`
	Race      bool      `json:"race"` // the client ran under the race detector
	Load      LoadSpec  `json:"load"`
	// Faults says how each scenario's fault is made.
	Faults  []FaultInfo `json:"faults"`
	Reports []Report    `json:"reports"`
}

// FaultInfo describes one scenario for results.json.
type FaultInfo struct {
	Scenario    string  `json:"scenario"`
	Mechanism   string  `json:"mechanism"`
	GapTargetMS float64 `json:"gap_target_ms,omitempty"`
}

// WriteJSON writes v, indented, to path (its directory is created), through
// a temporary file renamed into place, so a crash never leaves half a file.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'))
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename this fails harmlessly
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// Panel is one scenario's data for the plot.
type Panel struct {
	Title   string
	Records []Record
	Phases  Phases
	Report  Report
}

// Plot bounds: latency on a log axis from 0.1 ms to 3 s; a request that took
// longer is drawn at the top.
const (
	plotMinMS = 0.1
	plotMaxMS = 3000
)

var (
	shade   = color.RGBA{R: 255, G: 205, B: 150, A: 255}
	okDot   = color.RGBA{R: 30, G: 90, B: 180, A: 255}
	failDot = color.RGBA{R: 220, G: 20, B: 20, A: 255}
	gapLine = color.RGBA{R: 0, G: 150, B: 60, A: 255}
)

// WritePlot draws the panels in a grid of cols columns — each one latency
// over time with the fault window shaded, the paper's Figure 8 — and writes
// it to path as PNG.
func WritePlot(path, title string, panels []Panel, cols int) error {
	if len(panels) == 0 {
		return fmt.Errorf("failsuite: nothing to plot")
	}
	cols = max(1, min(cols, len(panels)))
	rows := (len(panels) + cols - 1) / cols
	const tileW, tileH = 3.6 * vg.Inch, 2.3 * vg.Inch
	head := 0.45 * vg.Inch
	w, h := tileW*vg.Length(cols), tileH*vg.Length(rows)+head
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(72), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)

	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: 4, PadY: 4, PadTop: head, PadBottom: 2, PadLeft: 2, PadRight: 6}
	for i, pn := range panels {
		p, err := panelPlot(pn)
		if err != nil {
			return err
		}
		p.Draw(tiles.At(dc, i%cols, i/cols))
	}
	// The figure's title, in the space above the tiles.
	ts := plot.New().Title.TextStyle
	ts.Font.Size = 12
	ts.XAlign = draw.XCenter
	dc.FillText(ts, vg.Point{X: w / 2, Y: h - head/2}, title)
	// A paletted image is a fraction of the size of an RGBA one, which
	// matters for a figure kept in the repository.
	src := img.Image()
	pal := image.NewPaletted(src.Bounds(), figurePalette())
	imagedraw.Draw(pal, pal.Rect, src, src.Bounds().Min, imagedraw.Src)
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, pal); err != nil {
		return err
	}
	return writeFile(path, buf.Bytes())
}

func panelPlot(pn Panel) (*plot.Plot, error) {
	p := plot.New()
	r := pn.Report
	p.Title.Text = fmt.Sprintf("%s: failed %d, gap %.0f ms, worst %.0f ms", pn.Title, r.Failed, r.GapMS, r.WorstMS)
	p.Title.TextStyle.Font.Size = 9
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "latency (ms)"
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font.Size = 8
		a.Tick.Label.Font.Size = 7
	}
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = plotMinMS, plotMaxMS

	ph := pn.Phases
	x0, x1 := ph.Begin.Seconds(), ph.End.Seconds()
	fs, fe := ph.FaultStart.Seconds(), ph.FaultEnd.Seconds()
	win, err := plotter.NewPolygon(plotter.XYs{{X: fs, Y: plotMinMS}, {X: fe, Y: plotMinMS}, {X: fe, Y: plotMaxMS}, {X: fs, Y: plotMaxMS}})
	if err != nil {
		return nil, err
	}
	win.Color, win.LineStyle.Width = shade, 0
	p.Add(win)

	var ok, bad plotter.XYs
	var last time.Duration
	for _, rec := range pn.Records {
		if rec.Start < ph.Begin || rec.Start >= ph.End {
			continue
		}
		last = max(last, rec.End)
		lat := math.Min(math.Max(ms(rec.Latency()), plotMinMS), plotMaxMS)
		pt := plotter.XY{X: rec.Start.Seconds(), Y: lat}
		if rec.Outcome == OK {
			ok = append(ok, pt)
		} else {
			bad = append(bad, pt)
		}
	}
	for _, s := range []struct {
		xy    plotter.XYs
		c     color.Color
		shape draw.GlyphDrawer
		r     vg.Length
	}{{ok, okDot, draw.CircleGlyph{}, 0.9}, {bad, failDot, draw.CrossGlyph{}, 2.5}} {
		if len(s.xy) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(s.xy)
		if err != nil {
			return nil, err
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: s.c, Radius: s.r, Shape: s.shape}
		p.Add(sc)
	}
	// The failover gap: a bar at the top from where it began, as long as it
	// lasted.
	if r.GapMS > 0 {
		g, err := plotter.NewLine(plotter.XYs{{X: r.GapAtS, Y: plotMaxMS * 0.6}, {X: r.GapAtS + r.GapMS/1000, Y: plotMaxMS * 0.6}})
		if err != nil {
			return nil, err
		}
		g.LineStyle = draw.LineStyle{Color: gapLine, Width: 3}
		p.Add(g)
	}
	p.X.Min, p.X.Max = x0, math.Max(x1, last.Seconds())
	return p, nil
}

// WriteResults writes results.json, table.md (Table) and, for each mode
// that ran, a figure: figure8.png for the library, figure8-proxy.png for
// the proxy.
func WriteResults(dir string, started time.Time, load LoadSpec, rs []Result) error {
	res := NewResults(started, load, rs)
	if err := WriteJSON(filepath.Join(dir, "results.json"), res); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "table.md"), []byte(Table(res.Reports))); err != nil {
		return err
	}
	for _, m := range []Mode{Library, Proxy} {
		var panels []Panel
		for _, r := range rs {
			if r.Mode == m {
				panels = append(panels, Panel{Title: r.Scenario.Name, Records: r.Records, Phases: r.Phases, Report: r.Report})
			}
		}
		if len(panels) == 0 {
			continue
		}
		name := "figure8.png"
		if m != Library {
			name = "figure8-" + string(m) + ".png"
		}
		title := fmt.Sprintf("smartclient %s, %.0f requests/s over 4 members: latency of every request; shaded: fault; green: failover gap; red x: failed",
			m, load.withDefaults().Rate)
		if err := WritePlot(filepath.Join(dir, name), title, panels, 3); err != nil {
			return err
		}
	}
	return nil
}

// figurePalette is the figure's own colours, exactly, then Plan 9's
// palette for the antialiased edges in between.
func figurePalette() color.Palette {
	p := color.Palette{color.White, color.Black, shade, okDot, failDot, gapLine}
	for _, c := range palette.Plan9 {
		if len(p) == 256 {
			break
		}
		p = append(p, c)
	}
	return p
}

// WriteRecords writes every request of every run as CSV, for a closer look
// than the figure gives: run, scheduled start and end (ms from the run's
// origin), latency (ms), member, attempts (0: unknown), outcome.
func WriteRecords(path string, rs []Result) error {
	var b bytes.Buffer
	b.WriteString("run,start_ms,end_ms,latency_ms,member,attempts,outcome\n")
	for _, r := range rs {
		members := r.Members
		for _, rec := range r.Records {
			m := ""
			if rec.Member >= 0 && int(rec.Member) < len(members) {
				m = members[rec.Member]
			}
			fmt.Fprintf(&b, "%s,%.3f,%.3f,%.3f,%s,%d,%s\n", r.Report.Scenario, ms(rec.Start), ms(rec.End), ms(rec.Latency()), m, rec.Attempts, rec.Outcome)
		}
	}
	return writeFile(path, b.Bytes())
}

// Table returns the reports as a Markdown table, for the README.
func Table(reports []Report) string {
	var b bytes.Buffer
	b.WriteString("| scenario | failed | gap ms (target) | worst ms | extra load % (during) | p50 / p99 ms before | during | after | rejoin ms |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range reports {
		target := ""
		if r.GapTargetMS > 0 {
			target = fmt.Sprintf(" (<%.0f)", r.GapTargetMS)
		}
		rejoin := "—"
		switch {
		case r.Victim != "" && r.RejoinMS < 0:
			rejoin = "not within run"
		case r.Victim != "":
			rejoin = fmt.Sprintf("%.0f", r.RejoinMS)
		}
		fmt.Fprintf(&b, "| %s | %d of %d | %.1f%s | %.1f | %.1f (%.1f) | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f | %s |\n",
			r.Scenario, r.Failed, r.Requests, r.GapMS, target, r.WorstMS, r.ExtraLoadPct, r.ExtraDuringPct,
			r.Before.P50MS, r.Before.P99MS, r.During.P50MS, r.During.P99MS, r.After.P50MS, r.After.P99MS, rejoin)
	}
	return b.String()
}
