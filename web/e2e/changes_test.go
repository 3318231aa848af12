package e2e

import (
	"math"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestChangesListAndChangePage: the Changes page lists the demo's windows;
// a click opens a change page whose before / during / after figures are
// the means of the API's own range query over those periods.
func TestChangesListAndChangePage(t *testing.T) {
	// The 40 % stage, at which the canary regresses, once levitated has
	// judged it (its change_impact event).
	var stage apiEvent
	for _, e := range listEvents(t) {
		if e.State == "start" && e.Name == "canary-step" && e.Attributes["weight"] == "40" {
			stage = e
		}
	}
	if stage.ID == "" {
		t.Fatal("no canary-step window at weight 40")
	}
	verdict := impactOf(t, stage.ID).Verdict

	ctx := browser(t, 1280, 800)
	do(t, ctx,
		chromedp.Navigate(env.url+"/changes?range=6h"),
		visible(`[data-testid=changes] tbody tr`),
	)
	rows := eval[[]string](t, ctx, `[...document.querySelectorAll('[data-testid=changes] tbody tr')].map(r => r.dataset.id)`)
	// A change is a window (its start) or a point event (a stop that
	// closed no window: the demo's canary-verdict events); levitated's
	// judgements — change_impact events (automatic) and change_analysis
	// events (the analyses the demo asks for, as Argo Rollouts would) — are
	// shown on the change they judge, not as changes.
	changes := 0
	analyses := map[string]apiEvent{} // the newest analysis of each change
	for _, e := range listEvents(t) {
		if isJudgement(e) {
			if id := e.Attributes["change_id"]; e.Name == "change_analysis" && id != "" && !analyses[id].Timestamp.After(e.Timestamp) {
				analyses[id] = e
			}
			continue
		}
		if e.State == "start" || e.Window == nil {
			changes++
		}
	}
	if len(rows) != changes {
		t.Errorf("the page lists %d changes, the API has %d windows and point events", len(rows), changes)
	}
	if len(analyses) == 0 {
		t.Fatal("the demo's analyses recorded no change_analysis event of a change")
	}
	for id, a := range analyses {
		got := eval[string](t, ctx, `(() => { const m = document.querySelector('[data-testid=changes] tbody tr[data-id="`+id+`"] [data-testid=analysis-mark] .badge'); return m ? m.textContent : ''; })()`)
		if !strings.EqualFold(got, a.Attributes["verdict"]) {
			t.Errorf("change %s shows analysis verdict %q, its newest change_analysis event %q", id, got, a.Attributes["verdict"])
		}
	}
	mark := eval[string](t, ctx, `(() => { const m = document.querySelector('[data-testid=changes] tbody tr[data-id="`+stage.ID+`"] [data-testid=impact-mark]'); return m ? m.textContent : ''; })()`)
	if !strings.EqualFold(mark, verdict) {
		t.Errorf("the 40 %% stage's row shows verdict %q, the impact API %q", mark, verdict)
	}
	// The live status is the events tail's own: live once the server has
	// subscribed it (its answer's header), not after a guess.
	do(t, ctx, visible(`[data-testid=changes-live][data-state=live]`))
	if got := eval[string](t, ctx, `document.querySelector('[data-testid=changes-live]').textContent`); got != "● live" {
		t.Errorf("the Changes page's status reads %q, want ● live", got)
	}
	shot(t, ctx, "changes")

	// The filter narrows the list (and lands in the URL).
	do(t, ctx,
		keys(`[data-testid=changes-match]`, `weight="40"`),
		chromedp.Sleep(800*time.Millisecond),
		visible(`[data-testid=changes] tbody tr`),
	)
	filtered := eval[int](t, ctx, `document.querySelectorAll('[data-testid=changes] tbody tr').length`)
	loc := location(t, ctx)
	want := 0
	for _, e := range listEvents(t, `weight="40"`) {
		if !isJudgement(e) && (e.State == "start" || e.Window == nil) {
			want++
		}
	}
	if filtered != want || want < 2 || !strings.Contains(loc, "match=weight") {
		t.Errorf("weight=\"40\" lists %d changes, the API %d (the stage and its verdict at least), URL %s", filtered, want, loc)
	}

	// Open the 40 % stage.
	do(t, ctx,
		click(`[data-testid=changes] tbody tr[data-id="`+stage.ID+`"] a`),
		visible(`[data-testid=figures]`),
		visible(`[data-testid=figures] tr[data-signal=p99] td[data-value]:not([data-value=""])`),
		visible(`[data-testid=figures] tr[data-signal=rate] td[data-value]:not([data-value=""])`),
		visible(`[data-testid=figures] tr[data-signal=errors] td[data-value]:not([data-value=""])`),
	)
	loc = location(t, ctx)
	if !strings.HasSuffix(loc, "/changes/"+stage.ID) {
		t.Fatalf("opened %s, want the change page of %s", loc, stage.ID)
	}
	// Its judgements list the analyses recorded of it, newest first.
	var recorded []apiEvent
	for _, e := range listEvents(t, `change_id="`+stage.ID+`"`) {
		if e.Name == "change_analysis" {
			recorded = append(recorded, e)
		}
	}
	if len(recorded) == 0 {
		t.Fatal("the demo recorded no analysis of the 40 % stage")
	}
	do(t, ctx, visible(`[data-testid=recorded-analyses] li`))
	shown := eval[[]struct{ ID, Verdict string }](t, ctx, `[...document.querySelectorAll('[data-testid=recorded-analyses] li')].map(li => ({id: li.dataset.id, verdict: li.querySelector('.badge').textContent}))`)
	if len(shown) != len(recorded) {
		t.Errorf("the change page lists %d recorded analyses, the API has %d", len(shown), len(recorded))
	}
	for _, a := range recorded {
		found := false
		for _, s := range shown {
			found = found || (s.ID == a.ID && strings.EqualFold(s.Verdict, a.Attributes["verdict"]))
		}
		if !found {
			t.Errorf("recorded analysis %s (%s) is not listed with its verdict: %+v", a.ID, a.Attributes["verdict"], shown)
		}
	}
	fig := eval[struct {
		From, To, Step float64
		Rows           map[string]map[string]string
	}](t, ctx, `(() => {
		const t = document.querySelector('[data-testid=figures]');
		const rows = {};
		for (const r of t.querySelectorAll('tbody tr')) {
			rows[r.dataset.signal] = {};
			for (const c of r.querySelectorAll('td[data-period]')) rows[r.dataset.signal][c.dataset.period] = c.dataset.value;
		}
		return {from: +t.dataset.from, to: +t.dataset.to, step: +t.dataset.step, rows};
	})()`)

	// The same figures from the API: a range query over the page's grid,
	// averaged over each period here.
	start := float64(stage.Timestamp.Unix())
	end := float64(stage.Window.End.Unix())
	d := math.Max(300, end-start)
	periods := map[string][2]float64{"before": {start - d, start}, "during": {start, end}, "after": {end, end + d}}
	queries := map[string]string{
		"rate":   `sum(rate(http_requests_total{service="checkout"}[1m]))`,
		"errors": `sum(rate(http_requests_total{service="checkout", code=~"5.."}[1m])) / sum(rate(http_requests_total{service="checkout"}[1m]))`,
		"p99":    `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="checkout"}[1m])))`,
	}
	for sig, q := range queries {
		var res struct{ Result []struct{ Values [][2]any } }
		promAPI(t, "/api/v1/query_range", url.Values{"query": {q}, "start": {ftoa(fig.From)}, "end": {ftoa(fig.To)}, "step": {ftoa(fig.Step)}}, &res)
		m := res.Result
		if len(m) != 1 {
			t.Fatalf("%s: %d series", sig, len(m))
		}
		for p, ab := range periods {
			if ab[1] > float64(time.Now().Unix()) {
				continue
			}
			var sum float64
			var n int
			for _, v := range m[0].Values {
				ts := v[0].(float64)
				f, _ := strconv.ParseFloat(v[1].(string), 64)
				if ts >= ab[0] && ts < ab[1] && !math.IsNaN(f) && !math.IsInf(f, 0) {
					sum += f
					n++
				}
			}
			shown, err := strconv.ParseFloat(fig.Rows[sig][p], 64)
			if n == 0 {
				if fig.Rows[sig][p] != "" {
					t.Errorf("%s %s: page shows %s, the API has no samples", sig, p, fig.Rows[sig][p])
				}
				continue
			}
			if err != nil || math.Abs(shown-sum/float64(n)) > 1e-9*math.Max(1, math.Abs(sum/float64(n))) {
				t.Errorf("%s %s: page shows %q, the API's mean is %v", sig, p, fig.Rows[sig][p], sum/float64(n))
			}
		}
	}
	shot(t, ctx, "change")
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// isJudgement reports whether e is one of levitated's judgements of a
// change (an automatic impact verdict or an analysis), which the console
// shows on the change, not as one.
func isJudgement(e apiEvent) bool { return e.Name == "change_impact" || e.Name == "change_analysis" }
