package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// apiEvent is what the tests read of GET /api/v1/events.
type apiEvent struct {
	ID         string
	Name       string
	State      string
	Timestamp  time.Time
	Attributes map[string]string
	Window     *struct {
		StartID string `json:"start_id"`
		Start   *time.Time
		End     *time.Time
		Open    bool
	}
}

func listEvents(t *testing.T, match ...string) []apiEvent {
	t.Helper()
	var r struct{ Events []apiEvent }
	q := url.Values{"start": {env.end.Add(-2 * time.Hour).Format(time.RFC3339)}, "limit": {"1000"}, "match": match}
	if err := call(http.MethodGet, env.url+"/api/v1/events?"+q.Encode(), "", &r); err != nil {
		t.Fatal(err)
	}
	return r.Events
}

// queryURLAt is the Query page over [from, to].
func queryURLAt(expr string, from, to time.Time) string {
	return queryURL(expr, url.Values{"g0.range_input": {fmt.Sprintf("%dm", int(to.Sub(from).Minutes()))}, "g0.end_input": {to.UTC().Format("2006-01-02 15:04:05")}})
}

func queryURL(expr string, extra url.Values) string {
	q := url.Values{"g0.expr": {expr}, "g0.tab": {"graph"}, "g0.range_input": {"1h"}, "g0.end_input": {env.end.UTC().Format("2006-01-02 15:04:05")}}
	for k, v := range extra {
		q[k] = v
	}
	return env.url + "/query?" + q.Encode()
}

// TestQueryGraphDrawsChangeWindows: the Query page graphs a query and draws
// each change window of the range as a region whose left edge and width are
// the window's start and end on the chart's time axis.
func TestQueryGraphDrawsChangeWindows(t *testing.T) {
	ctx := browser(t, 1280, 800)
	expr := `sum by (track) (rate(http_requests_total{service="checkout"}[1m]))`
	do(t, ctx,
		chromedp.Navigate(queryURL(expr, nil)),
		visible(`[data-testid=graph] .ev-region`),
		visible(`.cm-content`), // the editor is loaded after the graph
	)
	got := eval[struct {
		Series  int
		Xmin    float64
		Xmax    float64
		Width   float64
		Regions []struct {
			Name, ID            string
			Start, End, Left, W float64
		}
		Editor string
	}](t, ctx, `(() => {
		const g = document.querySelector('[data-testid=graph]');
		const c = g.querySelector('.chart');
		const over = g.querySelector('.u-over');
		return {
			series: +g.dataset.series, xmin: +c.dataset.xmin, xmax: +c.dataset.xmax, width: over.clientWidth,
			regions: [...g.querySelectorAll('.ev-region')].map(e => ({name: e.dataset.name, id: e.dataset.id,
				start: +e.dataset.start, end: +e.dataset.end, left: parseFloat(e.style.left), w: parseFloat(e.style.width)})),
			editor: document.querySelector('.cm-content').textContent,
		};
	})()`)
	if got.Series != 3 {
		t.Errorf("graph has %d series, want 3 (stable, baseline, canary)", got.Series)
	}
	// The boot script inlined in index.html ran (the CSP allows it by its
	// hash) and the app took over its requests: each was sent once.
	sent := eval[struct {
		Boot     bool
		Left     int
		Requests map[string]int
	}](t, ctx, `(() => { const b = window.__lvBoot, n = {};
		for (const e of performance.getEntriesByType('resource')) { const p = new URL(e.name).pathname; if (p.startsWith('/api/')) n[p] = (n[p] || 0) + 1; }
		return {boot: !!b && b.used.has('query'), left: b ? b.pending.size : -1, requests: n}; })()`)
	if !sent.Boot || sent.Left != 0 || sent.Requests["/api/v1/query_range"] != 1 || sent.Requests["/api/v1/status/whoami"] != 1 {
		t.Errorf("boot script ran and its requests were taken: %v, %d not taken, requests %v; want each once", sent.Boot, sent.Left, sent.Requests)
	}
	if got.Editor != expr {
		t.Errorf("editor holds %q, want %q", got.Editor, expr)
	}
	// Every window of the API in the range is drawn, where it belongs.
	want := map[string]apiEvent{}
	for _, e := range listEvents(t) {
		if e.State == "start" {
			want[e.ID] = e
		}
	}
	if len(want) < 2 {
		t.Fatalf("the demo stored %d windows; want the deploy and its canary steps", len(want))
	}
	if len(got.Regions) != len(want) {
		t.Errorf("%d regions drawn, want %d windows", len(got.Regions), len(want))
	}
	px := func(v float64) float64 {
		v = math.Min(math.Max(v, got.Xmin), got.Xmax)
		return (v - got.Xmin) / (got.Xmax - got.Xmin) * got.Width
	}
	for _, r := range got.Regions {
		e, ok := want[r.ID]
		if !ok {
			t.Errorf("region %s (%s) is no window of the API", r.ID, r.Name)
			continue
		}
		start := float64(e.Timestamp.UnixMilli()) / 1000
		if r.Start != start {
			t.Errorf("region %s starts at %v, the event at %v", r.ID, r.Start, start)
		}
		if e.Window != nil && e.Window.End != nil {
			if end := float64(e.Window.End.UnixMilli()) / 1000; r.End != end {
				t.Errorf("region %s ends at %v, the window at %v", r.ID, r.End, end)
			}
		}
		if math.Abs(r.Left-px(r.Start)) > 1 || math.Abs(r.Left+r.W-px(r.End)) > 1 {
			t.Errorf("region %s at x=[%.1f, %.1f], want [%.1f, %.1f]", r.ID, r.Left, r.Left+r.W, px(r.Start), px(r.End))
		}
	}
	shot(t, ctx, "query-graph")

	// Hovering inside a window shows the event.
	mid := got.Regions[0].Left + got.Regions[0].W/2
	box := eval[[]float64](t, ctx, `(() => { const r = document.querySelector('[data-testid=graph] .u-over').getBoundingClientRect(); return [r.left, r.top]; })()`)
	do(t, ctx,
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, box[0]+mid, box[1]+60),
		visible(`.ev-tip`),
	)
	tip := text(t, ctx, `.ev-tip`)
	if !strings.Contains(tip, got.Regions[0].Name) {
		t.Errorf("tooltip %q does not name the window %s", tip, got.Regions[0].Name)
	}
	shot(t, ctx, "query-hover")
}

// TestQueryAutocompleteOffersEventFunctions: typing in the editor offers
// levitated's increase_since, and a query using it is no syntax error.
func TestQueryAutocompleteOffersEventFunctions(t *testing.T) {
	ctx := browser(t, 1280, 800)
	do(t, ctx,
		chromedp.Navigate(env.url+"/query"),
		visible(`.cm-content`),
		focus(`.cm-content`),
		// Typing, as CodeMirror sees it: a transaction of user event
		// input.type. (Chromium's Input.dispatchKeyEvent and insertText
		// stall on CodeMirror's editor under chromedp here.)
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => { const v = document.querySelector('.editor').editorView;
				for (const c of 'increase_si') v.dispatch(v.state.update({changes: {from: v.state.doc.length, insert: c},
					selection: {anchor: v.state.doc.length + 1}, userEvent: 'input.type'}));
				return true; })()`)(ctx, tg)
			return err
		}),
		visible(`.cm-tooltip-autocomplete`),
	)
	options := eval[[]string](t, ctx, `[...document.querySelectorAll('.cm-tooltip-autocomplete li')].map(l => l.textContent)`)
	found := false
	for _, o := range options {
		found = found || strings.HasPrefix(o, "increase_since")
	}
	if !found {
		t.Fatalf("autocomplete offers %q, want increase_since", options)
	}
	shot(t, ctx, "query-autocomplete")

	// A valid event-window query: no lint error in the editor, a graph.
	expr := `sum(increase_since(http_requests_total{service="checkout"}[1h], change_event_active{event_name="deploy"}))`
	do(t, ctx,
		chromedp.Navigate(queryURL(expr, nil)),
		visible(`[data-testid=graph] .u-over`),
		chromedp.Sleep(1500*time.Millisecond), // the linter runs after a pause
	)
	lintErrors := eval[int](t, ctx, `document.querySelectorAll('.cm-lintRange-error').length`)
	if lintErrors != 0 {
		t.Errorf("%d lint errors on a valid increase_since query", lintErrors)
	}
}

// TestQuerySyntaxErrorShown: a query that does not parse shows the API's
// error on the page and a lint mark in the editor.
func TestQuerySyntaxErrorShown(t *testing.T) {
	ctx := browser(t, 1280, 800)
	do(t, ctx,
		chromedp.Navigate(queryURL(`sum(rate(http_requests_total[5m]) foo)`, nil)),
		visible(`[data-testid=error]`),
		chromedp.Sleep(1500*time.Millisecond), // the linter runs after a pause
	)
	msg := text(t, ctx, `[data-testid=error]`)
	marks := eval[int](t, ctx, `document.querySelectorAll('.cm-lintRange-error').length`)
	if !strings.Contains(msg, "parse error") {
		t.Errorf("error shown: %q, want the API's parse error", msg)
	}
	if marks == 0 {
		t.Error("no lint mark in the editor")
	}
	shot(t, ctx, "query-error")
}

// TestQueryDeepLink: a Prometheus UI link (/graph?g0.expr=…&g0.tab=1)
// opens the Query page in that state, and the page's own URL reproduces
// the view in a new browser.
func TestQueryDeepLink(t *testing.T) {
	ctx := browser(t, 1280, 800)
	expr := `sum by (code) (rate(http_requests_total{service="checkout"}[5m]))`
	// At the end of the last stage: the demo's traffic stops after it.
	at := env.stages[len(env.stages)-1].End
	q := url.Values{"g0.expr": {expr}, "g0.tab": {"1"}, "g0.end_input": {at.UTC().Format("2006-01-02 15:04:05")}}
	do(t, ctx,
		chromedp.Navigate(env.url+"/graph?"+q.Encode()),
		visible(`[data-testid=result-table]`),
		visible(`.cm-content`),
	)
	rows := eval[int](t, ctx, `document.querySelectorAll('[data-testid=result-table] tbody tr').length`)
	tab := text(t, ctx, `[role=tab][aria-selected=true]`)
	editor := text(t, ctx, `.cm-content`)
	if rows != 2 || tab != "Table" || editor != expr {
		t.Errorf("Prometheus link opened tab %q with %d rows and %q; want Table, 2 rows (200, 500), %q", tab, rows, editor, expr)
	}
	// Change the view (graph, 2h, stacked, deploys only): the URL carries it.
	do(t, ctx,
		click(`[role=tab]:nth-child(1)`),
		visible(`[data-testid=graph] .u-over`),
		choose(`select`, "2h"),
		visible(`[data-testid=graph] .u-over`),
		click(`input[type=checkbox]`),
		fill(`[data-testid=ev-name]`, "canary-step"),
		chromedp.Sleep(300*time.Millisecond),
	)
	loc := location(t, ctx)
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	p := u.Query()
	if u.Path != "/query" || p.Get("g0.expr") != expr || p.Get("g0.range_input") != "2h" || p.Get("g0.display_mode") != "stacked" || p.Get("ev.name") != "canary-step" {
		t.Fatalf("URL %s does not hold the view", loc)
	}
	// The same link in a fresh browser shows the same view.
	ctx2 := browser(t, 1280, 800)
	do(t, ctx2,
		chromedp.Navigate(loc),
		visible(`[data-testid=graph] .ev-region`),
		visible(`.cm-content`),
	)
	state := eval[struct {
		Expr    string
		Range   string
		Stacked bool
		Regions []string
	}](t, ctx2, `({expr: document.querySelector('.cm-content').textContent, range: document.querySelector('select').value,
			stacked: document.querySelector('input[type=checkbox]').checked,
			regions: [...document.querySelectorAll('.ev-region')].map(e => e.dataset.name)})`)
	if state.Expr != expr || state.Range != "2h" || !state.Stacked {
		t.Errorf("deep link reopened as %+v", state)
	}
	for _, n := range state.Regions {
		if n != "canary-step" {
			t.Errorf("event filter canary-step drew a %s window", n)
		}
	}
	if len(state.Regions) == 0 {
		t.Error("no canary-step window drawn")
	}
	shot(t, ctx2, "query-stacked")
}

// TestQueryDrawsWindowsOpenedBeforeTheRange: a window that opened before
// the graph's range is drawn from the range's left edge: one that closed
// inside the range (read from its stop), and one that closed after it (the
// range ends in the past), which no event inside the range names.
func TestQueryDrawsWindowsOpenedBeforeTheRange(t *testing.T) {
	var deploy apiEvent
	var windows []apiEvent
	for _, e := range listEvents(t) {
		if e.State == "start" && e.Window != nil && e.Window.End != nil {
			windows = append(windows, e)
			if e.Name == "deploy" {
				deploy = e
			}
		}
	}
	if deploy.ID == "" {
		t.Fatal("the demo stored no closed deploy window")
	}
	s, e := deploy.Timestamp, *deploy.Window.End
	if e.Sub(s) < 8*time.Minute {
		t.Fatalf("the deploy window lasts %v; the test needs 8 minutes", e.Sub(s))
	}
	expr := `sum(rate(http_requests_total{service="checkout"}[1m]))`
	for _, c := range []struct {
		name     string
		from, to time.Time
	}{
		// From inside the deploy, past its end.
		{"closed-inside", s.Add(3 * time.Minute), e.Add(5 * time.Minute)},
		// Wholly inside the deploy: no event of the range.
		{"spanning", s.Add(3 * time.Minute), e.Add(-2 * time.Minute)},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := browser(t, 1280, 800)
			do(t, ctx,
				chromedp.Navigate(queryURLAt(expr, c.from, c.to)),
				visible(`[data-testid=graph] .ev-region[data-id="`+deploy.ID+`"]`),
			)
			got := eval[struct {
				Xmin, Xmax, Width float64
				Regions           []struct {
					ID, Class           string
					Start, End, Left, W float64
				}
			}](t, ctx, `(() => {
				const g = document.querySelector('[data-testid=graph]');
				const c = g.querySelector('.chart');
				return {xmin: +c.dataset.xmin, xmax: +c.dataset.xmax, width: g.querySelector('.u-over').clientWidth,
					regions: [...g.querySelectorAll('.ev-region')].map(e => ({id: e.dataset.id, class: e.className, start: +e.dataset.start,
						end: +e.dataset.end, left: parseFloat(e.style.left), w: parseFloat(e.style.width)}))};
			})()`)
			px := func(v float64) float64 {
				v = math.Min(math.Max(v, got.Xmin), got.Xmax)
				return (v - got.Xmin) / (got.Xmax - got.Xmin) * got.Width
			}
			drawn := map[string]int{}
			for i, r := range got.Regions {
				drawn[r.ID] = i
			}
			// Every window of the API that overlaps the range (more than
			// at an edge) is drawn, at its place, clipped to the range.
			from, to := float64(c.from.Unix()), float64(c.to.Unix())
			n := 0
			for _, w := range windows {
				ws, we := float64(w.Timestamp.UnixMilli())/1000, float64(w.Window.End.UnixMilli())/1000
				if !(ws < to && we > from) {
					continue
				}
				n++
				i, ok := drawn[w.ID]
				if !ok {
					t.Errorf("window %s %s [%v, %v] overlaps [%v, %v] and is not drawn", w.Name, w.ID, ws, we, from, to)
					continue
				}
				r := got.Regions[i]
				if r.Start != ws || r.End != we {
					t.Errorf("window %s drawn as [%v, %v], the API's is [%v, %v]", w.ID, r.Start, r.End, ws, we)
				}
				if math.Abs(r.Left-px(ws)) > 1 || math.Abs(r.Left+r.W-px(we)) > 1 {
					t.Errorf("window %s at x=[%.1f, %.1f], want [%.1f, %.1f]", w.ID, r.Left, r.Left+r.W, px(ws), px(we))
				}
			}
			// It starts at the left edge, without the line that marks a
			// window's start.
			if i := drawn[deploy.ID]; got.Regions[i].Left > 1 || !strings.Contains(got.Regions[i].Class, "before-range") {
				t.Errorf("the deploy, open before the range, is drawn from x=%.1f with class %q", got.Regions[i].Left, got.Regions[i].Class)
			}
			if n < 2 {
				t.Errorf("only %d windows overlap the range; the test wants the deploy and a canary step", n)
			}
			if c.name == "spanning" {
				shot(t, ctx, "query-window-before-range")
			}
		})
	}
}

// TestQueryGraphDrawsTheAPIsValues: the console reads query_range in
// levitated's binary matrix (pkg/matrixcodec, its +gzip form inflated by
// the page), and what the chart holds is,
// point for point, the API's JSON answer to the same query: the same
// series, each value at its step, nothing else. Over the last hour the
// series start within the range (put on the chart's steps one by one);
// within the canary stages every series has a value at every step, and
// the chart draws the answer's own arrays.
func TestQueryGraphDrawsTheAPIsValues(t *testing.T) {
	inStages := env.stages[len(env.stages)-1].End.Add(-time.Minute).Truncate(time.Second)
	for _, c := range []struct {
		name  string
		end   time.Time
		rng   int64  // seconds
		input string // g0.range_input
		step  int64  // Prometheus UI's step of range/250
		whole bool   // every series at every step
	}{
		{"last hour", env.end, 3600, "1h", 14, false},
		{"in the stages", inStages, 480, "8m", 2, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			extra := url.Values{"g0.range_input": {c.input}}
			if c.end != env.end {
				extra.Set("g0.end_input", c.end.UTC().Format("2006-01-02 15:04:05"))
			}
			checkGraphValues(t, browser(t, 1280, 800), "worker", extra, c.end.Unix()-c.rng, c.end.Unix(), c.step, c.whole)
		})
	}
}

// TestQueryGraphWithoutTheWorker: when the boot's worker fails (its script
// cannot be loaded: here the page's Worker is pointed at a path the server
// answers 404), the page inflates the first answer itself and draws the
// same values.
func TestQueryGraphWithoutTheWorker(t *testing.T) {
	ctx := browser(t, 1280, 800)
	broken := page.AddScriptToEvaluateOnNewDocumentParams{Source: `(() => {
		const W = window.Worker;
		window.Worker = function (url, opts) { return new W('/no-such-worker.js', opts); };
	})()`}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, broken); err != nil {
		t.Fatalf("break the page's Worker: %v", err)
	}
	checkGraphValues(t, ctx, "page", url.Values{"g0.range_input": {"1h"}}, env.end.Unix()-3600, env.end.Unix(), 14, false)
}

// checkGraphValues opens the Query page in ctx and compares what it drew
// with the API's answer; wantInflated is who inflated the first answer
// ("worker": the boot's worker; "page": the app, without a worker).
func checkGraphValues(t *testing.T, ctx context.Context, wantInflated string, extra url.Values, start, end, step int64, whole bool) {
	expr := `sum by (track) (rate(http_requests_total{service="checkout"}[1m]))`
	do(t, ctx, chromedp.Navigate(queryURL(expr, extra)), visible(`.chart[data-drawn-at]`))
	got := eval[struct {
		Format   string
		Inflated string
		Labels   []string
		Data     [][]any
		Typed    []bool
	}](t, ctx, `(() => {
		const u = document.querySelector('.chart').uplot;
		const g = document.querySelector('[data-testid=graph]').dataset;
		return {format: g.format, inflated: g.inflated,
			labels: u.series.slice(1).map(s => s.label),
			typed: u.data.slice(1).map(a => a instanceof Float64Array),
			data: u.data.map(a => Array.from(a, v => v === null || v === undefined ? null : Number.isFinite(v) ? v : String(v)))};
	})()`)
	if got.Format != "matrix+gzip" {
		t.Errorf("the console read query_range as %q, want levitated's binary matrix, gzip-compressed by the codec", got.Format)
	}
	// The page's first answer is inflated by the boot's worker
	// (web/src/worker.ts), off the page's main thread, or by the page when
	// there is no worker.
	if got.Inflated != wantInflated {
		t.Errorf("the first query's answer was inflated by %q, want %q", got.Inflated, wantInflated)
	}
	for i, typed := range got.Typed {
		if typed != whole {
			t.Errorf("series %s drawn from the answer's own array: %v, want %v", got.Labels[i], typed, whole)
		}
	}
	var r struct {
		Result []struct {
			Metric map[string]string
			Values [][2]any
		}
	}
	promAPI(t, "/api/v1/query_range", url.Values{"query": {expr}, "start": {fmt.Sprint(start)}, "end": {fmt.Sprint(end)}, "step": {fmt.Sprint(step)}}, &r)
	if len(r.Result) < 2 || len(got.Data) != len(r.Result)+1 || len(got.Labels) != len(r.Result) {
		t.Fatalf("chart holds %d series (%v), the API answers %d", len(got.Data)-1, got.Labels, len(r.Result))
	}
	for i, x := range got.Data[0] {
		if x != float64(start+int64(i)*step) {
			t.Fatalf("x[%d] = %v, want %d", i, x, start+int64(i)*step)
		}
	}
	for _, s := range r.Result {
		label := fmt.Sprintf(`{track=%q}`, s.Metric["track"])
		j := -1
		for k, l := range got.Labels {
			if l == label {
				j = k
			}
		}
		if j < 0 {
			t.Errorf("series %s of the API is not on the chart (%v)", label, got.Labels)
			continue
		}
		ys := got.Data[j+1]
		drawn := 0
		for _, y := range ys {
			if y != nil {
				drawn++
			}
		}
		if drawn != len(s.Values) {
			t.Errorf("%s: %d points drawn, the API has %d", label, drawn, len(s.Values))
		}
		for _, p := range s.Values {
			ts, v := p[0].(float64), p[1].(string)
			k := int((int64(math.Round(ts)) - start) / step)
			if k < 0 || k >= len(ys) {
				t.Fatalf("%s: point at %v outside the chart", label, ts)
			}
			want, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			switch y := ys[k].(type) {
			case float64:
				if y != want {
					t.Errorf("%s at %v: drawn %v, the API says %s", label, ts, y, v)
				}
			case string: // NaN, ±Inf
				if y != strconv.FormatFloat(want, 'f', -1, 64) && !(y == "Infinity" && math.IsInf(want, 1)) && !(y == "-Infinity" && math.IsInf(want, -1)) {
					t.Errorf("%s at %v: drawn %s, the API says %s", label, ts, y, v)
				}
			default:
				t.Errorf("%s at %v: nothing drawn, the API says %s", label, ts, v)
			}
		}
	}
}

// TestQueryGraphDrawsManySeries: a chart of more than 50 series draws its
// lines in one pass (chart/lines.ts, on a canvas of its own over the plot)
// rather than through uPlot's own paths (uPlot is given one series standing
// in for their range: Chart.tsx); every series is drawn where
// uPlot's scales put its values: the lines' canvas is painted at (or
// within a pixel of) nearly every sample.
func TestQueryGraphDrawsManySeries(t *testing.T) {
	ctx := browser(t, 1280, 800)
	expr := `{__name__=~"http_.+", service="checkout"}`
	end := env.stages[len(env.stages)-1].End.Add(-time.Minute).Truncate(time.Second)
	do(t, ctx, chromedp.Navigate(queryURL(expr, url.Values{"g0.range_input": {"8m"}, "g0.end_input": {end.UTC().Format("2006-01-02 15:04:05")}})), visible(`.chart[data-drawn-at]`))
	got := eval[struct {
		Series, Samples, Painted int
		Missed                   []string
	}](t, ctx, `(() => {
		const el = document.querySelector('.chart'), u = el.uplot;
		// The series drawn: the chart's own (el.lines) when uPlot is
		// given a stand-in for their range (Chart.tsx), on its y scale.
		const series = el.lines ? el.lines.map(s => ({label: s.label, ys: s.values})) : u.series.slice(1).map((s, i) => ({label: s.label, ys: u.data[i + 1]}));
		// The lines' own canvas over the plot (chart/lines.ts), in the
		// plot's device pixels.
		const c = document.querySelector('.chart canvas.u-lines').getContext('2d'), w = c.canvas.width, h = c.canvas.height;
		const px = c.getImageData(0, 0, w, h).data;
		const painted = (x, y) => { for (let dx = -1; dx <= 1; dx++) for (let dy = -1; dy <= 1; dy++) {
			const X = Math.round(x) + dx, Y = Math.round(y) + dy;
			if (X >= 0 && Y >= 0 && X < w && Y < h && px[(Y * w + X) * 4 + 3] > 0) return true; } return false; };
		let samples = 0, hits = 0; const missed = [];
		for (const s of series) {
			const ys = s.ys;
			for (let i = 0; i < ys.length; i += 7) {
				const v = ys[i];
				if (v == null || !Number.isFinite(v)) continue;
				samples++;
				const x = u.valToPos(u.data[0][i], 'x', true) - u.bbox.left, y = u.valToPos(v, 'y', true) - u.bbox.top;
				if (painted(x, y)) hits++; else if (missed.length < 5) missed.push(s.label + ' @' + i);
			}
		}
		return {series: series.length, samples, painted: hits, missed};
	})()`)
	if got.Series <= 50 {
		t.Fatalf("%s draws %d series; the test wants more than 50", expr, got.Series)
	}
	if got.Samples < 10*got.Series || float64(got.Painted) < 0.98*float64(got.Samples) {
		t.Errorf("%d series: the canvas is painted at %d of %d samples (missed %v)", got.Series, got.Painted, got.Samples, got.Missed)
	}
	shotOfElement(t, ctx, "query-many-series", `[data-testid=graph] .chart`)
}

// TestQueryGraphLinesRaster: the many-series lines are rasterised by the
// WebAssembly module (chart/wasmlines.ts) and, in a page without
// WebAssembly, by lines.ts's own loop, with the same pixels: the lines'
// canvas of the same chart is identical both ways, over a range where
// every series is at every step (drawn from the answer's Float64Array)
// and one where the series start and stop within it (gaps: null).
func TestQueryGraphLinesRaster(t *testing.T) {
	expr := `{__name__=~"http_.+", service="checkout"}`
	inStages := env.stages[len(env.stages)-1].End.Add(-time.Minute).Truncate(time.Second)
	for _, c := range []struct {
		name, rng string
		end       time.Time
	}{
		{"every step", "8m", inStages},
		{"with gaps", "1h", env.end},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := queryURL(expr, url.Values{"g0.range_input": {c.rng}, "g0.end_input": {c.end.UTC().Format("2006-01-02 15:04:05")}})
			lines := func(ctx context.Context) linesCanvas {
				do(t, ctx, chromedp.Navigate(u), visible(`.chart[data-drawn-at]`))
				return eval[linesCanvas](t, ctx, `(() => {
					const c = document.querySelector('.chart canvas.u-lines'), g = c.getContext('2d');
					const px = new Uint32Array(g.getImageData(0, 0, c.width, c.height).data.buffer);
					// FNV-1a over the pixels, and how many are painted.
					let h = 0x811c9dc5, painted = 0, gaps = 0;
					for (const p of px) { h = Math.imul(h ^ p, 0x01000193) >>> 0; if (p) painted++; }
					for (const s of document.querySelector('.chart').lines ?? []) for (const v of s.values) if (v == null) gaps++;
					return {raster: c.dataset.raster, w: c.width, h: c.height, hash: h, painted, gaps};
				})()`)
			}
			wasm := lines(browser(t, 1280, 800))
			noWasm := browser(t, 1280, 800)
			if _, err := chromedp.Call(noWasm, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `delete window.WebAssembly`}); err != nil {
				t.Fatalf("remove the page's WebAssembly: %v", err)
			}
			js := lines(noWasm)
			if wasm.Raster != "wasm" || js.Raster != "js" {
				t.Fatalf("rasterised by %q and, without WebAssembly, by %q; want wasm and js", wasm.Raster, js.Raster)
			}
			if wasm.Painted < 1000 {
				t.Fatalf("%d pixels painted: no lines to compare", wasm.Painted)
			}
			if (c.name == "with gaps") != (wasm.Gaps > 0) {
				t.Fatalf("%d gaps in the series drawn; the case %q wants them %v", wasm.Gaps, c.name, c.name == "with gaps")
			}
			if wasm.W != js.W || wasm.H != js.H || wasm.Hash != js.Hash || wasm.Painted != js.Painted {
				t.Errorf("the lines differ: WebAssembly %+v, without %+v", wasm, js)
			}
		})
	}
}

type linesCanvas struct {
	Raster              string
	W, H, Painted, Gaps int
	Hash                uint32
}

// TestQueryLegendFiltersAndToggles: the legend (rendered after the chart
// is drawn) lists every series; its filter narrows the list and the chart;
// an entry is a button the keyboard reaches that hides its series (in the
// URL, so a link keeps it) and shows it again.
func TestQueryLegendFiltersAndToggles(t *testing.T) {
	ctx := browser(t, 1280, 800)
	expr := `sum by (track) (rate(http_requests_total{service="checkout"}[1m]))`
	do(t, ctx, chromedp.Navigate(queryURL(expr, nil)), visible(`.chart[data-drawn-at]`), visible(`.legend .legend-item`))
	type state struct {
		Items   []string
		Pressed []bool
		Charted int
		Count   string
		Hidden  []string
	}
	read := func() state {
		return eval[state](t, ctx, `(() => ({
			items: [...document.querySelectorAll('.legend .legend-item')].map(b => b.textContent.trim()),
			pressed: [...document.querySelectorAll('.legend .legend-item')].map(b => b.getAttribute('aria-pressed') === 'true'),
			charted: document.querySelector('.chart').uplot.series.length - 1,
			count: document.querySelector('.legend-filter .muted').textContent,
			hidden: new URLSearchParams(location.search).getAll('g0.hide'),
		}))()`)
	}
	s := read()
	if len(s.Items) != 3 || s.Charted != 3 || s.Count != "3 of 3 series" {
		t.Fatalf("legend %q (%s), chart of %d series; want the 3 tracks on both", s.Items, s.Count, s.Charted)
	}
	do(t, ctx, keys(`.legend-filter input`, "canary"), chromedp.Sleep(200*time.Millisecond))
	s = read()
	if len(s.Items) != 1 || !strings.Contains(s.Items[0], "canary") || s.Charted != 1 || s.Count != "1 of 3 series" {
		t.Errorf("filtered by canary: legend %q (%s), chart of %d series", s.Items, s.Count, s.Charted)
	}
	do(t, ctx, fill(`.legend-filter input`, ""), chromedp.Sleep(200*time.Millisecond))
	// Tab from the filter reaches the first entry; Enter hides its series.
	do(t, ctx, focus(`.legend-filter input`), chromedp.KeyEvent(kb.Tab))
	if f := eval[string](t, ctx, `document.activeElement.className + ':' + document.activeElement.textContent.trim()`); !strings.HasPrefix(f, "legend-item:") {
		t.Fatalf("Tab from the legend's filter focuses %q, not its first entry", f)
	}
	do(t, ctx, chromedp.KeyEvent(kb.Enter), chromedp.Sleep(300*time.Millisecond))
	s = read()
	if len(s.Items) != 3 || s.Pressed[0] || !s.Pressed[1] || s.Charted != 2 || len(s.Hidden) != 1 || !strings.Contains(s.Items[0], s.Hidden[0]) {
		t.Errorf("after Enter on %q: pressed %v, chart of %d series, hidden in the URL %q", s.Items[0], s.Pressed, s.Charted, s.Hidden)
	}
	do(t, ctx, focus(`.legend .legend-item`), chromedp.KeyEvent(kb.Enter), chromedp.Sleep(300*time.Millisecond))
	if s = read(); s.Charted != 3 || len(s.Hidden) != 0 {
		t.Errorf("after Enter again: chart of %d series, hidden %q; want all 3 shown", s.Charted, s.Hidden)
	}
}
