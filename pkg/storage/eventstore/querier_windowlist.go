package eventstore

import (
	"context"
	"math"
	"sort"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/levitated/levitated/pkg/events"
)

// WindowListHint is the SelectHints.Func under which Select returns the
// window series (change_event_active, change_event_window_start_seconds,
// change_event_window_end_seconds) as window lists instead of samples on the
// 15 s grid: one sample per window, at the window's start, whose value is
// the window's end in Unix seconds (+Inf while open). The list holds every
// window of the label set that starts at or before the end of the selected
// range and ends at or after its start, plus the latest window that ended
// before it, so that "the latest window started at or before t" is known for
// every t in the range however long ago that window started. Windows of one
// label set that start in the same millisecond are listed once, with the
// latest end.
//
// PromQL's event-window functions (pkg/promql) select their window argument
// under this hint; nothing else does. The name cannot be written in PromQL.
const WindowListHint = events.WindowListHint

// windowListSeries builds the window lists of the wanted window metrics in
// [mint, maxt] whose labels match.
func (q *querier) windowListSeries(ctx context.Context, mint, maxt int64, want map[string]bool, matches func(labels.Labels) bool) ([]*listSeries, error) {
	groups, before, err := q.windowsWithLatestBefore(ctx, mint, maxt)
	if err != nil {
		return nil, err
	}
	var out []*listSeries
	for key, g := range groups {
		ws := g.windows
		if w, ok := before[key]; ok {
			ws = append([]window{w}, ws...)
		}
		samples := windowListSamples(ws)
		for _, metric := range []string{events.MetricActive, events.MetricWindowStart, events.MetricWindowEnd} {
			if !want[metric] {
				continue
			}
			ls := events.WindowLabels(metric, g.name, g.attrs)
			if !matches(ls) {
				continue
			}
			out = append(out, &listSeries{lset: ls, samples: samples})
		}
	}
	return out, nil
}

// windowListSamples renders windows (in start order) as one sample per
// distinct start: value = end in seconds, +Inf if open; the latest end wins.
func windowListSamples(ws []window) []sample {
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].start < ws[j].start })
	out := make([]sample, 0, len(ws))
	for _, w := range ws {
		v := math.Inf(1)
		if !w.open {
			v = float64(w.end) / 1000
		}
		if n := len(out); n > 0 && out[n-1].t == w.start {
			out[n-1].f = max(out[n-1].f, v)
			continue
		}
		out = append(out, sample{t: w.start, f: v})
	}
	return out
}

// windowsWithLatestBefore is windows(ctx, mint, maxt), plus per label set the
// latest-starting window that ended before mint (keyed like the groups; a
// label set with only such a window gets a group too).
func (q *querier) windowsWithLatestBefore(ctx context.Context, mint, maxt int64) (map[string]*windowGroup, map[string]window, error) {
	groups := map[string]*windowGroup{}
	before := map[string]window{}
	err := q.scanWindows(ctx, maxt, func(key string, name string, attrs map[string]string, w window) {
		g := groups[key]
		if g == nil {
			g = &windowGroup{name: name, attrs: attrs}
			groups[key] = g
		}
		if !w.open && w.end < mint {
			if b, ok := before[key]; !ok || w.start >= b.start {
				before[key] = w
			}
			return
		}
		g.windows = append(g.windows, w)
	})
	return groups, before, err
}
