package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestKeyboardAndLabels: on each page every control has a label a screen
// reader reads, and the Tab key walks the page from the skip link through
// the navigation to the page's controls (the first eight stops), each
// focused element visibly outlined (the editor: its frame).
func TestKeyboardAndLabels(t *testing.T) {
	ctx := browser(t, 1280, 800)
	pages := []struct{ path, ready, editor string }{
		// The editor is loaded after the graph.
		{strings.TrimPrefix(queryURL(`sum(rate(http_requests_total[1m]))`, nil), env.url), `[data-testid=graph] .u-over`, `.cm-content`},
		{"/changes?range=6h", `[data-testid=changes] tbody tr`, ""},
		{"/analyses", `[data-testid=analyses] tbody tr`, ""},
		{"/status", `[data-testid=who] b`, ""},
	}
	for _, p := range pages {
		do(t, ctx, chromedp.Navigate(env.url+p.path), visible(p.ready))
		if p.editor != "" {
			do(t, ctx, visible(p.editor))
		}
		unlabelled := eval[[]string](t, ctx, `[...document.querySelectorAll('input, select, textarea, button')].filter(e => {
			if (e.type === 'hidden' || e.closest('[hidden]')) return false;
			const name = (e.getAttribute('aria-label') || e.getAttribute('aria-labelledby') || e.title || '').trim()
				|| [...(e.labels || [])].map(l => l.textContent).join('').trim()
				|| (e.tagName === 'BUTTON' ? e.textContent.trim() : '');
			return !name;
		}).map(e => e.outerHTML.slice(0, 120))`)
		if len(unlabelled) > 0 {
			t.Errorf("%s: controls without a label: %q", p.path, unlabelled)
		}

		// Tab from the top of the page.
		var walk []string
		for i := 0; i < 8; i++ {
			do(t, ctx, chromedp.KeyEvent(kb.Tab))
			f := eval[struct {
				Desc    string
				Visible bool
				Outline string
				Frame   bool
			}](t, ctx, `(() => { const e = document.activeElement; const s = getComputedStyle(e);
				return {desc: e.tagName.toLowerCase() + (e.className ? '.' + String(e.className).split(' ')[0] : '') + ':' + (e.textContent || e.getAttribute('aria-label') || e.placeholder || '').trim().slice(0, 20),
					visible: e.matches(':focus-visible'), outline: s.outlineStyle + ' ' + s.outlineWidth,
					// The editor shows its focus on its frame.
					frame: !!e.closest('.editor') && getComputedStyle(e.closest('.editor')).boxShadow !== 'none'}; })()`)
			if strings.HasPrefix(f.Desc, "body") {
				break // past the page's last control
			}
			walk = append(walk, f.Desc)
			if !f.Frame && (!f.Visible || strings.HasPrefix(f.Outline, "none")) {
				t.Errorf("%s: Tab %d focuses %s without a visible focus (outline %s)", p.path, i+1, f.Desc, f.Outline)
			}
		}
		t.Logf("%s: Tab walks %q", p.path, walk)
		if !strings.HasPrefix(walk[0], "a.skip") {
			t.Errorf("%s: the first Tab focuses %s, not the skip link", p.path, walk[0])
		}
		nav := 0
		for _, w := range walk {
			if strings.Contains(w, "Query") || strings.Contains(w, "Changes") || strings.Contains(w, "Analyses") || strings.Contains(w, "Status") {
				nav++
			}
		}
		if nav < 4 {
			t.Errorf("%s: Tab reached %d of the 4 navigation links: %q", p.path, nav, walk)
		}
	}
}
