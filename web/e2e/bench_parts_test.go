package e2e

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/profiler"
	"github.com/chromedp/chromedp"
)

// BenchmarkConsoleGraphTimeline: one navigation of BenchmarkConsoleGraph
// traced, logged (-v) in time order since the navigation started: the
// requests, the console's performance marks and the main thread's tasks of
// 2 ms or more with their costliest parts.
//
//	go test -run '^$' -bench ConsoleGraphTimeline -benchtime 1x -v ./web/e2e (from web/e2e: ./...)
//
// With CONSOLE_TRACE_OUT=file the trace's events are also written to file
// (JSON), for the other threads (the worker's, the raster's).
func BenchmarkConsoleGraphTimeline(b *testing.B) {
	base, page := benchGraphPage(b)
	for b.Loop() {
		ctx, cancel := benchBrowser(b)
		events, err := traceNavigation(ctx, base+"/-/healthy", page)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if f := os.Getenv("CONSOLE_TRACE_OUT"); f != "" {
			if j, err := json.Marshal(events); err == nil {
				_ = os.WriteFile(f, j, 0o644)
			}
		}
		for _, l := range traceTimeline(events) {
			b.Log(l)
		}
	}
}

func traceTimeline(events []traceEvent) []string {
	names := map[[2]int]string{}
	for _, e := range events {
		if e.Ph == "M" && e.Name == "thread_name" {
			var a struct{ Name string }
			_ = json.Unmarshal(e.Args, &a)
			names[[2]int{e.Pid, e.Tid}] = a.Name
		}
	}
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
	var t0 float64
	for _, e := range events {
		if e.Name == "navigationStart" && e.Pid == main[0] && (t0 == 0 || e.Ts < t0) {
			t0 = e.Ts
		}
	}
	type line struct {
		t float64
		s string
	}
	var out []line
	for _, e := range events {
		if e.Pid != main[0] {
			continue
		}
		var a struct {
			Data struct {
				URL, FunctionName string
				LineNumber        int
			}
		}
		_ = json.Unmarshal(e.Args, &a)
		switch {
		case e.Name == "ResourceSendRequest" || e.Name == "ResourceFinish" || e.Name == "ResourceReceiveResponse":
			u := a.Data.URL
			if u == "" {
				continue
			}
			if p, err := url.Parse(u); err == nil {
				u = p.Path
			}
			out = append(out, line{e.Ts, fmt.Sprintf("%s %s", e.Name, u)})
		case strings.HasPrefix(e.Name, "lv:") && e.Ph != "X":
			out = append(out, line{e.Ts, "mark " + e.Name})
		}
	}
	var mainEvents []traceEvent
	for _, e := range events {
		if e.Pid == main[0] && e.Tid == main[1] && e.Ph == "X" {
			mainEvents = append(mainEvents, e)
		}
	}
	slices.SortFunc(mainEvents, func(a, b traceEvent) int { return cmp.Or(cmp.Compare(a.Ts, b.Ts), cmp.Compare(b.Dur, a.Dur)) })
	// Top-level tasks and the self time of their descendants by detail.
	var top *traceEvent
	var until float64
	parts := map[string]float64{}
	type open struct {
		e     traceEvent
		child float64
		label string
	}
	var stack []open
	flush := func() {
		if top == nil || top.Dur < 2000 {
			return
		}
		keys := make([]string, 0, len(parts))
		for k := range parts {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return parts[keys[i]] > parts[keys[j]] })
		var ps []string
		for i, k := range keys {
			if i == 6 || parts[k] < 0.5 {
				break
			}
			ps = append(ps, fmt.Sprintf("%s %.1f", k, parts[k]))
		}
		out = append(out, line{top.Ts, fmt.Sprintf("task %.1f ms (cpu %.1f): %s", top.Dur/1000, top.TDur/1000, strings.Join(ps, "; "))})
	}
	pop := func() {
		o := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		parts[o.label] += (o.e.TDur - o.child) / 1000
		if len(stack) > 0 {
			stack[len(stack)-1].child += o.e.TDur
		}
	}
	for i := range mainEvents {
		e := mainEvents[i]
		for len(stack) > 0 && e.Ts >= stack[len(stack)-1].e.Ts+stack[len(stack)-1].e.Dur {
			pop()
		}
		if e.Ts >= until {
			for len(stack) > 0 {
				pop()
			}
			flush()
			top, until = &mainEvents[i], e.Ts+e.Dur
			parts = map[string]float64{}
		}
		var a struct {
			Data struct {
				URL, FunctionName string
				LineNumber        int
			}
		}
		_ = json.Unmarshal(e.Args, &a)
		label := e.Name
		if a.Data.URL != "" {
			label += " " + path.Base(a.Data.URL)
		}
		if a.Data.FunctionName != "" {
			label += " " + a.Data.FunctionName
		}
		stack = append(stack, open{e: e, label: label})
	}
	for len(stack) > 0 {
		pop()
	}
	flush()
	slices.SortStableFunc(out, func(a, b line) int { return cmp.Compare(a.t, b.t) })
	s := make([]string, len(out))
	for i, l := range out {
		s[i] = fmt.Sprintf("%7.1f %s", (l.t-t0)/1000, l.s)
	}
	return s
}

// BenchmarkConsoleGraphMarks: BenchmarkConsoleGraph's navigation, logged
// (-v): every performance mark and the start and end of every request,
// in ms since the navigation started, per iteration.
//
//	go test -run '^$' -bench ConsoleGraphMarks -benchtime 3x -v ./web/e2e (from web/e2e: ./...)
func BenchmarkConsoleGraphMarks(b *testing.B) {
	base, page := benchGraphPage(b)
	for b.Loop() {
		ctx, cancel := benchBrowser(b)
		err := chromedp.Do(ctx, chromedp.Navigate(base+"/-/healthy"))
		if err == nil {
			err = chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`.chart[data-drawn-at]`)), chromedp.WaitReady(chromedp.CSS(`.ev-layer > :nth-child(200)`)))
		}
		var lines []string
		if err == nil {
			lines, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => {
				const out = [];
				const n = performance.getEntriesByType('navigation')[0];
				out.push([n.responseStart, 'html first byte'], [n.responseEnd, 'html end'], [n.domInteractive, 'domInteractive'], [n.domContentLoadedEventStart, 'DOMContentLoaded']);
				for (const e of performance.getEntriesByType('resource')) {
					const u = new URL(e.name).pathname;
					out.push([e.startTime, 'send ' + u], [e.responseStart, 'first byte ' + u + ' (' + e.encodedBodySize + ' B)'], [e.responseEnd, 'end ' + u]);
				}
				for (const e of performance.getEntriesByType('mark')) out.push([e.startTime, 'mark ' + e.name]);
				for (const e of performance.getEntriesByType('paint')) out.push([e.startTime, e.name]);
				out.push([+document.querySelector('.chart').dataset.drawnAt, 'drawnAt'], [+(document.querySelector('.ev-layer').dataset.placedAt ?? 0), 'windows placedAt']);
				out.sort((a, b) => a[0] - b[0]);
				return out.map(([t, s]) => t.toFixed(1).padStart(7) + ' ' + s);
			})()`))
		}
		if f := os.Getenv("CONSOLE_BENCH_SHOT"); err == nil && f != "" {
			var png []byte
			if png, err = chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
				err = os.WriteFile(f, png, 0o644)
			}
		}
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.Log("\n" + strings.Join(lines, "\n"))
	}
}

// BenchmarkConsoleGraphProfile: BenchmarkConsoleGraph's navigation under
// V8's sampling profiler, logged (-v): the functions with the most self
// time until the graph is drawn.
//
//	go test -run '^$' -bench ConsoleGraphProfile -benchtime 1x -v ./web/e2e (from web/e2e: ./...)
func BenchmarkConsoleGraphProfile(b *testing.B) {
	base, page := benchGraphPage(b)
	for b.Loop() {
		ctx, cancel := benchBrowser(b)
		err := chromedp.Do(ctx, chromedp.Navigate(base+"/-/healthy"))
		var prof profiler.StopResult
		if err == nil {
			_, err = chromedp.Call(ctx, profiler.Enable, cdp.Empty{})
		}
		if err == nil {
			_, err = chromedp.Call(ctx, profiler.SetSamplingInterval, profiler.SetSamplingIntervalParams{Interval: 100})
		}
		if err == nil {
			_, err = chromedp.Call(ctx, profiler.Start, cdp.Empty{})
		}
		if err == nil {
			err = chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`.chart[data-drawn-at]`)))
		}
		if err == nil {
			prof, err = chromedp.Call(ctx, profiler.Stop, cdp.Empty{})
		}
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		self := map[string]float64{}
		ids := map[int64]*profiler.ProfileNode{}
		for _, n := range prof.Profile.Nodes {
			ids[n.ID] = n
		}
		for i, id := range prof.Profile.Samples {
			n := ids[id]
			f := n.CallFrame
			k := fmt.Sprintf("%s %s:%d", f.FunctionName, path.Base(f.URL), f.LineNumber+1)
			if i < len(prof.Profile.TimeDeltas) {
				self[k] += float64(prof.Profile.TimeDeltas[i]) / 1000
			}
		}
		keys := make([]string, 0, len(self))
		for k := range self {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return self[keys[i]] > self[keys[j]] })
		var lines []string
		for i, k := range keys {
			if i == 40 {
				break
			}
			lines = append(lines, fmt.Sprintf("%6.1f %s", self[k], k))
		}
		b.Log("\n" + strings.Join(lines, "\n"))
	}
}

// BenchmarkConsoleGraphWarm: BenchmarkConsoleGraph's page opened a second
// time in the same browser (its HTTP cache and V8's code cache kept from
// the first visit; the answers asked for again): the time from that
// navigation to the drawn graph (ms-to-graph), when the app asked for the
// query (asked-at-ms) and how many of the bundle's files came from the
// browser's cache without a request (cached-files) or were revalidated
// (revalidated-files: answered 304; the bundle is served with no-cache
// and an ETag), and, logged (-v), each file's transfer.
//
//	go test -run '^$' -bench ConsoleGraphWarm -benchtime 3x ./web/e2e (from web/e2e: ./...)
func BenchmarkConsoleGraphWarm(b *testing.B) {
	base, page := benchGraphPage(b)
	drawn := []chromedp.Action[chromedp.Void]{chromedp.WaitVisible(chromedp.CSS(`.chart[data-drawn-at]`)), chromedp.WaitReady(chromedp.CSS(`.ev-layer > :nth-child(200)`))}
	var total, asked, cached, revalidated float64
	for b.Loop() {
		ctx, cancel := benchBrowser(b)
		err := chromedp.Do(ctx, append([]chromedp.Action[chromedp.Void]{chromedp.Navigate(page)}, drawn...)...)
		if err == nil {
			err = chromedp.Do(ctx, chromedp.Navigate(base+"/-/healthy"))
		}
		if err == nil {
			err = chromedp.Do(ctx, append([]chromedp.Action[chromedp.Void]{chromedp.Navigate(page)}, drawn...)...)
		}
		type result struct {
			DrawnAt, AskedAt    float64
			Cached, Revalidated int
			Files               []string
		}
		var m result
		if err == nil {
			m, err = chromedp.Run(ctx, chromedp.Evaluate[result](`(() => {
				const q = performance.getEntriesByName('lv:query', 'mark');
				const files = performance.getEntriesByType('resource').filter((e) => /\.(js|css)$/.test(new URL(e.name).pathname));
				return {drawnAt: Math.max(+document.querySelector('.chart').dataset.drawnAt, +(document.querySelector('.ev-layer').dataset.placedAt ?? 0)),
					askedAt: q.length ? q[0].startTime : NaN,
					// From the cache without a request: nothing transferred;
					// revalidated: only a 304's headers transferred.
					cached: files.filter((e) => e.transferSize === 0).length,
					revalidated: files.filter((e) => e.transferSize > 0 && e.transferSize < 1000).length,
					files: files.map((e) => new URL(e.name).pathname + ' transferred ' + e.transferSize + ' B, body ' + e.encodedBodySize + ' B')};
			})()`))
		}
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("second visit: %s", strings.Join(m.Files, "; "))
		total += m.DrawnAt
		asked += m.AskedAt
		cached += float64(m.Cached)
		revalidated += float64(m.Revalidated)
	}
	n := float64(b.N)
	b.ReportMetric(total/n, "ms-to-graph")
	b.ReportMetric(asked/n, "asked-at-ms")
	b.ReportMetric(cached/n, "cached-files")
	b.ReportMetric(revalidated/n, "revalidated-files")
}
