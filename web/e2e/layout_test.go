package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestPhoneWidthDarkTheme: at a phone's width (390 px) with the system
// set to dark, the pages follow the setting (a dark background) and need
// no horizontal scrolling of the page (wide tables scroll in their box).
func TestPhoneWidthDarkTheme(t *testing.T) {
	var stage string
	for _, e := range listEvents(t) {
		if e.State == "start" && e.Name == "canary-step" && e.Attributes["weight"] == "40" {
			stage = e.ID
		}
	}
	if stage == "" {
		t.Fatal("no canary-step window at weight 40")
	}
	ctx := browser(t, 390, 844)
	do(t, ctx, dark())
	for _, p := range []struct{ path, ready, shot string }{
		{strings.TrimPrefix(queryURL(`sum by (track) (rate(http_requests_total{service="checkout"}[1m]))`, nil), env.url), `[data-testid=graph] .ev-region`, "phone-dark-query"},
		{"/changes?range=6h", `[data-testid=changes] tbody tr`, ""},
		{"/changes/" + stage, `[data-testid=impact] .score-line`, "phone-dark-change"},
		{"/analyses/" + env.execution, `[data-testid=metric-verdicts] .metric-row`, ""},
		{"/status", `main .page h1`, ""},
	} {
		do(t, ctx, chromedp.Navigate(env.url+p.path), visible(p.ready))
		got := eval[struct {
			ScrollWidth, InnerWidth int
			Bg                      string
			Luma                    float64
		}](t, ctx, `(() => {
			const bg = getComputedStyle(document.body).backgroundColor;
			const [r, g, b] = bg.match(/\d+(\.\d+)?/g).map(Number);
			return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, bg, luma: 0.2126*r + 0.7152*g + 0.0722*b};
		})()`)
		if got.ScrollWidth > got.InnerWidth {
			t.Errorf("%s: the page is %d px wide in a %d px window", p.path, got.ScrollWidth, got.InnerWidth)
		}
		if got.Luma > 80 {
			t.Errorf("%s: background %s under a dark system setting", p.path, got.Bg)
		}
		if p.shot != "" {
			shot(t, ctx, p.shot)
		}
	}
}
