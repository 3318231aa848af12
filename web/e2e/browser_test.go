package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// allocatorOptions are the flags that run Chromium headless as root and
// keep it off the network (it would otherwise keep trying to reach outside
// hosts), with a fresh profile in dir.
func allocatorOptions(dir string, width, height int) []chromedp.ExecAllocatorOption {
	return append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(env.chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(width, height),
	)
}

// startBrowser starts a headless Chromium with a fresh profile from
// tempDir and a tab of width×height. Debian's Chromium sometimes crashes
// as it starts on this machine (chromedp: "chrome failed to start", with a
// crashpad dump; about one start in five under load, 2026-12-06), before
// any page is opened: such a start is logged and tried again, twice at
// most, with a new profile. A browser that started and then fails is not
// retried.
func startBrowser(tempDir func() string, width, height int, logf func(string, ...any)) (context.Context, context.CancelFunc, error) {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		actx, cancelA := chromedp.NewExecAllocator(context.Background(), allocatorOptions(tempDir(), width, height)...)
		ctx, cancelB := chromedp.NewContext(actx)
		cancel := func() {
			cancelB()
			cancelA()
		}
		if err = chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))); err == nil {
			return ctx, cancel, nil
		}
		cancel()
		if !strings.Contains(err.Error(), "chrome failed to start") {
			return nil, nil, err
		}
		logf("chromium did not start (attempt %d of 3): %v", attempt, err)
	}
	return nil, nil, err
}

// browser starts a headless Chromium with a fresh profile and returns a
// tab of width×height.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	if env.chromium == "" {
		t.Skip("no Chromium")
	}
	ctx, cancel, err := startBrowser(t.TempDir, width, height, t.Logf)
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(cancel)
	// The page's errors and exceptions go to the test's log.
	var mu sync.Mutex
	var msgs []string
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning {
				mu.Lock()
				msgs = append(msgs, m.String())
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			t.Logf("browser console: %s", m)
		}
	})
	// A bound for the steps of the test (not for the browser's start), so
	// that a broken page fails instead of hanging.
	ctx, cancelC := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelC)
	return ctx
}

// dark makes the page see prefers-color-scheme: dark.
func dark() chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
		})
		return err
	})
}

// shot writes a PNG of the viewport to $CONSOLE_SCREENSHOTS/name.png (or
// the test's temporary directory).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	shotOf(t, ctx, name, chromedp.CaptureScreenshot())
}

// shotOfElement writes a PNG of the element sel (all of it, scrolled into
// view) as shot does.
func shotOfElement(t *testing.T, ctx context.Context, name, sel string) {
	t.Helper()
	shotOf(t, ctx, name, chromedp.Screenshot(chromedp.CSS(sel)))
}

func shotOf(t *testing.T, ctx context.Context, name string, capture chromedp.Action[[]byte]) {
	t.Helper()
	do(t, ctx, chromedp.Sleep(200*time.Millisecond))
	png, err := chromedp.Run(ctx, capture)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// do runs the steps, each call bounded by a minute so that a page that
// never shows what a step waits for fails the test.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		// What the page showed, for the person reading the failure.
		if png, serr := chromedp.Run(ctx, chromedp.CaptureScreenshot()); serr == nil {
			p := filepath.Join(t.TempDir(), "failure.png")
			if dir := os.Getenv("CONSOLE_SCREENSHOTS"); dir != "" {
				p = filepath.Join(dir, "failure-"+t.Name()+".png")
			}
			if os.WriteFile(p, png, 0o644) == nil {
				t.Logf("screenshot of the page: %s", p)
			}
		}
		t.Fatal(err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// text is the text of the first element matching the CSS selector.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return v
}

func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Shorthands for CSS selectors.
func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}
func click(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }
func keys(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(focus(sel), typeText(v))
}

// fill replaces an input's value as typing would (the input event included).
func fill(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		js := `(() => { const e = document.querySelector(` + jsString(sel) + `); e.focus(); e.value = ` + jsString(v) + `;
			e.dispatchEvent(new Event('input', {bubbles: true})); return true; })()`
		_, err := chromedp.Evaluate[bool](js)(ctx, t)
		return err
	})
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// typeText types s into the focused element, a character at a time, as
// text input (Input.insertText): chromedp's KeyEvent of several keys in a
// row stalls on this machine.
func typeText(s string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		for _, r := range s {
			if _, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: string(r)}); err != nil {
				return err
			}
		}
		return nil
	})
}

// focus focuses the element (a click on CodeMirror's contenteditable
// stalls chromedp's Click).
func focus(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`(document.querySelector(`+jsString(sel)+`).focus(), true)`)(ctx, t)
		return err
	})
}

// choose selects an option of a <select> as a person does (change event).
func choose(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		js := `(() => { const e = document.querySelector(` + jsString(sel) + `); e.value = ` + jsString(v) + `;
			e.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`
		_, err := chromedp.Evaluate[bool](js)(ctx, t)
		return err
	})
}
