package promql

import (
	"math"
	"sort"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/levitated/levitated/pkg/events"
)

// This file registers levitated's event-window functions with Prometheus'
// parser (parser.Functions) and engine (promql.FunctionCalls), once, at
// init. docs/promql-event-functions.md is their reference.
//
// Prometheus' engine hands a function with a range-vector argument the
// samples of one series at a time and its other arguments as one number per
// step, so a window vector cannot reach such a function as an argument. The
// evaluation parser (evalParser, used by New) therefore replaces the window
// argument of every event-window call by __event_windows(<window selector>):
// a one-number-per-step argument that makes the engine select the window
// series under the hint eventstore.WindowListHint (one sample per window:
// start time, end in seconds) and expand them; the function then reads the
// windows from that selector. after_before_* calls are also turned into one
// internal function per inner range function.

// windowListFunc is the internal function wrapping window selectors; the
// engine passes its name to the store as SelectHints.Func, which the
// event store answers with one sample per window.
const windowListFunc = events.WindowListHint

// sinceFuncs are the <agg>_since functions and the range functions they
// apply to the samples since the window started.
var sinceFuncs = map[string]string{
	"increase_since": "increase",
	"rate_since":     "rate",
	"avg_since":      "avg_over_time",
	"sum_since":      "sum_over_time",
	"min_since":      "min_over_time",
	"max_since":      "max_over_time",
	"count_since":    "count_over_time",
	"quantile_since": "quantile_over_time",
}

// afterBeforeInner are the range functions after_before_ratio and
// after_before_difference accept as their first argument.
var afterBeforeInner = []string{
	"rate", "increase",
	"avg_over_time", "sum_over_time", "min_over_time", "max_over_time", "count_over_time",
	"quantile_over_time", "stddev_over_time", "stdvar_over_time",
}

const (
	funcAfterBeforeRatio      = "after_before_ratio"
	funcAfterBeforeDifference = "after_before_difference"
	funcTimeSinceWindowStart  = "time_since_window_start"
	funcTimeSinceWindowEnd    = "time_since_window_end"
)

// EventFunctions returns the names of the event-window functions a query
// can use, sorted.
func EventFunctions() []string {
	names := []string{funcAfterBeforeRatio, funcAfterBeforeDifference, funcTimeSinceWindowStart, funcTimeSinceWindowEnd, funcOverWindows}
	for n := range sinceFuncs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func init() {
	registerEventFunctions()
}

func registerEventFunctions() {
	register := func(f *parser.Function, call promql.FunctionCall) {
		if f.Name[0] != '_' {
			parser.Functions[f.Name] = f
		}
		promql.FunctionCalls[f.Name] = call
		// Every one of them depends on the evaluation time (where it falls
		// relative to the windows), so the @ modifier must not make it step
		// invariant.
		promql.AtModifierUnsafeFunctions[f.Name] = struct{}{}
	}
	V, M, S := parser.ValueTypeVector, parser.ValueTypeMatrix, parser.ValueTypeScalar

	for name, inner := range sinceFuncs {
		args, mi := []parser.ValueType{M, V}, 0
		if inner == "quantile_over_time" {
			args, mi = []parser.ValueType{S, M, V}, 1
		}
		register(&parser.Function{Name: name, ArgTypes: args, ReturnType: V},
			sinceCall(name, inner, mi))
	}

	for _, name := range []string{funcAfterBeforeRatio, funcAfterBeforeDifference} {
		register(&parser.Function{Name: name, ArgTypes: []parser.ValueType{V, V, S}, Variadic: 1, ReturnType: V},
			notPrepared(name))
		for _, inner := range afterBeforeInner {
			mi := 0
			if inner == "quantile_over_time" {
				mi = 1
			}
			register(afterBeforeFunction(name, inner), afterBeforeCall(name, inner, mi, name == funcAfterBeforeRatio))
		}
	}

	register(&parser.Function{Name: funcTimeSinceWindowStart, ArgTypes: []parser.ValueType{V}, ReturnType: V},
		timeSinceCall(funcTimeSinceWindowStart, false))
	register(&parser.Function{Name: funcTimeSinceWindowEnd, ArgTypes: []parser.ValueType{V}, ReturnType: V},
		timeSinceCall(funcTimeSinceWindowEnd, true))

	registerOverWindows(register)

	register(windowListFunction, func(_ []promql.Vector, _ promql.Matrix, args parser.Expressions, enh *promql.EvalNodeHelper) (promql.Vector, annotations.Annotations) {
		// Read the windows and narrow the range argument to them; the
		// value, one number per step, is not used.
		windowsOfSelector(windowListFunc, args[0]).narrow(enh.Ts)
		return append(enh.Out, promql.Sample{}), nil
	})
}

// windowListFunction is the function of the __event_windows(...) calls the
// evaluation parser inserts; it is not in parser.Functions, so no query can
// name it.
var windowListFunction = &parser.Function{
	Name:       windowListFunc,
	ArgTypes:   []parser.ValueType{parser.ValueTypeVector},
	ReturnType: parser.ValueTypeVector,
}

// afterBeforeFunction is the internal function an after_before_* call with
// the range function inner becomes: its arguments are inner's, then the
// window and the duration.
func afterBeforeFunction(name, inner string) *parser.Function {
	V, M, S := parser.ValueTypeVector, parser.ValueTypeMatrix, parser.ValueTypeScalar
	args := []parser.ValueType{M, V, S}
	if inner == "quantile_over_time" {
		args = []parser.ValueType{S, M, V, S}
	}
	return &parser.Function{Name: "__" + name + ":" + inner, ArgTypes: args, ReturnType: V}
}

// notPrepared is the implementation of a public name that the evaluation
// parser always replaces: reaching it means the engine was not built by New.
func notPrepared(name string) promql.FunctionCall {
	return func(_ []promql.Vector, _ promql.Matrix, args parser.Expressions, _ *promql.EvalNodeHelper) (promql.Vector, annotations.Annotations) {
		panic(notPreparedErr(name))
	}
}

// matrixArg returns the range argument args[i] (a matrix selector, which
// the engine also makes of a subquery) and its vector selector.
func matrixArg(args parser.Expressions, i int) (*parser.MatrixSelector, *parser.VectorSelector) {
	ms := args[i].(*parser.MatrixSelector)
	return ms, ms.VectorSelector.(*parser.VectorSelector)
}

// sinceCall implements <agg>_since: inner applied to the samples at or
// after the start of the latest window that applies to the series and
// started at or before the end of the range; the whole range if that window
// started before the range; nothing if no window applies.
func sinceCall(name, innerName string, mi int) promql.FunctionCall {
	inner := promql.FunctionCalls[innerName]
	rateLike := innerName == "rate" || innerName == "increase"
	return func(vals []promql.Vector, mat promql.Matrix, args parser.Expressions, enh *promql.EvalNodeHelper) (promql.Vector, annotations.Annotations) {
		ew := windowsOf(name, args, mi+1)
		if len(mat) == 0 {
			return enh.Out, nil
		}
		ms, vs := matrixArg(args, mi)
		end := enh.Ts - vs.Offset.Milliseconds()
		wl := ew.forMetric(mat[0].Metric)
		i, ok := wl.latest(end)
		if !ok {
			return enh.Out, nil
		}
		start := wl.starts[i]
		scalars := vals[:mi]
		if start <= end-ew.origRange.Milliseconds() {
			// The range as written, which the engine read in full.
			if rateLike && ms.Range != ew.origRange {
				args = ew.synthetic(args, mi, ew.origRange.Milliseconds(), vs.Offset.Milliseconds())
			}
			return inner(scalars, mat, args, enh)
		}
		in := ew.clip(mat[0], start, math.MaxInt64)
		if rateLike {
			// Extrapolate to the window's start, not the range's.
			args = ew.synthetic(args, mi, end-start, vs.Offset.Milliseconds())
		}
		return inner(scalars, in, args, enh)
	}
}

// afterBeforeCall implements after_before_ratio and after_before_difference
// for one inner range function: inner over the period after the latest
// window's start (the window itself, or the given duration, and no later
// than the end of the range) against inner over an equally long period just
// before the start.
func afterBeforeCall(name, innerName string, mi int, ratio bool) promql.FunctionCall {
	inner := promql.FunctionCalls[innerName]
	rateLike := innerName == "rate" || innerName == "increase"
	return func(vals []promql.Vector, mat promql.Matrix, args parser.Expressions, enh *promql.EvalNodeHelper) (promql.Vector, annotations.Annotations) {
		ew := windowsOf(name, args, mi+1)
		if len(mat) == 0 {
			return enh.Out, nil
		}
		_, vs := matrixArg(args, mi)
		offset := vs.Offset.Milliseconds()
		end := enh.Ts - offset
		wl := ew.forMetric(mat[0].Metric)
		i, ok := wl.latest(end)
		if !ok {
			return enh.Out, nil
		}
		start := wl.starts[i]
		afterEnd := wl.ends[i] // the window's end (MaxInt64 while open)
		if d := vals[len(vals)-1][0].F; !math.IsInf(d, 1) {
			if math.IsNaN(d) || d <= 0 {
				return enh.Out, nil
			}
			afterEnd = start + int64(math.Min(d*1000, float64(math.MaxInt64-start)))
		}
		length := min(afterEnd, end) - start
		if length <= 0 || start-length <= end-ew.origRange.Milliseconds() {
			// An empty period, or the period before the window does not
			// lie inside the range.
			return enh.Out, nil
		}
		scalars := vals[:mi]
		out := enh.Out[:0]
		period := func(from, to, rangeEnd int64) (float64, bool, annotations.Annotations) {
			in := ew.clip(mat[0], from, to)
			a := args
			ts := enh.Ts
			if rateLike {
				a = ew.synthetic(args, mi, length, 0)
				enh.Ts = rangeEnd
			}
			enh.Out = out
			res, annos := inner(scalars, in, a, enh)
			enh.Ts = ts
			if len(res) != 1 || res[0].H != nil {
				return 0, false, annos
			}
			return res[0].F, true, annos
		}
		after, okA, annos := period(start, afterEnd, min(afterEnd, end))
		before, okB, annosB := period(start-length, start, start)
		annos.Merge(annosB)
		enh.Out = out
		if !okA || !okB {
			return out, annos
		}
		v := after - before
		if ratio {
			v = after / before
		}
		return append(out, promql.Sample{F: v}), annos
	}
}

// timeSinceCall implements time_since_window_start and
// time_since_window_end: per window series, the seconds from the start (or
// the end) of its latest window that started at or before the evaluation
// time; for the end, nothing while that window is open.
func timeSinceCall(name string, fromEnd bool) promql.FunctionCall {
	return func(_ []promql.Vector, _ promql.Matrix, args parser.Expressions, enh *promql.EvalNodeHelper) (promql.Vector, annotations.Annotations) {
		ew := windowsOf(name, args, 0)
		for _, ws := range ew.series {
			i, ok := ws.windows.latest(enh.Ts)
			if !ok {
				continue
			}
			from := ws.windows.starts[i]
			if fromEnd {
				from = ws.windows.ends[i]
				if from > enh.Ts {
					continue
				}
			}
			enh.Out = append(enh.Out, promql.Sample{Metric: ws.output, F: float64(enh.Ts-from) / 1000})
		}
		return enh.Out, nil
	}
}

// clip returns a one-series matrix holding the samples of s in [from, to).
func (ew *eventWindows) clip(s promql.Series, from, to int64) promql.Matrix {
	fl := s.Floats
	lo := sort.Search(len(fl), func(i int) bool { return fl[i].T >= from })
	hi := sort.Search(len(fl), func(i int) bool { return fl[i].T >= to })
	hs := s.Histograms
	hlo := sort.Search(len(hs), func(i int) bool { return hs[i].T >= from })
	hhi := sort.Search(len(hs), func(i int) bool { return hs[i].T >= to })
	if ew.matrix == nil {
		ew.matrix = make(promql.Matrix, 1)
	}
	ew.matrix[0] = promql.Series{Metric: s.Metric, Floats: fl[lo:max(lo, hi)], Histograms: hs[hlo:max(hlo, hhi)], DropName: s.DropName}
	return ew.matrix
}

// synthetic returns args with the range argument args[mi] replaced by a
// copy whose range is rangeMs and offset offsetMs, so that rate and
// increase extrapolate to the period's boundaries.
func (ew *eventWindows) synthetic(args parser.Expressions, mi int, rangeMs, offsetMs int64) parser.Expressions {
	ms := args[mi].(*parser.MatrixSelector)
	if ew.synthFor != ms {
		vs := *ms.VectorSelector.(*parser.VectorSelector)
		msCopy := *ms
		msCopy.VectorSelector = &vs
		ew.synthFor, ew.synthMS, ew.synthVS = ms, &msCopy, &vs
		ew.synthArgs = append(parser.Expressions(nil), args...)
		ew.synthArgs[mi] = &msCopy
	}
	ew.synthMS.Range = msDuration(rangeMs)
	ew.synthVS.Offset = msDuration(offsetMs)
	return ew.synthArgs
}
