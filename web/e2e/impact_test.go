package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// apiImpact is what the test reads of GET /api/v1/events/{id}/impact.
type apiImpact struct {
	Verdict        string
	Score          *float64
	FailingSignals []string `json:"failing_signals"`
	Explanation    []string
	Comparisons    []struct {
		Kind    string
		Signals []struct {
			Signal         string
			Classification string
			Ratio          *float64
		}
	}
}

// impactOf waits (up to two minutes) until levitated has judged the
// change: its scheduler judges changes after they end, in the
// background, after a start.
func impactOf(t *testing.T, id string) apiImpact {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(env.url + "/api/v1/events/" + id + "/impact")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK {
			var j apiImpact
			if err := json.Unmarshal(b, &j); err != nil {
				t.Fatal(err)
			}
			return j
		}
		if resp.StatusCode != http.StatusNotFound || time.Now().After(deadline) {
			t.Fatalf("impact of %s: %d %s", id, resp.StatusCode, b)
		}
		time.Sleep(time.Second)
	}
}

// TestChangePageShowsImpactVerdict: a change page shows the automatic
// impact verdict the API gives (verdict, score, failing signals, the
// sentences, each signal's classification and ratio); a change that is
// not judged says why, in the API's words.
func TestChangePageShowsImpactVerdict(t *testing.T) {
	var ids []string
	var verdict apiEvent
	for _, e := range listEvents(t) {
		switch {
		case e.State == "start" && (e.Name == "deploy" || e.Name == "canary-step"):
			ids = append(ids, e.ID)
		case e.Name == "canary-verdict" && e.Window == nil:
			verdict = e
		}
	}
	if len(ids) < 2 || verdict.ID == "" {
		t.Fatalf("the demo stored %d deploy and canary-step windows and verdict %q", len(ids), verdict.ID)
	}
	ctx := browser(t, 1280, 900)
	failed := false
	for _, id := range ids {
		want := impactOf(t, id)
		do(t, ctx,
			chromedp.Navigate(env.url+"/changes/"+id),
			visible(`[data-testid=impact][data-verdict]:not([data-verdict=""])`),
		)
		got := eval[struct {
			Verdict, Score, Failing string
			Explanation             []string
			Signals                 map[string]map[string]string
		}](t, ctx, `(() => {
			const s = document.querySelector('[data-testid=impact]');
			const sigs = {};
			for (const c of s.querySelectorAll('[data-comparison]'))
				for (const r of c.querySelectorAll('tr[data-signal]'))
					sigs[c.dataset.comparison + '/' + r.dataset.signal] = {cls: r.dataset.classification, ratio: r.dataset.ratio};
			const f = s.querySelector('[data-testid=impact-failing]');
			return {verdict: s.dataset.verdict, score: s.dataset.score, failing: f ? f.textContent : '',
				explanation: [...s.querySelectorAll('[data-testid=impact-explanation]')].map(p => p.textContent), signals: sigs};
		})()`)
		if got.Verdict != want.Verdict {
			t.Errorf("%s: page shows verdict %q, the API %q", id, got.Verdict, want.Verdict)
		}
		wantScore := ""
		if want.Score != nil {
			wantScore = strconv.FormatFloat(*want.Score, 'f', -1, 64)
		}
		if got.Score != wantScore {
			t.Errorf("%s: page shows score %q, the API %q", id, got.Score, wantScore)
		}
		if f := strings.Join(want.FailingSignals, ", "); got.Failing != f {
			t.Errorf("%s: page shows failing %q, the API %q", id, got.Failing, f)
		}
		if strings.Join(got.Explanation, "\n") != strings.Join(want.Explanation, "\n") {
			t.Errorf("%s: page explains %q, the API %q", id, got.Explanation, want.Explanation)
		}
		n := 0
		for _, c := range want.Comparisons {
			for _, s := range c.Signals {
				n++
				g, ok := got.Signals[c.Kind+"/"+s.Signal]
				ratio := ""
				if s.Ratio != nil {
					ratio = strconv.FormatFloat(*s.Ratio, 'f', -1, 64)
				}
				if !ok || g["cls"] != s.Classification || g["ratio"] != ratio {
					t.Errorf("%s: %s/%s shown as %v, the API has %s, ratio %q", id, c.Kind, s.Signal, g, s.Classification, ratio)
				}
			}
		}
		if n != len(got.Signals) || n == 0 {
			keys := make([]string, 0, len(got.Signals))
			for k := range got.Signals {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			t.Errorf("%s: page shows signals %v, the API %d", id, keys, n)
		}
		if want.Verdict == "fail" && !failed {
			failed = true
			shotOfElement(t, ctx, "change-impact", `[data-testid=impact]`)
		}
	}
	if !failed {
		t.Log("no change of the demo was judged fail: no change-impact screenshot")
	}

	// A point event of a name that is not judged: the API's reason.
	resp, err := http.Get(env.url + "/api/v1/events/" + verdict.ID + "/impact")
	if err != nil {
		t.Fatal(err)
	}
	var nf struct{ Message string }
	err = json.NewDecoder(resp.Body).Decode(&nf)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusNotFound || nf.Message == "" {
		t.Fatalf("impact of the canary-verdict event: %d %v %q", resp.StatusCode, err, nf.Message)
	}
	do(t, ctx,
		chromedp.Navigate(env.url+"/changes/"+verdict.ID),
		visible(`[data-testid=impact-none]`),
	)
	if msg := text(t, ctx, `[data-testid=impact-none]`); !strings.Contains(msg, nf.Message) {
		t.Errorf("not judged: page says %q, the API %q", msg, nf.Message)
	}
}
