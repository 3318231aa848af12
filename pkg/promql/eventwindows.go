package promql

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
)

// Label names of the window series that say which event a window belongs to
// rather than what it applies to; the matching rule ignores them.
const (
	labelEventName  = "event_name"
	labelEventState = "event_state"
)

// windowList is a set of windows in start order: starts[i] is a start in
// milliseconds, ends[i] the latest end (milliseconds, math.MaxInt64 while
// open) of the windows starting then.
type windowList struct {
	starts, ends []int64
}

// latest returns the index of the latest window starting at or before t.
func (l *windowList) latest(t int64) (int, bool) {
	i := sort.Search(len(l.starts), func(i int) bool { return l.starts[i] > t }) - 1
	return i, i >= 0
}

// merge returns the union of lists, in start order, one entry per start.
func merge(lists []*windowList) *windowList {
	if len(lists) == 1 {
		return lists[0]
	}
	n := 0
	for _, l := range lists {
		n += len(l.starts)
	}
	type w struct{ s, e int64 }
	all := make([]w, 0, n)
	for _, l := range lists {
		for i := range l.starts {
			all = append(all, w{l.starts[i], l.ends[i]})
		}
	}
	slices.SortFunc(all, func(a, b w) int { return int(min(max(a.s-b.s, -1), 1)) })
	out := &windowList{starts: make([]int64, 0, n), ends: make([]int64, 0, n)}
	for _, x := range all {
		if k := len(out.starts); k > 0 && out.starts[k-1] == x.s {
			out.ends[k-1] = max(out.ends[k-1], x.e)
			continue
		}
		out.starts = append(out.starts, x.s)
		out.ends = append(out.ends, x.e)
	}
	return out
}

// windowSeries is one series of the window argument: its labels and its
// windows.
type windowSeries struct {
	labels  labels.Labels // as selected, with __name__
	output  labels.Labels // without __name__, for time_since_window_*
	compare labels.Labels // the labels the matching rule compares
	windows *windowList
}

// nameGroup holds the window series whose compared label names are the same.
type nameGroup struct {
	names  []string // sorted
	series []int
	// byShared maps the names a metric series shares with the group (joined
	// by 0xff) to an index from the values of those names to the series of
	// the group that have them.
	byShared map[string]map[string][]int
}

// eventWindows is what an event-window function knows of its window
// argument during one evaluation of the query: the windows of every series,
// indexed for the matching rule, and memos for the metric series evaluated
// one after another. It lives in the window selector's UnexpandedSeriesSet
// field, which the engine no longer reads once the selector is expanded,
// so it is built once per query and dropped with the query's AST.
type eventWindows struct {
	series []windowSeries
	groups []*nameGroup

	memo       map[string]*windowList
	lastMetric labels.Labels
	lastList   *windowList
	keyBuf     []byte

	// Reused by the _since and after_before functions.
	matrix    promql.Matrix
	synthFor  *parser.MatrixSelector
	synthMS   *parser.MatrixSelector
	synthVS   *parser.VectorSelector
	synthArgs parser.Expressions
}

// The engine expands a selector's UnexpandedSeriesSet only while its Series
// are nil; eventWindows answers as an empty set should that happen again.
var _ storage.SeriesSet = (*eventWindows)(nil)

func (*eventWindows) Next() bool                        { return false }
func (*eventWindows) At() storage.Series                { return nil }
func (*eventWindows) Err() error                        { return nil }
func (*eventWindows) Warnings() annotations.Annotations { return nil }

// windowsOf returns the eventWindows of the call whose window argument is
// args[i] (the carrier the evaluation parser put there), building it on
// first use. It panics with an error (reported as the query's error) if the
// call was not rewritten by the evaluation parser.
func windowsOf(fn string, args parser.Expressions, i int) *eventWindows {
	vs := windowSelector(fn, args, i)
	if ew, ok := vs.UnexpandedSeriesSet.(*eventWindows); ok {
		return ew
	}
	ew := newEventWindows(fn, vs.Series)
	vs.UnexpandedSeriesSet = ew
	return ew
}

func windowSelector(fn string, args parser.Expressions, i int) *parser.VectorSelector {
	if i < len(args) {
		if c, ok := args[i].(*parser.Call); ok && c.Func.Name == windowListFunc && len(c.Args) == 1 {
			if vs, ok := c.Args[0].(*parser.VectorSelector); ok {
				return vs
			}
		}
	}
	panic(fmt.Errorf("%s: this engine was not built by levitated's pkg/promql.New, which prepares the window argument of event-window functions", fn))
}

func newEventWindows(fn string, ss []storage.Series) *eventWindows {
	ew := &eventWindows{memo: map[string]*windowList{}}
	byNames := map[string]*nameGroup{}
	var it chunkenc.Iterator
	for _, s := range ss {
		ws := windowSeries{labels: s.Labels()}
		ws.output = ws.labels.DropReserved(func(n string) bool { return n == labels.MetricName })
		ws.compare = ws.labels.DropReserved(func(n string) bool {
			return n == labels.MetricName || n == labelEventName || n == labelEventState
		})
		l := &windowList{}
		it = s.Iterator(it)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt != chunkenc.ValFloat {
				panic(fmt.Errorf("%s: the window argument must select change-event window series, %s has histogram samples", fn, ws.labels))
			}
			t, v := it.At()
			end := int64(math.MaxInt64)
			if !math.IsInf(v, 1) {
				end = int64(math.Round(v * 1000))
			}
			if k := len(l.starts); k > 0 && l.starts[k-1] >= t {
				if l.starts[k-1] == t {
					l.ends[k-1] = max(l.ends[k-1], end)
				}
				continue
			}
			l.starts = append(l.starts, t)
			l.ends = append(l.ends, end)
		}
		if err := it.Err(); err != nil {
			panic(fmt.Errorf("%s: read windows: %w", fn, err))
		}
		ws.windows = l
		idx := len(ew.series)
		ew.series = append(ew.series, ws)

		var names []string
		ws.compare.Range(func(l labels.Label) { names = append(names, l.Name) })
		key := strings.Join(names, "\xff")
		g := byNames[key]
		if g == nil {
			g = &nameGroup{names: names, byShared: map[string]map[string][]int{}}
			byNames[key] = g
			ew.groups = append(ew.groups, g)
		}
		g.series = append(g.series, idx)
	}
	return ew
}

// forMetric returns the windows that apply to a series with labels m: the
// union of the windows of every window series whose compared labels that m
// also has are equal in m (an empty list if none applies).
func (ew *eventWindows) forMetric(m labels.Labels) *windowList {
	if ew.lastList != nil && labels.Equal(m, ew.lastMetric) {
		return ew.lastList
	}
	key := ew.keyBuf[:0]
	var matched [][]int
	for gi, g := range ew.groups {
		shared := make([]string, 0, len(g.names))
		for _, n := range g.names {
			if m.Has(n) {
				shared = append(shared, n)
			}
		}
		sig := strings.Join(shared, "\xff")
		idx := g.byShared[sig]
		if idx == nil {
			idx = map[string][]int{}
			for _, si := range g.series {
				k := string(ew.series[si].compare.BytesWithLabels(nil, shared...))
				idx[k] = append(idx[k], si)
			}
			g.byShared[sig] = idx
		}
		vals := m.BytesWithLabels(nil, shared...)
		// BytesWithLabels of the metric includes the same names in the same
		// order as the window series' key, so equal values give equal keys.
		hits := idx[string(vals)]
		if len(hits) == 0 {
			continue
		}
		matched = append(matched, hits)
		key = fmt.Appendf(key, "%d\xfe%s\xfe%s\xfd", gi, sig, vals)
	}
	ew.keyBuf = key
	var wl *windowList
	if len(matched) > 0 {
		var ok bool
		if wl, ok = ew.memo[string(key)]; !ok {
			var lists []*windowList
			for _, hits := range matched {
				for _, si := range hits {
					lists = append(lists, ew.series[si].windows)
				}
			}
			wl = merge(lists)
			ew.memo[string(key)] = wl
		}
	}
	if wl == nil {
		wl = noWindows
	}
	ew.lastMetric, ew.lastList = m, wl
	return wl
}

// noWindows is the list of a series no window applies to.
var noWindows = &windowList{}
