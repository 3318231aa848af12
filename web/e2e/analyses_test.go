package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestAnalysesShowsPerMetricVerdicts: the Analyses page lists the Kayenta
// execution, and its page shows each metric's classification as the API
// gives it, with the explanation.
func TestAnalysesShowsPerMetricVerdicts(t *testing.T) {
	ctx := browser(t, 1280, 800)
	do(t, ctx,
		chromedp.Navigate(env.url+"/analyses"),
		visible(`[data-testid=analyses] tbody tr`),
	)
	ids := eval[[]string](t, ctx, `[...document.querySelectorAll('[data-testid=analyses] tbody tr')].map(r => r.dataset.id)`)
	if len(ids) != 1 || ids[0] != env.execution {
		t.Fatalf("analyses listed %q, want the execution %s", ids, env.execution)
	}
	// The other analyses recorded (the demo's native ones, as Argo
	// Rollouts' stage judge asks for them) are listed from their
	// change_analysis events, each with its verdict and the change it judged.
	var recorded []apiEvent
	for _, e := range listEvents(t) {
		if e.Name == "change_analysis" && e.Attributes["source"] != "kayenta" {
			recorded = append(recorded, e)
		}
	}
	if len(recorded) == 0 {
		t.Fatal("the demo recorded no native analysis")
	}
	do(t, ctx, visible(`[data-testid=recorded-analyses] tbody tr`))
	rows := eval[[]struct{ ID, Verdict, Change string }](t, ctx, `[...document.querySelectorAll('[data-testid=recorded-analyses] tbody tr')].map(r => ({
		id: r.dataset.id, verdict: r.querySelector('.badge').textContent, change: (r.querySelector('a[href^="/changes/"]') || {}).pathname || ''}))`)
	if len(rows) != len(recorded) {
		t.Errorf("the page lists %d other analyses, the events API %d", len(rows), len(recorded))
	}
	for _, e := range recorded {
		found := false
		for _, r := range rows {
			found = found || (r.ID == e.ID && strings.EqualFold(r.Verdict, e.Attributes["verdict"]) && r.Change == "/changes/"+e.Attributes["change_id"])
		}
		if !found {
			t.Errorf("analysis %s (%s of change %s) is not listed as the API has it: %+v", e.ID, e.Attributes["verdict"], e.Attributes["change_id"], rows)
		}
	}
	shot(t, ctx, "analyses")

	var api struct {
		Result struct {
			JudgeResult struct {
				Results []struct {
					Name                 string
					Classification       string
					ClassificationReason string
				}
				Score struct{ Score float64 }
			}
		}
	}
	if err := call(http.MethodGet, env.url+"/canary/"+env.execution, "", &api); err != nil {
		t.Fatal(err)
	}
	do(t, ctx,
		click(`[data-testid=analyses] tbody tr a`),
		visible(`[data-testid=metric-verdicts] .metric-row`),
	)
	score := text(t, ctx, `[data-testid=score]`)
	shown := eval[[]struct{ Name, Class, Explanation string }](t, ctx, `[...document.querySelectorAll('[data-testid=metric-verdicts] .metric-row')].map(r => ({
			name: r.dataset.metric, class: r.querySelector('[data-testid=classification]').textContent,
			explanation: r.nextElementSibling.textContent}))`)
	rs := api.Result.JudgeResult.Results
	if len(shown) != len(rs) {
		t.Fatalf("page shows %d metrics, the execution judged %d", len(shown), len(rs))
	}
	for i, r := range rs {
		if shown[i].Name != r.Name || shown[i].Class != r.Classification {
			t.Errorf("metric %d: page shows %s %s, the API %s %s", i, shown[i].Name, shown[i].Class, r.Name, r.Classification)
		}
		if r.ClassificationReason != "" && shown[i].Explanation != r.ClassificationReason {
			t.Errorf("metric %s: explanation %q, the API's %q", r.Name, shown[i].Explanation, r.ClassificationReason)
		}
	}
	if score != ftoa(api.Result.JudgeResult.Score.Score) {
		t.Errorf("score shown %s, the API's %v", score, api.Result.JudgeResult.Score.Score)
	}
	shot(t, ctx, "analysis")
}
