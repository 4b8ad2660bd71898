// Command chart draws the latency and throughput of "p2pkex bench" runs
// against the number of exchanges in flight, as an SVG file. It reads the
// JSON summaries of the runs (one after another, as the runs print them)
// from the files named on the command line, or from stdin:
//
//	for c in 1 4 16 64; do p2pkex bench --concurrency $c --latency 0 --quiet; done > runs.json
//	go run ./tools/chart -o docs/performance.svg runs.json
//
// The left panel shows the median and 99th-percentile exchange time, the
// right one the exchanges per second, with the rate the crypto floor allows
// on all CPUs and 70% of it (the throughput target) as dashed lines. Both
// x axes are logarithmic. Only the standard library is used.
//
// With -table it prints, instead, a Markdown table of the headline fields of
// every run and their medians:
//
//	go run ./tools/chart -table runs.json
//
// With -swarm it draws the report of tools/swarm instead (swarm.go):
//
//	go run ./tools/chart -swarm -o docs/performance/swarm.svg swarm.json
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/p2pkex/p2pkex/internal/toolio"
)

// run is the part of a "p2pkex bench" summary the chart uses.
type run struct {
	Suite         string  `json:"suite"`
	Keys          string  `json:"keys"`
	Concurrency   int     `json:"concurrency"`
	Exchanges     int     `json:"exchanges"`
	Failures      int     `json:"failures"`
	ExchangesPerS float64 `json:"exchanges_per_s"`
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	FloorRatePerS float64 `json:"floor_rate_per_s"`
	GOMAXPROCS    int     `json:"gomaxprocs"`
}

func main() {
	out := flag.String("o", "", "write the SVG to `FILE` (default stdout)")
	title := flag.String("title", "", "chart title (default from the runs)")
	table := flag.Bool("table", false, "print a Markdown table of the runs instead of a chart")
	swarmMode := flag.Bool("swarm", false, "draw a tools/swarm report instead of bench runs")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: chart [-o FILE] [-title TEXT] [-table | -swarm] [SUMMARY.json ...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *table {
		if err := printTable(os.Stdout, flag.Args()); err != nil {
			fmt.Fprintln(os.Stderr, "chart:", err)
			os.Exit(1)
		}
		return
	}
	var draw func(io.Writer) error
	if *swarmMode {
		s, err := readSwarm(flag.Args())
		if err != nil {
			fmt.Fprintln(os.Stderr, "chart:", err)
			os.Exit(1)
		}
		draw = func(w io.Writer) error { return drawSwarm(w, s, *title) }
	} else {
		runs, err := readRuns(flag.Args())
		if err != nil {
			fmt.Fprintln(os.Stderr, "chart:", err)
			os.Exit(1)
		}
		draw = func(w io.Writer) error { return drawRuns(w, runs, *title) }
	}
	w, closeOut, err := toolio.Output(*out)
	if err == nil {
		err = errors.Join(draw(w), closeOut())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
}

func readRuns(names []string) ([]run, error) {
	r, closeIn, err := toolio.Inputs(names...)
	if err != nil {
		return nil, err
	}
	defer closeIn()
	return readRunsFrom(r)
}

// readRunsFrom decodes summaries until EOF and sorts them by concurrency.
func readRunsFrom(r io.Reader) ([]run, error) {
	var runs []run
	dec := json.NewDecoder(r)
	for {
		var x run
		if err := dec.Decode(&x); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("reading summaries: %w", err)
		}
		if x.Concurrency < 1 {
			return nil, errors.New("a summary has no concurrency")
		}
		runs = append(runs, x)
	}
	if len(runs) == 0 {
		return nil, errors.New("no summaries")
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Concurrency < runs[j].Concurrency })
	return runs, nil
}

// panel is one plot area and its axes.
type panel struct {
	x, y, w, h       float64 // plot area in SVG units
	xmin, xmax       float64 // data range (x is log2)
	ymin, ymax       float64 // data range
	logY             bool
	title, yLabel    string
	sb               *strings.Builder
	xTicks, yTicks   []float64
	yFormat, xFormat string
}

func (p *panel) px(v float64) float64 {
	return p.x + (math.Log2(v)-math.Log2(p.xmin))/(math.Log2(p.xmax)-math.Log2(p.xmin))*p.w
}

func (p *panel) py(v float64) float64 {
	if p.logY {
		return p.y + p.h - (math.Log10(v)-math.Log10(p.ymin))/(math.Log10(p.ymax)-math.Log10(p.ymin))*p.h
	}
	return p.y + p.h - (v-p.ymin)/(p.ymax-p.ymin)*p.h
}

func (p *panel) axes() {
	b := p.sb
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="title">%s</text>`+"\n", p.x, p.y-12, esc(p.title))
	for _, t := range p.yTicks {
		y := p.py(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="grid"/>`+"\n", p.x, y, p.x+p.w, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="tick" text-anchor="end">%s</text>`+"\n", p.x-6, y+4, fmt.Sprintf(p.yFormat, t))
	}
	for _, t := range p.xTicks {
		x := p.px(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="grid"/>`+"\n", x, p.y, x, p.y+p.h)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="tick" text-anchor="middle">%s</text>`+"\n", x, p.y+p.h+16, fmt.Sprintf(p.xFormat, t))
	}
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="frame"/>`+"\n", p.x, p.y, p.w, p.h)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="label" text-anchor="middle">exchanges in flight</text>`+"\n", p.x+p.w/2, p.y+p.h+34)
	fmt.Fprintf(b, `<text transform="translate(%.1f %.1f) rotate(-90)" class="label" text-anchor="middle">%s</text>`+"\n", p.x-48, p.y+p.h/2, esc(p.yLabel))
}

// series draws a line with points; dashed lines have no points.
func (p *panel) series(xs, ys []float64, class string, points bool) {
	b := p.sb
	var pts []string
	for i := range xs {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", p.px(xs[i]), p.py(ys[i])))
	}
	fmt.Fprintf(b, `<polyline points="%s" class="%s"/>`+"\n", strings.Join(pts, " "), class)
	if points {
		for i := range xs {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3.5" class="%s dot"/>`+"\n", p.px(xs[i]), p.py(ys[i]), class)
		}
	}
}

// legend lists items at the top left of the panel, or at the bottom left.
func (p *panel) legend(items [][2]string, bottom bool) {
	top := p.y + 14
	if bottom {
		top = p.y + p.h - 8 - float64(len(items)-1)*16
	}
	for i, it := range items {
		y := top + float64(i)*16
		fmt.Fprintf(p.sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="%s"/>`+"\n", p.x+10, y-4, p.x+34, y-4, it[0])
		fmt.Fprintf(p.sb, `<text x="%.1f" y="%.1f" class="legend">%s</text>`+"\n", p.x+40, y, esc(it[1]))
	}
}

func drawRuns(w io.Writer, runs []run, title string) error {
	var xs, p50, p99, rate, floors []float64
	for _, r := range runs {
		if r.P50Ms <= 0 || r.P99Ms <= 0 {
			return fmt.Errorf("run at concurrency %d has no latencies", r.Concurrency)
		}
		xs = append(xs, float64(r.Concurrency))
		p50 = append(p50, r.P50Ms)
		p99 = append(p99, r.P99Ms)
		rate = append(rate, r.ExchangesPerS)
		if r.FloorRatePerS > 0 {
			floors = append(floors, r.FloorRatePerS)
		}
	}
	// Each run measured its own floor; the line is their median.
	floorRate := 0.0
	if len(floors) > 0 {
		sort.Float64s(floors)
		floorRate = floors[len(floors)/2]
	}
	if title == "" {
		title = fmt.Sprintf("p2pkex bench: %s, keys %s, GOMAXPROCS %d", runs[0].Suite, runs[0].Keys, runs[0].GOMAXPROCS)
	}
	xmin, xmax := xs[0], xs[len(xs)-1]
	if xmin == xmax {
		xmin, xmax = xmin/2, xmax*2
	}
	var xTicks []float64
	for v := math.Pow(2, math.Floor(math.Log2(xmin))); v <= xmax*1.0001; v *= 2 {
		if v >= xmin/1.0001 {
			xTicks = append(xTicks, v)
		}
	}
	const width, height = 920, 400
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">`+"\n", width, height, width, height)
	sb.WriteString(`<style>
.title{font-size:14px;font-weight:bold}.tick{font-size:11px;fill:#444}.label{font-size:12px;fill:#222}.legend{font-size:11px;fill:#222}
.grid{stroke:#e4e4e4;stroke-width:1}.frame{fill:none;stroke:#888;stroke-width:1}
.p50{fill:none;stroke:#1f77b4;stroke-width:2}.p99{fill:none;stroke:#d62728;stroke-width:2}.rate{fill:none;stroke:#2ca02c;stroke-width:2}
.floor{fill:none;stroke:#555;stroke-width:1.5;stroke-dasharray:6 4}.target{fill:none;stroke:#aaa;stroke-width:1.5;stroke-dasharray:2 3}
.dot{stroke:none}.p50.dot{fill:#1f77b4}.p99.dot{fill:#d62728}.rate.dot{fill:#2ca02c}
</style>
<rect width="100%" height="100%" fill="white"/>
`)
	fmt.Fprintf(&sb, `<text x="%d" y="24" class="title" text-anchor="middle">%s</text>`+"\n", width/2, esc(title))

	// Latency, log y.
	lo, hi := minOf(p50), maxOf(p99)
	lat := &panel{x: 80, y: 70, w: 340, h: 260, xmin: xmin, xmax: xmax, logY: true,
		ymin: math.Pow(10, math.Floor(math.Log10(lo))), ymax: math.Pow(10, math.Ceil(math.Log10(hi))),
		title: "exchange time", yLabel: "milliseconds (log)", sb: &sb, xTicks: xTicks, xFormat: "%.0f", yFormat: "%g"}
	for v := lat.ymin; v <= lat.ymax*1.0001; v *= 10 {
		lat.yTicks = append(lat.yTicks, v)
	}
	lat.axes()
	lat.series(xs, p50, "p50", true)
	lat.series(xs, p99, "p99", true)
	lat.legend([][2]string{{"p50", "median"}, {"p99", "99th percentile"}}, false)

	// Throughput, linear y from 0.
	top := math.Max(maxOf(rate), floorRate)
	step := niceStep(top / 5)
	thr := &panel{x: 540, y: 70, w: 340, h: 260, xmin: xmin, xmax: xmax, ymin: 0, ymax: math.Ceil(top*1.05/step) * step,
		title: "throughput", yLabel: "exchanges per second", sb: &sb, xTicks: xTicks, xFormat: "%.0f", yFormat: "%.0f"}
	for v := 0.0; v <= thr.ymax*1.0001; v += step {
		thr.yTicks = append(thr.yTicks, v)
	}
	thr.axes()
	items := [][2]string{{"rate", "measured"}}
	if floorRate > 0 {
		thr.series([]float64{xmin, xmax}, []float64{floorRate, floorRate}, "floor", false)
		thr.series([]float64{xmin, xmax}, []float64{0.7 * floorRate, 0.7 * floorRate}, "target", false)
		items = append(items, [2]string{"floor", "crypto floor on all CPUs (median of the runs)"}, [2]string{"target", "70% of the floor (target)"})
	}
	thr.series(xs, rate, "rate", true)
	thr.legend(items, true)

	failures := 0
	for _, r := range runs {
		failures += r.Failures
	}
	fmt.Fprintf(&sb, `<text x="%d" y="%d" class="tick" text-anchor="middle">%d runs, %d failed exchanges; data: p2pkex bench JSON summaries</text>`+"\n",
		width/2, height-10, len(runs), failures)
	sb.WriteString("</svg>\n")
	_, err := io.WriteString(w, sb.String())
	return err
}

func minOf(v []float64) float64 {
	m := math.Inf(1)
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}

// niceStep rounds a tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// tableFields are the columns of -table, in order.
var tableFields = []string{
	"concurrency", "exchanges", "failures", "exchanges_per_s", "cores_used", "p50_ms", "p99_ms",
	"floor_cpu_s_in_load", "ratio_cpu_vs_floor_in_load", "null_cpu_s_per_exchange", "ratio_null_vs_floor_in_load",
	"ratio_floor_plus_null_vs_floor_in_load", "ratio_own_vs_floor_in_load",
	"cpu_s_per_exchange", "floor_cpu_s_per_exchange", "ratio_cpu_vs_floor", "ratio_rate_vs_floor", "ratio_rate_vs_floor_in_load",
	"noise_handshake_s", "ratio_vs_noise", "exchange_p50_idle_ms", "noise_handshake_p50_ms",
	"ratio_p50_idle_vs_noise", "heap_bytes_per_inflight", "heap_alloc_bytes_per_inflight", "rtts_known_keys", "rtts_both_keys",
}

// printTable prints the runs' tableFields, one run a row, then the median
// of each column.
func printTable(w io.Writer, names []string) error {
	r, closeIn, err := toolio.Inputs(names...)
	if err != nil {
		return err
	}
	defer closeIn()
	dec := json.NewDecoder(r)
	var rows []map[string]any
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("reading summaries: %w", err)
		}
		rows = append(rows, m)
	}
	if len(rows) == 0 {
		return errors.New("no summaries")
	}
	fmt.Fprintf(w, "| run | %s |\n|%s\n", strings.Join(tableFields, " | "), strings.Repeat(" ---: |", len(tableFields)+1))
	cols := make([][]float64, len(tableFields))
	for i, m := range rows {
		cells := []string{fmt.Sprint(i + 1)}
		for j, f := range tableFields {
			v, ok := m[f].(float64)
			if !ok {
				cells = append(cells, "")
				continue
			}
			cols[j] = append(cols[j], v)
			cells = append(cells, format(v))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	if len(rows) > 1 {
		cells := []string{"median"}
		for _, c := range cols {
			if len(c) == 0 {
				cells = append(cells, "")
				continue
			}
			sort.Float64s(c)
			m := c[len(c)/2]
			if len(c)%2 == 0 {
				m = (c[len(c)/2-1] + c[len(c)/2]) / 2
			}
			cells = append(cells, format(m))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	return nil
}

// format prints v with three significant digits, or as an integer.
func format(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3g", v), "0"), ".")
}
