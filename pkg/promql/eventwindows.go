package promql

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/levitated/levitated/pkg/events"
)

// Label names of the window series that say which event a window belongs to
// rather than what it applies to; the matching rule ignores them.
const (
	labelEventName  = events.LabelEventName
	labelEventState = events.LabelEventState
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
	// byShared maps which of names a metric series has (bit i for names[i])
	// to an index from the values of those names to the series of the
	// group that have them.
	byShared map[uint64]*sharedIndex
}

type sharedIndex struct {
	names []string
	hits  map[string]*hitSet
}

// hitSet is the window series of a group a metric series matches, and the
// union of their windows (built on first use).
type hitSet struct {
	id     int
	series []int
	merged *windowList
}

// eventWindows is what an event-window function knows of its window
// argument during one query: the windows of every series, indexed for the
// matching rule, and memos for the metric series evaluated one after
// another. The evaluation parser creates it and puts it, as the only series,
// in the window selector's Series, so that the engine evaluates the
// selector without reading it (it has no samples); the window series the
// engine selected (UnexpandedSeriesSet, under the hint __event_windows) are
// read once, on first use. It is dropped with the query's AST.
type eventWindows struct {
	fn   string       // the public function name, for errors
	call *parser.Call // the (rewritten) call whose window argument this is
	// mi is the index of the range argument in call.Args (-1 for
	// time_since_*); origRange its range as written. The range the engine
	// reads is narrowed to what the windows need (narrow).
	mi        int
	origRange time.Duration
	// before is set for after_before_*, whose period before the window
	// needs as much again.
	before bool
	need   int64 // the widest range needed so far, in ms
	// minStart is the earliest sample time a step seen by narrow needs.
	minStart int64
	narrowed bool

	built  bool
	series []windowSeries
	groups []*nameGroup

	memo       map[string]*windowList
	lastMetric labels.Labels
	lastList   *windowList
	keyBuf     []byte
	valBuf     []byte
	nextHitID  int

	// Reused by the _since and after_before functions.
	matrix    promql.Matrix
	synthFor  *parser.MatrixSelector
	synthMS   *parser.MatrixSelector
	synthVS   *parser.VectorSelector
	synthArgs parser.Expressions
}

// eventWindows is the placeholder series of the window selector: no labels,
// no samples.
var _ storage.Series = (*eventWindows)(nil)

func (*eventWindows) Labels() labels.Labels { return labels.EmptyLabels() }
func (*eventWindows) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	return chunkenc.NewNopIterator()
}

// windowsOf returns the eventWindows of the call whose window argument is
// args[i] (the carrier the evaluation parser put there), reading the
// windows on first use. It panics with an error (reported as the query's
// error) if the call was not prepared by the evaluation parser.
func windowsOf(fn string, args parser.Expressions, i int) *eventWindows {
	if i < len(args) {
		if c, ok := args[i].(*parser.Call); ok && c.Func.Name == windowListFunc && len(c.Args) == 1 {
			return windowsOfSelector(fn, c.Args[0])
		}
	}
	panic(notPreparedErr(fn))
}

// windowsOfSelector returns the eventWindows of a prepared window selector.
func windowsOfSelector(fn string, e parser.Expr) *eventWindows {
	if ms, ok := e.(*parser.MatrixSelector); ok { // over_windows selects windows over its range
		e = ms.VectorSelector
	}
	if vs, ok := e.(*parser.VectorSelector); ok && len(vs.Series) == 1 {
		if ew, ok := vs.Series[0].(*eventWindows); ok {
			if !ew.built {
				ew.read(vs.UnexpandedSeriesSet)
			}
			return ew
		}
	}
	panic(notPreparedErr(fn))
}

func notPreparedErr(fn string) error {
	return fmt.Errorf("%s: this engine was not built by levitated's pkg/promql.New, which prepares the window argument of event-window functions", fn)
}

// read reads the window series of set (window lists, see
// eventstore.WindowListHint) and indexes them.
func (ew *eventWindows) read(set storage.SeriesSet) {
	fn := ew.fn
	ew.built = true
	ew.memo = map[string]*windowList{}
	byNames := map[string]*nameGroup{}
	var it chunkenc.Iterator
	for set != nil && set.Next() {
		s := set.At()
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
			g = &nameGroup{names: names, byShared: map[uint64]*sharedIndex{}}
			byNames[key] = g
			ew.groups = append(ew.groups, g)
		}
		g.series = append(g.series, idx)
	}
	if set != nil && set.Err() != nil {
		panic(fmt.Errorf("%s: read windows: %w", fn, set.Err()))
	}
}

// narrow makes the range argument of the call read no more than the
// windows need at evaluation time t: from just before the latest start of
// any window list (twice as far for after_before_*), at most the range as
// written; behind NarrowingQuerier, the select of the range argument starts
// at the earliest sample any step needs. The engine evaluates the window
// argument, and so calls narrow for every step, before it reads the range
// argument.
func (ew *eventWindows) narrow(t int64) {
	if ew.mi < 0 || ew.mi >= len(ew.call.Args) {
		return
	}
	ms, ok := ew.call.Args[ew.mi].(*parser.MatrixSelector)
	if !ok {
		return
	}
	vs, ok := ms.VectorSelector.(*parser.VectorSelector)
	if !ok {
		return
	}
	end := t - vs.Offset.Milliseconds()
	orig := ew.origRange.Milliseconds()
	var stepNeed int64 // the range this step needs
	for _, ws := range ew.series {
		i, ok := ws.windows.latest(end)
		if !ok {
			continue
		}
		need := end - ws.windows.starts[i]
		if ew.before {
			need *= 2
		}
		if stepNeed = max(stepNeed, min(orig, need+1)); stepNeed == orig {
			break
		}
	}
	ew.need = max(ew.need, stepNeed)
	ms.Range = msDuration(max(1, ew.need))
	if stepNeed > 0 {
		// The range is open on the left.
		if start := end - stepNeed + 1; !ew.narrowed || start < ew.minStart {
			ew.minStart, ew.narrowed = start, true
		}
	}
	if d, ok := vs.UnexpandedSeriesSet.(*deferredSelect); ok {
		// Select from the earliest sample any step needs (nothing, if no
		// window applies at any step so far).
		start := int64(math.MaxInt64)
		if ew.narrowed {
			start = ew.minStart
		}
		d.narrowStart(start)
	}
}

// forMetric returns the windows that apply to a series with labels m: the
// union of the windows of every window series whose compared labels that m
// also has are equal in m (an empty list if none applies).
func (ew *eventWindows) forMetric(m labels.Labels) *windowList {
	if ew.lastList != nil && labels.Equal(m, ew.lastMetric) {
		return ew.lastList
	}
	var first *hitSet
	key := ew.keyBuf[:0]
	n := 0
	for _, g := range ew.groups {
		var mask uint64
		for i, name := range g.names {
			if i < 64 && m.Has(name) {
				mask |= 1 << i
			}
		}
		si := g.byShared[mask]
		if si == nil {
			si = &sharedIndex{hits: map[string]*hitSet{}}
			for i, name := range g.names {
				if i < 64 && mask&(1<<i) != 0 {
					si.names = append(si.names, name)
				}
			}
			for _, s := range g.series {
				k := string(ew.series[s].compare.BytesWithLabels(nil, si.names...))
				h := si.hits[k]
				if h == nil {
					h = &hitSet{id: ew.nextHitID}
					ew.nextHitID++
					si.hits[k] = h
				}
				h.series = append(h.series, s)
			}
			g.byShared[mask] = si
		}
		ew.valBuf = m.BytesWithLabels(ew.valBuf[:0], si.names...)
		h := si.hits[string(ew.valBuf)]
		if h == nil {
			continue
		}
		if n++; n == 1 {
			first = h
		}
		key = binary.AppendUvarint(key, uint64(h.id))
		if h.merged == nil {
			lists := make([]*windowList, 0, len(h.series))
			for _, s := range h.series {
				lists = append(lists, ew.series[s].windows)
			}
			h.merged = merge(lists)
		}
	}
	ew.keyBuf = key
	wl := noWindows
	switch {
	case n == 1:
		wl = first.merged
	case n > 1:
		var ok bool
		if wl, ok = ew.memo[string(key)]; !ok {
			wl = ew.mergeHits(key)
			ew.memo[string(key)] = wl
		}
	}
	ew.lastMetric, ew.lastList = m, wl
	return wl
}

// mergeHits merges the windows of the hit sets whose ids key lists.
func (ew *eventWindows) mergeHits(key []byte) *windowList {
	ids := map[int]bool{}
	for len(key) > 0 {
		id, n := binary.Uvarint(key)
		ids[int(id)] = true
		key = key[n:]
	}
	var lists []*windowList
	for _, g := range ew.groups {
		for _, si := range g.byShared {
			for _, h := range si.hits {
				if ids[h.id] {
					lists = append(lists, h.merged)
				}
			}
		}
	}
	return merge(lists)
}

// noWindows is the list of a series no window applies to.
var noWindows = &windowList{}
