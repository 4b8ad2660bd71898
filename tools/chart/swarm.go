package main

// The -swarm chart: the report of tools/swarm drawn in three panels, all
// with linear axes:
//
//   - discovery: the fraction of nodes that had discovered their first
//     peer, and k peers, against the seconds since they started (first
//     starts, and returns after churn);
//   - exchanges over time: succeeded, failed because a peer was gone, and
//     failed between live peers, per second, with the churn rounds shaded
//     (from a round's start for its down time);
//   - resources over time: the process's resident memory and CPU divided
//     by the nodes.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"github.com/p2pkex/p2pkex/internal/toolio"
)

// swarmReport is the part of a tools/swarm report the chart uses.
type swarmReport struct {
	Tool   string `json:"tool"`
	Config struct {
		Nodes        int     `json:"nodes"`
		Bootstrap    int     `json:"bootstrap"`
		ChurnPeriodS float64 `json:"churn_period_s"`
		ChurnFrac    float64 `json:"churn_fraction"`
		DownS        float64 `json:"down_s"`
		K            int     `json:"k"`
		OpIntervalS  float64 `json:"op_interval_s"`
	} `json:"config"`
	RunS     float64 `json:"run_s"`
	Timeline []struct {
		T          float64 `json:"t_s"`
		DurS       float64 `json:"dur_s"`
		LiveNodes  int     `json:"live_nodes"`
		ExchOK     float64 `json:"exchanges_ok"`
		FailedGone float64 `json:"failed_peer_gone"`
		FailedLive float64 `json:"failed_between_live_peers"`
		CPUCores   float64 `json:"cpu_cores"`
		RSS        float64 `json:"rss_bytes"`
	} `json:"timeline"`
	Discoveries []struct {
		Gen    int     `json:"gen"`
		FirstS float64 `json:"first_s"`
		KS     float64 `json:"k_s"`
	} `json:"discoveries"`
	Churn struct {
		Rounds []float64 `json:"rounds_t_s"`
	} `json:"churn"`
	Verdict string `json:"verdict"`
}

func readSwarm(names []string) (*swarmReport, error) {
	if len(names) > 1 {
		return nil, errors.New("-swarm draws one report")
	}
	r, closeIn, err := toolio.Inputs(names...)
	if err != nil {
		return nil, err
	}
	defer closeIn()
	var s swarmReport
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		return nil, fmt.Errorf("reading the swarm report: %w", err)
	}
	if s.Tool != "swarm" {
		return nil, errors.New("not a tools/swarm report")
	}
	if len(s.Timeline) == 0 {
		return nil, errors.New("the swarm report has no timeline")
	}
	return &s, nil
}

// lin is a plot area with linear axes.
type lin struct {
	x, y, w, h             float64
	xmin, xmax, ymin, ymax float64
	sb                     *strings.Builder
}

func (p *lin) px(v float64) float64 { return p.x + (v-p.xmin)/(p.xmax-p.xmin)*p.w }
func (p *lin) py(v float64) float64 { return p.y + p.h - (v-p.ymin)/(p.ymax-p.ymin)*p.h }

func (p *lin) axes(title, xLabel, yLabel, yFormat string) {
	b := p.sb
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="title">%s</text>`+"\n", p.x, p.y-12, esc(title))
	ystep := niceStep((p.ymax - p.ymin) / 5)
	for v := p.ymin; v <= p.ymax*1.0001; v += ystep {
		y := p.py(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="grid"/>`+"\n", p.x, y, p.x+p.w, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="tick" text-anchor="end">%s</text>`+"\n", p.x-6, y+4, fmt.Sprintf(yFormat, v))
	}
	xstep := niceStep((p.xmax - p.xmin) / 6)
	for v := math.Ceil(p.xmin/xstep) * xstep; v <= p.xmax*1.0001; v += xstep {
		x := p.px(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="grid"/>`+"\n", x, p.y, x, p.y+p.h)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="tick" text-anchor="middle">%g</text>`+"\n", x, p.y+p.h+16, v)
	}
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="frame"/>`+"\n", p.x, p.y, p.w, p.h)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" class="label" text-anchor="middle">%s</text>`+"\n", p.x+p.w/2, p.y+p.h+34, esc(xLabel))
	fmt.Fprintf(b, `<text transform="translate(%.1f %.1f) rotate(-90)" class="label" text-anchor="middle">%s</text>`+"\n", p.x-44, p.y+p.h/2, esc(yLabel))
}

func (p *lin) line(xs, ys []float64, class string) {
	var pts []string
	for i := range xs {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", p.px(xs[i]), p.py(ys[i])))
	}
	fmt.Fprintf(p.sb, `<polyline points="%s" class="%s"/>`+"\n", strings.Join(pts, " "), class)
}

// steps draws a step function: ys[i] holds from xs[i] to xs[i+1].
func (p *lin) steps(xs, ys []float64, class string) {
	var sx, sy []float64
	for i := range ys {
		sx = append(sx, xs[i], xs[i+1])
		sy = append(sy, ys[i], ys[i])
	}
	p.line(sx, sy, class)
}

func (p *lin) legend(items [][2]string) {
	for i, it := range items {
		y := p.y + 14 + float64(i)*16
		fmt.Fprintf(p.sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="%s"/>`+"\n", p.x+10, y-4, p.x+34, y-4, it[0])
		fmt.Fprintf(p.sb, `<text x="%.1f" y="%.1f" class="legend">%s</text>`+"\n", p.x+40, y, esc(it[1]))
	}
}

// cdf returns the sorted values and their cumulative fractions of total.
func cdf(v []float64, total int) ([]float64, []float64) {
	sort.Float64s(v)
	var xs, ys []float64
	for i, x := range v {
		xs = append(xs, x)
		ys = append(ys, float64(i+1)/float64(total))
	}
	return xs, ys
}

func drawSwarm(w io.Writer, s *swarmReport, title string) error {
	if title == "" {
		title = fmt.Sprintf("tools/swarm: %d nodes (%d bootstrap), churn every %gs, an exchange every %gs per node",
			s.Config.Nodes, s.Config.Bootstrap, s.Config.ChurnPeriodS, s.Config.OpIntervalS)
	}
	const width, height = 1280, 440
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">`+"\n", width, height, width, height)
	sb.WriteString(`<style>
.title{font-size:14px;font-weight:bold}.tick{font-size:11px;fill:#444}.label{font-size:12px;fill:#222}.legend{font-size:11px;fill:#222}
.grid{stroke:#e4e4e4;stroke-width:1}.frame{fill:none;stroke:#888;stroke-width:1}.churn{fill:#f3e3c8;stroke:none}
.first{fill:none;stroke:#1f77b4;stroke-width:2}.kth{fill:none;stroke:#2ca02c;stroke-width:2}
.rfirst{fill:none;stroke:#1f77b4;stroke-width:1.5;stroke-dasharray:5 3}.rkth{fill:none;stroke:#2ca02c;stroke-width:1.5;stroke-dasharray:5 3}
.ok{fill:none;stroke:#2ca02c;stroke-width:2}.gone{fill:none;stroke:#ff7f0e;stroke-width:2}.live{fill:none;stroke:#d62728;stroke-width:2}
.rss{fill:none;stroke:#9467bd;stroke-width:2}.cpu{fill:none;stroke:#8c564b;stroke-width:2}
</style>
<rect width="100%" height="100%" fill="white"/>
`)
	fmt.Fprintf(&sb, `<text x="%d" y="24" class="title" text-anchor="middle">%s</text>`+"\n", width/2, esc(title))

	// Discovery.
	var first, kth, rfirst, rkth []float64
	initial, rejoin := 0, 0
	for _, d := range s.Discoveries {
		f, k := &first, &kth
		if d.Gen == 0 {
			initial++
		} else {
			rejoin++
			f, k = &rfirst, &rkth
		}
		if d.FirstS >= 0 {
			*f = append(*f, d.FirstS)
		}
		if d.KS >= 0 {
			*k = append(*k, d.KS)
		}
	}
	xmax := 1.0
	for _, v := range [][]float64{first, kth, rfirst, rkth} {
		for _, x := range v {
			xmax = math.Max(xmax, x)
		}
	}
	xmax = math.Ceil(xmax*1.05/niceStep(xmax/5)) * niceStep(xmax/5)
	d := &lin{x: 70, y: 80, w: 330, h: 260, xmin: 0, xmax: xmax, ymin: 0, ymax: 1, sb: &sb}
	d.axes("discovery", "seconds since the node started", "fraction of nodes", "%.1f")
	items := [][2]string{}
	for _, c := range []struct {
		v     []float64
		total int
		class string
		label string
	}{
		{first, initial, "first", "first peer (first start)"},
		{kth, initial, "kth", fmt.Sprintf("%d peers (first start)", s.Config.K)},
		{rfirst, rejoin, "rfirst", "first peer (after churn)"},
		{rkth, rejoin, "rkth", fmt.Sprintf("%d peers (after churn)", s.Config.K)},
	} {
		if len(c.v) == 0 {
			continue
		}
		xs, ys := cdf(c.v, c.total)
		xs = append([]float64{0, xs[0]}, xs...)
		ys = append([]float64{0, 0}, ys...)
		d.line(xs, ys, c.class)
		items = append(items, [2]string{c.class, c.label})
	}
	// Legend at the bottom right, clear of the curves' rise.
	for i, it := range items {
		y := d.y + d.h - 10 - float64(len(items)-1-i)*16
		fmt.Fprintf(&sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" class="%s"/>`+"\n", d.x+d.w-190, y-4, d.x+d.w-166, y-4, it[0])
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" class="legend">%s</text>`+"\n", d.x+d.w-160, y, esc(it[1]))
	}

	// Time axis: bucket edges.
	tl := s.Timeline
	edges := []float64{tl[0].T - tl[0].DurS}
	for _, b := range tl {
		edges = append(edges, b.T)
	}
	var ok, gone, live, rss, cpu []float64
	for _, b := range tl {
		dur := math.Max(b.DurS, 1e-3)
		ok = append(ok, b.ExchOK/dur)
		gone = append(gone, b.FailedGone/dur)
		live = append(live, b.FailedLive/dur)
		rss = append(rss, b.RSS/float64(s.Config.Nodes)/(1<<20))
		cpu = append(cpu, 1000*b.CPUCores/float64(s.Config.Nodes))
	}
	tmin, tmax := edges[0], edges[len(edges)-1]
	shade := func(p *lin) {
		for _, r := range s.Churn.Rounds {
			x0, x1 := p.px(math.Max(r, tmin)), p.px(math.Min(r+s.Config.DownS, tmax))
			if x1 > x0 {
				fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="churn"/>`+"\n", x0, p.y, x1-x0, p.h)
			}
		}
	}
	top := math.Max(maxOf(ok), math.Max(maxOf(gone), maxOf(live)))
	st := niceStep(top / 5)
	e := &lin{x: 490, y: 80, w: 330, h: 260, xmin: tmin, xmax: tmax, ymin: 0, ymax: math.Max(st, math.Ceil(top*1.1/st)*st), sb: &sb}
	shade(e)
	e.axes("exchanges over time", "seconds since the swarm started", "exchanges per second", "%g")
	e.steps(edges, ok, "ok")
	e.steps(edges, gone, "gone")
	e.steps(edges, live, "live")
	e.legend([][2]string{{"ok", "succeeded"}, {"gone", "failed: a peer left or came back"}, {"live", "failed between live peers"}})

	// Resources per node (the live nodes are left out: on their scale the
	// per-node figures, a few MiB and ms, would lie flat on the axis).
	top = math.Max(maxOf(rss), maxOf(cpu))
	st = niceStep(top / 5)
	r := &lin{x: 910, y: 80, w: 330, h: 260, xmin: tmin, xmax: tmax, ymin: 0, ymax: math.Max(st, math.Ceil(top*1.1/st)*st), sb: &sb}
	shade(r)
	r.axes("resources per node", "seconds since the swarm started", "MiB; ms of CPU per second", "%g")
	r.steps(edges, rss, "rss")
	r.steps(edges, cpu, "cpu")
	r.legend([][2]string{{"rss", "resident memory per node, MiB"}, {"cpu", "CPU per node, ms per second"}})

	lines := verdictLines(s.Verdict)
	for i, l := range lines {
		fmt.Fprintf(&sb, `<text x="%d" y="%d" class="tick" text-anchor="middle">%s</text>`+"\n", width/2, height-10-16*(len(lines)-i), esc(l))
	}
	fmt.Fprintf(&sb, `<text x="%d" y="%d" class="tick" text-anchor="middle">shaded: churn rounds (%.0f%% of the nodes away for %gs); data: tools/swarm JSON report</text>`+"\n",
		width/2, height-10, 100*s.Config.ChurnFrac, s.Config.DownS)
	sb.WriteString("</svg>\n")
	_, err := io.WriteString(w, sb.String())
	return err
}

// verdictLines shortens the report's verdict to its counts, with the
// failures, if any, on a line of their own.
func verdictLines(v string) []string {
	var out []string
	if rest, ok := strings.CutPrefix(v, "FAIL: "); ok {
		if i := strings.Index(rest, ". "); i > 0 {
			out = append(out, "FAIL: "+rest[:i])
			v = rest[i+2:]
		}
	}
	if i := strings.Index(v, "; first discovery"); i > 0 {
		v = v[:i]
	}
	return append(out, v)
}
