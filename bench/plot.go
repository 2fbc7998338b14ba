package bench

import (
	"fmt"
	"math"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plot draws the report's PNGs into dir and returns their paths.
func (r *Report) plot(dir string) ([]string, error) {
	var files []string
	add := func(name string, p *plot.Plot, w, h vg.Length) error {
		f := filepath.Join(dir, name)
		if err := p.Save(w, h, f); err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		files = append(files, f)
		return nil
	}
	for _, sc := range r.Scenarios {
		if p := r.latencyPlot(sc); p != nil {
			if err := add("latency-"+sc.Name+".png", p, 9*vg.Inch, 6*vg.Inch); err != nil {
				return files, err
			}
		}
	}
	bars := []struct {
		file, scenario, title, ylabel string
		value                         func(x *Result) float64
	}{
		{"capacity.png", ScenarioSaturated, "Offered = capacity, one slow member: completed / capacity", "completed per second / capacity", func(x *Result) float64 { return x.CapacityFrac }},
		{"cpu.png", ScenarioSlow, "CPU outside the members per request (slow-member scenario)", "µs per request (client + proxy)", func(x *Result) float64 { return x.CPUPerReqUs }},
		{"fast.png", ScenarioFast, "Fast replies, 50 concurrent requests: completed req/s", "req/s", func(x *Result) float64 { return x.ReqPerSec }},
	}
	for _, b := range bars {
		if p := r.barPlot(b.scenario, b.title, b.ylabel, b.value); p != nil {
			if err := add(b.file, p, 9*vg.Inch, 5*vg.Inch); err != nil {
				return files, err
			}
		}
	}
	if r.Figure6 != nil && len(r.Figure6.Points) > 0 {
		if err := add("figure6.png", r.Figure6.plot(), 8*vg.Inch, 5*vg.Inch); err != nil {
			return files, err
		}
	}
	return files, nil
}

// nines maps a quantile to its number of nines: 0.9 → 1, 0.99 → 2.
func nines(q float64) float64 { return -math.Log10(1 - q) }

// latencyPlot draws each contender's latency quantiles on log axes;
// quantiles that were never reached (too many failures) are left out.
func (r *Report) latencyPlot(sc ScenarioInfo) *plot.Plot {
	p := plot.New()
	p.Title.Text = sc.Name + ": time to a successful reply by quantile"
	p.X.Label.Text = "quantile"
	p.Y.Label.Text = "ms (log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{
		{Value: nines(0.5), Label: "50%"}, {Value: nines(0.9), Label: "90%"}, {Value: nines(0.99), Label: "99%"},
		{Value: nines(0.999), Label: "99.9%"}, {Value: nines(0.9999), Label: "99.99%"},
	})
	p.Legend.Top = true // the curves start low on the left
	p.Legend.Left = true
	var args []any
	for _, n := range r.contenderOrder() {
		x := r.get(sc.Name, n)
		if x == nil || x.Offered == 0 {
			continue
		}
		var xys plotter.XYs
		for _, c := range x.Curve {
			if c.Ms > 0 {
				xys = append(xys, plotter.XY{X: nines(c.Q), Y: c.Ms})
			}
		}
		if len(xys) > 0 {
			args = append(args, n, xys)
		}
	}
	if len(args) == 0 {
		return nil
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil
	}
	return p
}

func (r *Report) barPlot(scenario, title, ylabel string, value func(*Result) float64) *plot.Plot {
	var vals plotter.Values
	var names []string
	for _, n := range r.contenderOrder() {
		x := r.get(scenario, n)
		if x == nil || x.Offered == 0 {
			continue
		}
		vals = append(vals, value(x))
		names = append(names, n)
	}
	if len(vals) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	bc, err := plotter.NewBarChart(vals, vg.Points(18))
	if err != nil {
		return nil
	}
	bc.Color = plotutil.Color(0)
	p.Add(bc, plotter.NewGrid())
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = math.Pi / 6
	p.X.Tick.Label.XAlign = -1.0 // right-aligned under the bar
	p.X.Tick.Label.YAlign = -0.5
	return p
}

func (f *Figure6Result) plot() *plot.Plot {
	p := plot.New()
	p.Title.Text = "Figure 6 redone: aggregate bandwidth vs clients"
	p.X.Label.Text = "clients"
	p.Y.Label.Text = "MB/s"
	p.Legend.Top = true
	p.Legend.Left = true
	var args []any
	for _, dl := range []string{DownloaderRandom, DownloaderRanges} {
		for _, s := range []int{1, 2, 4} {
			var xys plotter.XYs
			for _, pt := range f.Points {
				if pt.Downloader == dl && pt.Servers == s {
					xys = append(xys, plotter.XY{X: float64(pt.Clients), Y: pt.MBps})
				}
			}
			if len(xys) > 0 {
				args = append(args, fmt.Sprintf("%s, %d server(s)", dl, s), xys)
			}
		}
	}
	_ = plotutil.AddLinePoints(p, args...)
	// Room above the lines for the legend.
	top := 0.0
	for _, pt := range f.Points {
		top = max(top, pt.MBps)
	}
	p.Y.Min, p.Y.Max = 0, max(top, 3)*1.6
	var paper plotter.XYs
	for _, pt := range f.Paper {
		paper = append(paper, plotter.XY{X: float64(pt.Clients), Y: pt.MBps})
	}
	if sc, err := plotter.NewScatter(paper); err == nil {
		sc.GlyphStyle.Radius = vg.Points(5)
		sc.GlyphStyle.Shape = plotutil.Shape(5)
		p.Add(sc)
		p.Legend.Add("paper (1, 2, 4 servers)", sc)
	}
	return p
}
