package promql

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
)

// over_windows(f(v[r]), w): one result per window and series — f over the
// samples of the series inside the window, for every window of w that
// started within the range (docs/promql-event-functions.md).
//
// The engine gives a function with a range argument one series at a time
// and keeps one output per input series, so a function that answers one
// series per window cannot take the range argument as the engine passes
// it. The evaluation parser rewrites
//
//	over_windows(f(φ?, v[r] offset o), w)
//
// into
//
//	__over_windows:f(φ?, __window_samples(v[r] offset o), __event_windows(w[r] offset o))
//
// a function of instant vectors only, which may return any series. Both
// selectors carry a placeholder series (no samples), so the engine selects
// them (v over the range, w as window lists over the range) without reading
// them; the function reads the selected series itself, once
// (windowSamples, eventWindows), and applies f to each window's samples.

const (
	funcOverWindows   = "over_windows"
	windowSamplesFunc = "__window_samples"
	// labelWindowStart tells apart the windows of one label set: the
	// start in Unix seconds.
	labelWindowStart = "window_start"
)

// overWindowsInner are the range functions over_windows accepts.
var overWindowsInner = afterBeforeInner

// windowSamplesFunction is the function of the __window_samples(v[r])
// calls the evaluation parser inserts; it is never called (its range
// argument has no samples) and no query can name it.
var windowSamplesFunction = &parser.Function{
	Name:       windowSamplesFunc,
	ArgTypes:   []parser.ValueType{parser.ValueTypeMatrix},
	ReturnType: parser.ValueTypeVector,
}

// overWindowsFunction is the internal function over_windows(inner(…), w)
// becomes: inner's scalar arguments, the samples, the windows.
func overWindowsFunction(inner string) *parser.Function {
	V, S := parser.ValueTypeVector, parser.ValueTypeScalar
	args := []parser.ValueType{V, V}
	if inner == "quantile_over_time" {
		args = []parser.ValueType{S, V, V}
	}
	return &parser.Function{Name: "__" + funcOverWindows + ":" + inner, ArgTypes: args, ReturnType: V}
}

func registerOverWindows(register func(*parser.Function, promql.FunctionCall)) {
	V := parser.ValueTypeVector
	register(&parser.Function{Name: funcOverWindows, ArgTypes: []parser.ValueType{V, V}, ReturnType: V}, notPrepared(funcOverWindows))
	register(windowSamplesFunction, func(_ []promql.Vector, _ promql.Matrix, _ parser.Expressions, enh *promql.EvalNodeHelper) (promql.Vector, annotations.Annotations) {
		return enh.Out, nil
	})
	for _, inner := range overWindowsInner {
		mi := 0
		if inner == "quantile_over_time" {
			mi = 1
		}
		register(overWindowsFunction(inner), overWindowsCall(inner, mi))
	}
}

// prepareOverWindows rewrites an over_windows call (see above).
func prepareOverWindows(c *parser.Call) error {
	inner, ok := unwrapParens(c.Args[0]).(*parser.Call)
	if !ok || !slices.Contains(overWindowsInner, inner.Func.Name) {
		return parseErr(c.Args[0], "%s: the first argument must be a range function such as increase(m[1d]) or quantile_over_time(0.99, m[1d]) (one of %s), got %s",
			funcOverWindows, strings.Join(overWindowsInner, ", "), c.Args[0])
	}
	mi := 0
	if inner.Func.Name == "quantile_over_time" {
		mi = 1
	}
	ms, ok := unwrapParens(inner.Args[mi]).(*parser.MatrixSelector)
	if !ok {
		return parseErr(inner.Args[mi], "%s: the range argument must be a range selector such as m[1d], not a subquery, got %s", funcOverWindows, inner.Args[mi])
	}
	offset, rng, err := rangeOffset(funcOverWindows, ms)
	if err != nil {
		return err
	}
	vs := ms.VectorSelector.(*parser.VectorSelector)
	if vs.Anchored || vs.Smoothed {
		return parseErr(ms, "%s: the range argument cannot be anchored or smoothed", funcOverWindows)
	}
	w, err := windowArg(funcOverWindows, c.Args[1], offset, &eventWindows{fn: funcOverWindows, call: c, mi: -1})
	if err != nil {
		return err
	}
	// Select the windows over the whole range: w[r] offset o.
	wc := w.(*parser.Call)
	wvs := wc.Args[0].(*parser.VectorSelector)
	wc.Args[0] = &parser.MatrixSelector{VectorSelector: wvs, Range: rng, EndPos: wvs.PosRange.End}

	ws := &windowSamples{ms: ms, vs: vs, origRange: rng.Milliseconds(), mi: mi}
	ws.innerArgs = slices.Clone(inner.Args)
	ws.innerArgs[mi] = ms
	vs.Series = []storage.Series{ws}
	samples := &parser.Call{Func: windowSamplesFunction, Args: parser.Expressions{ms}, PosRange: ms.PositionRange()}

	args := slices.Clone(inner.Args[:mi])
	c.Func = overWindowsFunction(inner.Func.Name)
	c.Args = append(args, samples, w)
	return nil
}

// windowSamples is what over_windows knows of its range argument during one
// query: the selected series and their samples, read once, which window
// series apply to each, and the output labels made so far. It is the
// placeholder series of the range argument's selector (no labels, no
// samples), as eventWindows is of the window selector.
type windowSamples struct {
	ms        *parser.MatrixSelector
	vs        *parser.VectorSelector
	innerArgs parser.Expressions // inner's arguments, with ms as written
	mi        int
	origRange int64
	// maxSamples bounds the samples read (the engine's --query.max-samples;
	// 0: no bound).
	maxSamples int

	read    bool
	series  []promql.Series
	applies [][]int // per series, the window series (eventWindows.series) that apply
	out     map[outKey]labels.Labels
	seen    map[uint64]struct{}
	scratch promql.Vector
	lb      *labels.Builder
}

type outKey struct {
	series, window int
	start          int64
}

var _ storage.Series = (*windowSamples)(nil)

func (*windowSamples) Labels() labels.Labels { return labels.EmptyLabels() }
func (*windowSamples) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	return chunkenc.NewNopIterator()
}

// samplesOf returns the windowSamples of a prepared __window_samples call,
// reading the series on first use.
func samplesOf(fn string, e parser.Expr) *windowSamples {
	if c, ok := e.(*parser.Call); ok && c.Func.Name == windowSamplesFunc && len(c.Args) == 1 {
		if ms, ok := c.Args[0].(*parser.MatrixSelector); ok {
			if vs, ok := ms.VectorSelector.(*parser.VectorSelector); ok && len(vs.Series) == 1 {
				if ws, ok := vs.Series[0].(*windowSamples); ok {
					if !ws.read {
						ws.readSeries(fn, vs.UnexpandedSeriesSet)
					}
					return ws
				}
			}
		}
	}
	panic(notPreparedErr(fn))
}

// readSeries reads every selected series into memory, without stale
// markers, within maxSamples.
func (ws *windowSamples) readSeries(fn string, set storage.SeriesSet) {
	ws.read = true
	var it chunkenc.Iterator
	n := 0
	for set != nil && set.Next() {
		s := set.At()
		ps := promql.Series{Metric: s.Labels()}
		it = s.Iterator(it)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			switch vt {
			case chunkenc.ValFloat:
				t, f := it.At()
				if value.IsStaleNaN(f) {
					continue
				}
				ps.Floats = append(ps.Floats, promql.FPoint{T: t, F: f})
			case chunkenc.ValHistogram, chunkenc.ValFloatHistogram:
				t, h := it.AtFloatHistogram(nil)
				if value.IsStaleNaN(h.Sum) {
					continue
				}
				ps.Histograms = append(ps.Histograms, promql.HPoint{T: t, H: h})
			}
			if n++; ws.maxSamples > 0 && n > ws.maxSamples {
				panic(promql.ErrTooManySamples(fn))
			}
		}
		if err := it.Err(); err != nil {
			panic(fmt.Errorf("%s: read series: %w", fn, err))
		}
		if len(ps.Floats)+len(ps.Histograms) > 0 {
			ws.series = append(ws.series, ps)
		}
	}
	if set != nil && set.Err() != nil {
		panic(fmt.Errorf("%s: read series: %w", fn, set.Err()))
	}
	ws.out = map[outKey]labels.Labels{}
	ws.seen = map[uint64]struct{}{}
	ws.lb = labels.NewBuilder(labels.EmptyLabels())
}

// match finds, once, the window series that apply to each series: those
// whose compared labels the series also has are equal in it.
func (ws *windowSamples) match(ew *eventWindows) {
	if ws.applies != nil {
		return
	}
	ws.applies = make([][]int, len(ws.series))
	for i, s := range ws.series {
		for k, w := range ew.series {
			ok := true
			w.compare.Range(func(l labels.Label) {
				if v := s.Metric.Get(l.Name); ok && v != "" && v != l.Value {
					ok = false
				}
			})
			if ok {
				ws.applies[i] = append(ws.applies[i], k)
			}
		}
	}
}

// output returns the labels of the result for series i in window j of
// window series k: the series' without __name__, the window series'
// (event_name and the attributes), and window_start.
func (ws *windowSamples) output(ew *eventWindows, i, k int, start int64) labels.Labels {
	key := outKey{i, k, start}
	if l, ok := ws.out[key]; ok {
		return l
	}
	ws.lb.Reset(ws.series[i].Metric)
	ws.lb.Del(labels.MetricName)
	ew.series[k].output.Range(func(l labels.Label) { ws.lb.Set(l.Name, l.Value) })
	ws.lb.Set(labelWindowStart, strconv.FormatFloat(float64(start)/1000, 'f', -1, 64))
	l := ws.lb.Labels()
	ws.out[key] = l
	return l
}

// overWindowsCall implements over_windows for one inner range function: for
// each series of the range argument and each window that applies to it and
// started within the range (t-o-r, t-o], inner over the samples from the
// window's start to its end, or to t-o (included) while it lasts; rate and
// increase extrapolate to those bounds.
func overWindowsCall(innerName string, mi int) promql.FunctionCall {
	inner := promql.FunctionCalls[innerName]
	rateLike := innerName == "rate" || innerName == "increase"
	return func(vals []promql.Vector, _ promql.Matrix, args parser.Expressions, enh *promql.EvalNodeHelper) (promql.Vector, annotations.Annotations) {
		ew := windowsOf(funcOverWindows, args, mi+1)
		ws := samplesOf(funcOverWindows, args[mi])
		ws.match(ew)
		end := enh.Ts - ws.vs.Offset.Milliseconds()
		lo := end - ws.origRange
		scalars := vals[:mi]
		out := enh.Out[:0]
		clear(ws.seen)
		var annos annotations.Annotations
		ts := enh.Ts
		for i := range ws.series {
			for _, k := range ws.applies[i] {
				wl := ew.series[k].windows
				first := sort.Search(len(wl.starts), func(j int) bool { return wl.starts[j] > lo })
				for j := first; j < len(wl.starts) && wl.starts[j] <= end; j++ {
					start, stop := wl.starts[j], min(wl.ends[j], end)
					if stop <= start {
						continue // started at t-o: nothing yet
					}
					in := ew.clip(ws.series[i], start, min(wl.ends[j], end+1))
					a := ws.innerArgs
					if rateLike {
						a = ew.synthetic(ws.innerArgs, mi, stop-start, 0)
						enh.Ts = stop
					}
					enh.Out = ws.scratch[:0]
					res, an := inner(scalars, in, a, enh)
					ws.scratch = res[:0]
					enh.Ts = ts
					annos.Merge(an)
					if len(res) == 0 {
						continue
					}
					l := ws.output(ew, i, k, start)
					h := l.Hash()
					if _, dup := ws.seen[h]; dup {
						continue // two window series that give the same labels
					}
					ws.seen[h] = struct{}{}
					out = append(out, promql.Sample{Metric: l, F: res[0].F, H: res[0].H})
				}
			}
		}
		enh.Out = out
		return out, annos
	}
}

// limitOverWindows sets the samples bound of every over_windows call in
// expr.
func limitOverWindows(node parser.Node, maxSamples int) {
	if vs, ok := node.(*parser.VectorSelector); ok && len(vs.Series) == 1 {
		if ws, ok := vs.Series[0].(*windowSamples); ok {
			ws.maxSamples = maxSamples
		}
	}
	for _, child := range parser.Children(node) {
		limitOverWindows(child, maxSamples)
	}
}
