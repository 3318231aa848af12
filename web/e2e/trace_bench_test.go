package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/tracing"
	"github.com/chromedp/chromedp"
)

// BenchmarkConsoleGraphTrace: where the renderer's time goes in one
// navigation of BenchmarkConsoleGraph, from a Chromium trace (timeline
// categories): the CPU time of each thread of the page's renderer, and the
// self CPU time of the main thread's events by name (tdur less that of the
// events nested in them), the largest 25, logged (-v).
//
//	go test -run '^$' -bench ConsoleGraphTrace -benchtime 1x -v ./web/e2e (from web/e2e: ./...)
func BenchmarkConsoleGraphTrace(b *testing.B) {
	base, page := benchGraphPage(b)
	for b.Loop() {
		ctx, cancel := benchBrowser(b)
		events, err := traceNavigation(ctx, base+"/-/healthy", page)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range summarizeTrace(events) {
			b.Log(l)
		}
	}
}

type traceEvent struct {
	Name string          `json:"name"`
	Ph   string          `json:"ph"`
	Ts   float64         `json:"ts"`
	Dur  float64         `json:"dur"`
	TDur float64         `json:"tdur"`
	Pid  int             `json:"pid"`
	Tid  int             `json:"tid"`
	Args json.RawMessage `json:"args"`
}

func traceNavigation(ctx context.Context, first, page string) ([]traceEvent, error) {
	var (
		mu     sync.Mutex
		events []traceEvent
		done   = make(chan struct{})
	)
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *tracing.EventDataCollected:
			mu.Lock()
			for _, v := range ev.Value {
				var e traceEvent
				if json.Unmarshal([]byte(v), &e) == nil {
					events = append(events, e)
				}
			}
			mu.Unlock()
		case *tracing.EventTracingComplete:
			close(done)
		}
	}); err != nil {
		return nil, err
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(first)); err != nil {
		return nil, err
	}
	cfg := &tracing.TraceConfig{IncludedCategories: []string{"devtools.timeline", "v8", "v8.execute", "blink", "cc", "gpu", "disabled-by-default-devtools.timeline", "toplevel", "blink.user_timing", "loading", "__metadata"}}
	if _, err := chromedp.Call(ctx, tracing.Start, tracing.StartParams{TraceConfig: cfg, TransferMode: tracing.StartTransferModeReportEvents}); err != nil {
		return nil, err
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`.chart[data-drawn-at]`))); err != nil {
		return nil, err
	}
	if _, err := chromedp.Call(ctx, tracing.End, cdp.Empty{}); err != nil {
		return nil, err
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	return events, nil
}

// summarizeTrace: CPU per thread of the renderer that ran the page, and the
// main thread's self CPU by event name.
func summarizeTrace(events []traceEvent) []string {
	names := map[[2]int]string{}
	for _, e := range events {
		if e.Ph == "M" && e.Name == "thread_name" {
			var a struct{ Name string }
			_ = json.Unmarshal(e.Args, &a)
			names[[2]int{e.Pid, e.Tid}] = a.Name
		}
	}
	// The renderer: the process of the thread CrRendererMain with the most
	// events.
	count := map[[2]int]int{}
	for _, e := range events {
		if names[[2]int{e.Pid, e.Tid}] == "CrRendererMain" {
			count[[2]int{e.Pid, e.Tid}]++
		}
	}
	var main [2]int
	for k, n := range count {
		if n > count[main] {
			main = k
		}
	}
	perThread := map[string]float64{}
	var mainEvents []traceEvent
	for _, e := range events {
		if e.Pid != main[0] || e.Ph != "X" {
			continue
		}
		if e.Tid == main[1] {
			mainEvents = append(mainEvents, e)
		}
	}
	// Thread CPU: the sum of the top-level complete events' tdur per thread.
	byThread := map[int][]traceEvent{}
	for _, e := range events {
		if e.Pid == main[0] && e.Ph == "X" {
			byThread[e.Tid] = append(byThread[e.Tid], e)
		}
	}
	for tid, es := range byThread {
		slices.SortFunc(es, func(a, b traceEvent) int { return cmp.Compare(a.Ts, b.Ts) })
		var top float64
		var until float64
		for _, e := range es {
			if e.Ts >= until {
				top += e.TDur
				until = e.Ts + e.Dur
			}
		}
		perThread[fmt.Sprintf("%s(%d)", names[[2]int{main[0], tid}], tid)] += top / 1000
	}
	self := map[string]float64{}
	slices.SortFunc(mainEvents, func(a, b traceEvent) int { return cmp.Or(cmp.Compare(a.Ts, b.Ts), cmp.Compare(b.Dur, a.Dur)) })
	type open struct {
		e     traceEvent
		child float64
	}
	var stack []open
	pop := func() {
		o := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		self[o.e.Name] += (o.e.TDur - o.child) / 1000
		if len(stack) > 0 {
			stack[len(stack)-1].child += o.e.TDur
		}
	}
	for _, e := range mainEvents {
		for len(stack) > 0 && e.Ts >= stack[len(stack)-1].e.Ts+stack[len(stack)-1].e.Dur {
			pop()
		}
		stack = append(stack, open{e: e})
	}
	for len(stack) > 0 {
		pop()
	}
	var out []string
	for _, m := range []map[string]float64{perThread, self} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(m[b], m[a]) })
		var parts []string
		for i, k := range keys {
			if i == 25 || m[k] < 1 {
				break
			}
			parts = append(parts, fmt.Sprintf("%s %.0f ms", k, m[k]))
		}
		out = append(out, strings.Join(parts, "; "))
	}
	out[0] = "renderer threads (CPU): " + out[0]
	out[1] = "main thread self CPU by event: " + out[1]
	return out
}
