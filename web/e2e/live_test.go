package e2e

import (
	"iter"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestChangesLiveStatus: the Changes page's status is its events tail's
// own — "connecting" while the tail's request is unanswered (the browser
// holds it here), "live" once the server has answered it (it answers when
// the tail is subscribed), "not live" when it fails — not a guess made
// after a delay.
func TestChangesLiveStatus(t *testing.T) {
	ctx := browser(t, 1280, 800)
	next, stop := iter.Pull2(chromedp.Events(ctx, fetch.RequestPaused))
	defer stop()
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{
		Patterns: []*fetch.RequestPattern{{URLPattern: "*/api/v1/events:tail*", RequestStage: fetch.RequestStageRequest}},
	}); err != nil {
		t.Fatalf("Fetch.enable: %v", err)
	}
	held := func() fetch.EventRequestPaused {
		t.Helper()
		ev, err, ok := next()
		if !ok || err != nil {
			t.Fatalf("the page's events tail was not requested: %v", err)
		}
		return ev
	}
	state := func() string {
		t.Helper()
		return eval[string](t, ctx, `document.querySelector('[data-testid=changes-live]').dataset.state`)
	}

	do(t, ctx,
		chromedp.Navigate(env.url+"/changes?range=6h"),
		visible(`[data-testid=changes] tbody tr`),
	)
	tail := held()
	do(t, ctx, chromedp.Sleep(1500*time.Millisecond))
	if got := state(); got != "connecting" {
		t.Errorf("with the tail's request unanswered for 1.5 s the status is %q, want connecting", got)
	}
	if _, err := chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: tail.RequestID}); err != nil {
		t.Fatalf("Fetch.continueRequest: %v", err)
	}
	do(t, ctx, visible(`[data-testid=changes-live][data-state=live]`))

	// Reloaded, with the tail's request failing.
	do(t, ctx,
		chromedp.Navigate(env.url+"/changes?range=6h&open=1"),
		visible(`[data-testid=changes-live]`),
	)
	tail = held()
	if _, err := chromedp.Call(ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: tail.RequestID, ErrorReason: network.ErrorReasonConnectionRefused}); err != nil {
		t.Fatalf("Fetch.failRequest: %v", err)
	}
	do(t, ctx, visible(`[data-testid=changes-live][data-state=off]`))
	if got := eval[string](t, ctx, `document.querySelector('[data-testid=changes-live]').textContent`); got != "○ not live" {
		t.Errorf("the failed tail's status reads %q, want ○ not live", got)
	}
}
