package demo

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

var nan = math.NaN()

// Chart is one chart of the report: a range query's series by track.
type Chart struct {
	Title, Query, Unit string
	Series             []series
}

// chartQueries are the report's charts: the RED metrics by track, and the
// canary-stage error ratio (an event-window function, as on the dashboard).
var chartQueries = []struct{ title, unit, query string }{
	{"Requests per second", "req/s", `sum by (track) (rate(http_requests_total{service="checkout"}[1m]))`},
	{"Error ratio", "%", `sum by (track) (rate(http_requests_total{service="checkout", code=~"5.."}[1m])) / sum by (track) (rate(http_requests_total{service="checkout"}[1m]))`},
	{"p99 latency", "ms", `histogram_quantile(0.99, sum by (track, le) (rate(http_request_duration_seconds_bucket{service="checkout"}[1m])))`},
	{"Error ratio since the canary stage started (increase_since)", "%",
		`sum by (track) (increase_since(http_requests_total{service="checkout", code=~"5.."}[1h], change_event_active{event_name="canary-step", service="checkout"}))
/ sum by (track) (increase_since(http_requests_total{service="checkout"}[1h], change_event_active{event_name="canary-step", service="checkout"}))`},
}

func (r *rollout) charts(ctx context.Context, start, end time.Time) ([]Chart, error) {
	var out []Chart
	for _, q := range chartQueries {
		s, err := r.c.queryRange(ctx, q.query, start, end, 15*time.Second)
		if err != nil {
			return nil, err
		}
		slices.SortFunc(s, func(a, b series) int { return trackOrder(a.Labels["track"]) - trackOrder(b.Labels["track"]) })
		out = append(out, Chart{Title: q.title, Query: q.query, Unit: q.unit, Series: s})
	}
	return out, nil
}

func trackOrder(t string) int {
	return map[string]int{"stable": 0, "baseline": 1, "canary": 2}[t]
}

var trackColor = map[string]string{"stable": "#4e79a7", "baseline": "#59a14f", "canary": "#f28e2b"}

func pct(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f %%", 100*v)
}

func ms(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f ms", 1000*v)
}

// region is a shaded time span of a chart.
type region struct {
	start, end time.Time
	label      string
	fill       string
}

// regions are the canary-step windows, coloured by the judge's verdict,
// and the deploy window, from the events stored in levitated.
func regions(res Result) (stages []region, deploys []region) {
	verdicts := map[string]string{}
	for _, e := range res.Events {
		if e.Name == "canary-verdict" {
			verdicts[e.Attributes["weight"]] = e.Attributes["verdict"]
		}
	}
	for _, e := range res.Events {
		if e.State != "start" || e.Window == nil {
			continue
		}
		end := res.End
		if e.Window.End != nil {
			end = *e.Window.End
		}
		switch e.Name {
		case "canary-step":
			v := verdicts[e.Attributes["weight"]]
			fill := map[string]string{"Pass": "#59a14f", "Fail": "#e15759", "Marginal": "#edc948"}[v]
			if fill == "" {
				fill = "#bab0ac"
			}
			stages = append(stages, region{e.Window.Start, end, e.Attributes["weight"] + " % " + v, fill})
		case "deploy":
			deploys = append(deploys, region{e.Window.Start, end, "deploy " + e.Attributes["revision"], "#4e79a7"})
		}
	}
	return stages, deploys
}

// svgChart draws a chart as inline SVG: the series as lines, the stage
// windows as shaded regions with their verdict, the deploy window as a band.
func svgChart(c Chart, res Result) template.HTML {
	const w, h, left, right, top, bottom = 960.0, 230.0, 60.0, 10.0, 28.0, 24.0
	pw, ph := w-left-right, h-top-bottom
	t0, t1 := res.Start, res.End
	x := func(t time.Time) float64 {
		return left + pw*float64(t.Sub(t0))/float64(t1.Sub(t0))
	}
	scale := 1.0
	switch c.Unit {
	case "%":
		scale = 100
	case "ms":
		scale = 1000
	}
	ymax := 0.0
	for _, s := range c.Series {
		for _, p := range s.Points {
			if v := p.V * scale; !math.IsNaN(v) && !math.IsInf(v, 0) {
				ymax = max(ymax, v)
			}
		}
	}
	if ymax == 0 {
		ymax = 1
	}
	ymax = niceCeil(ymax * 1.1)
	y := func(v float64) float64 { return top + ph - ph*v/ymax }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="100%%" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">`, w, h, template.HTMLEscapeString(c.Title))
	stages, deploys := regions(res)
	for _, d := range deploys {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="4" fill="%s"><title>%s</title></rect>`, x(d.start), top-6, max(x(d.end)-x(d.start), 1), d.fill, template.HTMLEscapeString(d.label))
	}
	for _, s := range stages {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.15"><title>canary %s</title></rect>`,
			x(s.start), top, max(x(s.end)-x(s.start), 1), ph, s.fill, template.HTMLEscapeString(s.label))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-opacity="0.6"/>`, x(s.start), x(s.start), top, top+ph, s.fill)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`, x(s.start)+3, top+12, s.fill, template.HTMLEscapeString(s.label))
	}
	// Axes and grid.
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, left, w-right, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#555">%s</text>`, left-4, y(v)+4, formatTick(v))
	}
	for m := t0.Truncate(5 * time.Minute).Add(5 * time.Minute); m.Before(t1); m = m.Add(5 * time.Minute) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555">%s</text>`, x(m), h-6, m.UTC().Format("15:04"))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="12" fill="#333" font-weight="bold">%s (%s)</text>`, left, template.HTMLEscapeString(c.Title), c.Unit)
	// Series: a path per run of consecutive finite points.
	for _, s := range c.Series {
		color := trackColor[s.Labels["track"]]
		if color == "" {
			color = "#333"
		}
		var d strings.Builder
		pen := false
		for i, p := range s.Points {
			v := p.V * scale
			gap := i > 0 && p.T.Sub(s.Points[i-1].T) > time.Minute
			if math.IsNaN(v) || math.IsInf(v, 0) || gap {
				pen = false
				if math.IsNaN(v) || math.IsInf(v, 0) {
					continue
				}
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f,%.1f ", cmd, x(p.T), y(min(v, ymax)))
			pen = true
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.6"><title>%s</title></path>`, d.String(), color, template.HTMLEscapeString(s.Labels["track"]))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from escaped strings and numbers
}

func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func formatTick(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

//go:embed report.html.tmpl
var reportTemplate string

// writeReport writes the self-contained HTML report.
func writeReport(path, command string, results []Result) error {
	tpl, err := template.New("report").Funcs(template.FuncMap{
		"chart": svgChart,
		"pct":   pct,
		"ms":    ms,
		"score": func(v float64) string { return fmt.Sprintf("%.0f", v) },
		"time":  func(t time.Time) string { return t.UTC().Format("15:04:05") },
		"verdictClass": func(v string) string {
			return map[string]string{"Pass": "pass", "Fail": "fail", "Marginal": "marginal"}[v]
		},
		"outcomeClass": func(o string) string {
			return map[string]string{OutcomePromoted: "pass", OutcomeRolledBack: "fail", OutcomePaused: "marginal"}[o]
		},
	}).Parse(reportTemplate)
	if err != nil {
		return fmt.Errorf("report template: %w", err)
	}
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, struct {
		Results   []Result
		Generated string
		Command   string
		Colors    map[string]string
	}{results, time.Now().UTC().Format(time.RFC3339), command, trackColor}); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
