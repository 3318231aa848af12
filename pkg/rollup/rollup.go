// Package rollup evaluates an aggregation of a range function over a
// selector — sum by (service) (rate(http_requests_total[5m])) — in one
// pass per series, with the results of Prometheus' engine bit for bit.
//
// Prometheus' engine evaluates such a query step by step: for every series
// and every step it copies the samples of the step's window out of a
// buffered iterator (a 5-minute rate at 1-minute steps copies each sample
// five times), calls the function on the copy, keeps every series' points
// for the whole range, and aggregates them afterwards. A Plan reads each
// series once into one buffer, slides the window over it with two indexes,
// and adds each step's value into its group as it goes; nothing per series
// outlives the series. VictoriaMetrics computes its rollups the same way
// (app/vmselect/promql/rollup.go).
//
// The results are the engine's because the operations are: the samples of
// a window are the same (left-open, stale markers dropped), the function's
// arithmetic is Prometheus' own, in the same order (rate adds a window's
// counter resets in order; its extrapolation is copied from
// promql/functions.go), and each group adds its series' values in the
// order the engine does — the order the selector returns the series in —
// with Prometheus' Kahan summation (util/kahansum). What a Plan cannot
// reproduce it does not try: Compile accepts only the forms below, and Eval
// returns ErrFallback when it meets a sample the engine would treat
// differently (a native histogram, a start timestamp), so the caller runs
// the query on the engine instead.
//
// Accepted: sum, avg, count, min, max and group, by or without labels, over
// either a bare vector selector (the engine's lookback rule) or one of
// rate, increase, delta, irate, idelta, sum_over_time, count_over_time,
// min_over_time, max_over_time, last_over_time and present_over_time of a
// matrix selector; parentheses allowed; no offset, @, anchored or smoothed
// modifier.
package rollup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/parser/posrange"
	"github.com/prometheus/prometheus/schema"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/kahansum"
)

// ErrFallback reports that a Plan met data it does not evaluate exactly as
// the engine does (a native histogram sample, a sample with a start
// timestamp); the caller should run the expression on the engine.
var ErrFallback = errors.New("rollup: data the one-pass evaluation does not cover")

// ErrTooManySamples reports that the groups' points would exceed the
// limit given to Eval; the engine, which holds more, would refuse too.
var ErrTooManySamples = errors.New("rollup: too many samples")

// Plan is an aggregation Eval can compute in one pass per series.
type Plan struct {
	op       parser.ItemType
	grouping []string // sorted, as the engine sorts them
	without  bool
	fn       string // "" for a bare selector
	rng      int64  // the matrix selector's range, ms
	rngDur   time.Duration
	sel      *parser.VectorSelector
	argPos   posrange.PositionRange // of the function's argument, for annotations
	hintFunc string
	hintBy   bool
	hintGrp  []string
}

// functions are the range functions a Plan evaluates.
var functions = map[string]bool{
	"rate": true, "increase": true, "delta": true, "irate": true, "idelta": true,
	"sum_over_time": true, "count_over_time": true, "min_over_time": true, "max_over_time": true,
	"last_over_time": true, "present_over_time": true,
}

// Compile returns the plan of a, or nil when a is not a form Eval covers.
func Compile(a *parser.AggregateExpr) *Plan {
	switch a.Op {
	case parser.SUM, parser.COUNT, parser.MIN, parser.MAX, parser.GROUP, parser.AVG:
	default:
		return nil
	}
	if a.Param != nil {
		return nil
	}
	p := &Plan{op: a.Op, without: a.Without, grouping: slices.Clone(a.Grouping)}
	slices.Sort(p.grouping)
	inner := unparen(a.Expr)
	// The select hints the engine would give (populateSeries): the
	// function or aggregation nearest the selector, and the grouping of an
	// aggregation directly above it.
	switch e := inner.(type) {
	case *parser.VectorSelector:
		p.sel = e
		p.hintFunc = a.Op.String()
		if _, direct := a.Expr.(*parser.VectorSelector); direct {
			p.hintBy, p.hintGrp = !a.Without, a.Grouping
		}
	case *parser.Call:
		if !functions[e.Func.Name] || len(e.Args) != 1 {
			return nil
		}
		ms, ok := e.Args[0].(*parser.MatrixSelector)
		if !ok {
			return nil
		}
		vs, ok := ms.VectorSelector.(*parser.VectorSelector)
		if !ok || vs.Anchored || vs.Smoothed {
			return nil
		}
		p.fn, p.sel, p.rng, p.rngDur, p.argPos = e.Func.Name, vs, ms.Range.Milliseconds(), ms.Range, ms.PositionRange()
		p.hintFunc = e.Func.Name
		if p.rng <= 0 {
			return nil
		}
	default:
		return nil
	}
	if p.sel.OriginalOffset != 0 || p.sel.Offset != 0 || p.sel.Timestamp != nil || p.sel.StartOrEnd != 0 {
		return nil
	}
	return p
}

func unparen(e parser.Expr) parser.Expr {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

// Range is the evaluation times of a query, in milliseconds: Start, then
// every Interval up to End (an instant query has Start == End).
type Range struct {
	Start, End, Interval int64
	// Lookback is the lookback delta of bare selectors.
	Lookback int64
}

func (r Range) steps() int {
	if r.Interval <= 0 || r.End <= r.Start {
		return 1
	}
	return int((r.End-r.Start)/r.Interval) + 1
}

// Eval evaluates the plan over q at the times of r, returning one series
// per group that has a value at some step, with the points the engine's
// aggregation returns (a group's order is not the engine's; sort if it
// matters). maxSamples bounds the groups' points (0: no bound).
func (p *Plan) Eval(ctx context.Context, q storage.Queryable, r Range, maxSamples int) ([]promql.Series, annotations.Annotations, error) {
	if r.Interval <= 0 {
		r.Interval = 1
		r.End = r.Start
	}
	nsteps := r.steps()
	// The time range the engine selects (getTimeRangesForSelector).
	mint := r.Start - (r.Lookback - 1)
	if p.fn != "" {
		mint = r.Start - (p.rng - 1)
	}
	maxt := r.End
	querier, err := q.Querier(mint, maxt)
	if err != nil {
		return nil, nil, err
	}
	defer querier.Close()
	hints := &storage.SelectHints{Start: mint, End: maxt, Step: r.Interval, Func: p.hintFunc, By: p.hintBy, Grouping: p.hintGrp}
	if p.fn != "" {
		hints.Range = p.rng
	}
	set := querier.Select(ctx, false, hints, p.sel.LabelMatchers...)

	var (
		annos   annotations.Annotations
		groups  []*group
		byKey   = map[string]int{}
		lb      = labels.NewBuilder(labels.EmptyLabels())
		keyBuf  []byte
		buf     samples
		it      chunkenc.Iterator
		out     = make([]float64, nsteps)
		has     = make([]bool, nsteps)
		nSeries int
	)
	for set.Next() {
		if nSeries++; nSeries%128 == 0 {
			if err := contextErr(ctx); err != nil {
				return nil, annos, err
			}
		}
		s := set.At()
		buf.t, buf.f = buf.t[:0], buf.f[:0]
		read := false
		if fa, ok := s.(floatsAppender); ok {
			buf.t, buf.f, read, err = fa.AppendFloats(buf.t, buf.f, mint, maxt, p.fn != "")
			if err != nil {
				return nil, annos, err
			}
		}
		if !read {
			it = s.Iterator(it)
			if buf, err = p.read(it, buf, mint, maxt); err != nil {
				return nil, annos, err
			}
		}
		if p.fn == "rate" || p.fn == "increase" {
			buf.countResets()
		}
		metric := s.Labels()
		if !p.compute(buf, r, out, has) {
			continue
		}
		if p.fn == "rate" || p.fn == "increase" {
			if name := metric.Get(labels.MetricName); name != "" && !strings.HasSuffix(name, "_total") &&
				!strings.HasSuffix(name, "_sum") && !strings.HasSuffix(name, "_count") && !strings.HasSuffix(name, "_bucket") {
				annos.Add(annotations.NewPossibleNonCounterInfo(name, p.argPos))
			}
		}
		// The group of the series (generateGroupingLabels).
		lb.Reset(metric)
		if p.without {
			lb.Del(p.grouping...)
			schema.Metadata{}.SetToLabels(lb)
		} else {
			lb.Keep(p.grouping...)
		}
		gl := lb.Labels()
		keyBuf = gl.Bytes(keyBuf[:0])
		gi, ok := byKey[string(keyBuf)]
		if !ok {
			if maxSamples > 0 && (len(groups)+1)*nsteps > maxSamples {
				return nil, annos, ErrTooManySamples
			}
			gi = len(groups)
			byKey[string(keyBuf)] = gi
			groups = append(groups, &group{metric: gl, acc: make([]acc, nsteps)})
		}
		g := groups[gi]
		// A function of a range drops the metric name (last_over_time
		// keeps it); the group drops it when any of its series does.
		if p.fn != "" && p.fn != "last_over_time" {
			g.dropName = true
		}
		for k := range nsteps {
			if has[k] {
				g.acc[k].add(p.op, out[k])
			}
		}
	}
	if err := set.Err(); err != nil {
		return nil, annos, err
	}
	annos.Merge(set.Warnings())
	if err := contextErr(ctx); err != nil {
		return nil, annos, err
	}

	res := make([]promql.Series, 0, len(groups))
	for _, g := range groups {
		s := promql.Series{Metric: g.metric, DropName: g.dropName}
		for k := range nsteps {
			a := &g.acc[k]
			if !a.seen {
				continue
			}
			v := a.v
			switch p.op {
			case parser.SUM:
				v += a.c
			case parser.COUNT:
				v = a.n
			case parser.AVG:
				if a.inc {
					v = a.mean + a.c
				} else {
					v = a.v/a.n + a.c/a.n
				}
			}
			s.Floats = append(s.Floats, promql.FPoint{T: r.Start + int64(k)*r.Interval, F: v})
		}
		if len(s.Floats) > 0 {
			res = append(res, s)
		}
	}
	return res, annos, nil
}

// samples are a series' samples: their timestamps and values.
type samples struct {
	t []int64
	f []float64
	// resets[i], for rate and increase, counts the counter resets
	// (f[j] < f[j-1]) among samples 1..i: a window without one needs no
	// scan for them.
	resets []int32
}

func (s samples) len() int { return len(s.t) }

// slice is the samples [lo, hi) (without resets).
func (s samples) slice(lo, hi int) samples { return samples{t: s.t[lo:hi], f: s.f[lo:hi]} }

// countResets sets s.resets.
func (s *samples) countResets() {
	fs := s.f
	if cap(s.resets) < len(fs) {
		s.resets = make([]int32, len(fs), 2*len(fs))
	}
	rs := s.resets[:len(fs)]
	s.resets = rs
	if len(fs) == 0 {
		return
	}
	var n int32
	rs[0] = 0
	for i := 1; i < len(fs) && i < len(rs); i++ {
		if fs[i] < fs[i-1] {
			n++
		}
		rs[i] = n
	}
}

// floatsAppender is a series that can append its float samples in a time
// range to a buffer without an iterator (pkg/storage's): ok false (with
// the buffer as it was) when it cannot, and the series is to be iterated.
type floatsAppender interface {
	AppendFloats(ts []int64, fs []float64, mint, maxt int64, dropStale bool) (_ []int64, _ []float64, ok bool, _ error)
}

// read appends the float samples of it in [mint, maxt] to buf. The samples
// of a range function's windows never include a staleness marker (the
// engine drops them); a bare selector needs them, as they end a series.
func (p *Plan) read(it chunkenc.Iterator, buf samples, mint, maxt int64) (samples, error) {
	vt := it.Seek(mint)
	for ; vt != chunkenc.ValNone; vt = it.Next() {
		if vt != chunkenc.ValFloat {
			return buf, ErrFallback
		}
		if it.AtST() != 0 {
			return buf, ErrFallback
		}
		t, f := it.At()
		if t < mint {
			continue
		}
		if t > maxt {
			break
		}
		if p.fn != "" && value.IsStaleNaN(f) {
			continue
		}
		buf.t = append(buf.t, t)
		buf.f = append(buf.f, f)
	}
	if err := it.Err(); err != nil {
		return buf, err
	}
	return buf, nil
}

// compute sets out[k] and has[k] to the series' value at each step; it
// reports whether there was any.
func (p *Plan) compute(buf samples, r Range, out []float64, has []bool) bool {
	switch p.fn {
	case "rate":
		return p.computeRate(buf, r, out, has, true, true)
	case "increase":
		return p.computeRate(buf, r, out, has, true, false)
	case "delta":
		return p.computeRate(buf, r, out, has, false, false)
	}
	found := false
	lo, hi := 0, 0
	for k := range out {
		ts := r.Start + int64(k)*r.Interval
		has[k] = false
		// hi: the first sample after ts.
		for hi < len(buf.t) && buf.t[hi] <= ts {
			hi++
		}
		if p.fn == "" {
			// The engine's vectorSelectorSingle: the last sample at or
			// before ts, unless it is older than the lookback delta or a
			// staleness marker.
			if hi == 0 {
				continue
			}
			t, f := buf.t[hi-1], buf.f[hi-1]
			if t <= ts-r.Lookback || value.IsStaleNaN(f) {
				continue
			}
			out[k], has[k], found = f, true, true
			continue
		}
		// lo: the first sample inside (ts - range, ts].
		for lo < hi && buf.t[lo] <= ts-p.rng {
			lo++
		}
		if lo >= hi {
			continue
		}
		v, ok := p.apply(buf.slice(lo, hi))
		if ok {
			out[k], has[k], found = v, true, true
		}
	}
	return found
}

// computeRate is compute for rate, increase and delta: the same windows,
// extrapolatedRate called without the window's slices being built.
func (p *Plan) computeRate(buf samples, r Range, out []float64, has []bool, isCounter, isRate bool) bool {
	found := false
	lo, hi := 0, 0
	bt, bf := buf.t, buf.f[:len(buf.t)]
	rngSeconds := p.rngDur.Seconds()
	for k := range out {
		ts := r.Start + int64(k)*r.Interval
		has[k] = false
		for hi < len(bt) && bt[hi] <= ts {
			hi++
		}
		for lo < hi && bt[lo] <= ts-p.rng {
			lo++
		}
		if hi-lo < 2 {
			// No sample, or a single one without a start timestamp: no
			// result.
			continue
		}
		resets := isCounter && buf.resets[hi-1] != buf.resets[lo]
		out[k] = extrapolatedRate(bf[lo:hi], bt[lo], bt[hi-1], ts, p.rng, rngSeconds, isCounter, isRate, resets)
		has[k], found = true, true
	}
	return found
}

// apply is the range function over the (non-empty) window w, but for
// those of computeRate.
func (p *Plan) apply(w samples) (float64, bool) {
	switch p.fn {
	case "irate":
		return instantValue(w, true)
	case "idelta":
		return instantValue(w, false)
	case "sum_over_time":
		var sum, c float64
		for _, f := range w.f {
			sum, c = kahansum.Inc(f, sum, c)
		}
		if math.IsInf(sum, 0) {
			return sum, true
		}
		return sum + c, true
	case "count_over_time":
		return float64(w.len()), true
	case "min_over_time":
		m := w.f[0]
		for _, f := range w.f {
			if f < m || math.IsNaN(m) {
				m = f
			}
		}
		return m, true
	case "max_over_time":
		m := w.f[0]
		for _, f := range w.f {
			if f > m || math.IsNaN(m) {
				m = f
			}
		}
		return m, true
	case "last_over_time":
		return w.f[w.len()-1], true
	case "present_over_time":
		return 1, true
	}
	panic(fmt.Sprintf("rollup: function %q compiled but not evaluated", p.fn))
}

// extrapolatedRate is Prometheus' (promql/functions.go) for float samples
// without start timestamps, the window being the values fs (two or more)
// from firstT to lastT, ending at ts; rngSeconds is the range's
// Duration.Seconds(). A counter's resets are added only if resets says
// there are some: the loop adds nothing otherwise.
func extrapolatedRate(fs []float64, firstT, lastT, ts, rng int64, rngSeconds float64, isCounter, isRate, resets bool) float64 {
	rangeStart, rangeEnd := ts-rng, ts
	numSamplesMinusOne := len(fs) - 1
	firstF := fs[0]
	resultFloat := fs[numSamplesMinusOne] - firstF
	if isCounter && resets {
		for i := 1; i < len(fs); i++ {
			if fs[i] < fs[i-1] {
				resultFloat += fs[i-1]
			}
		}
	}
	durationToStart := float64(firstT-rangeStart) / 1000
	durationToEnd := float64(rangeEnd-lastT) / 1000
	sampledInterval := float64(lastT-firstT) / 1000
	averageDurationBetweenSamples := sampledInterval / float64(numSamplesMinusOne)
	extrapolationThreshold := averageDurationBetweenSamples * 1.1
	if durationToStart >= extrapolationThreshold {
		durationToStart = averageDurationBetweenSamples / 2
	}
	if isCounter {
		durationToZero := durationToStart
		if resultFloat > 0 && firstF >= 0 {
			durationToZero = sampledInterval * (firstF / resultFloat)
		}
		if durationToZero < durationToStart {
			durationToStart = durationToZero
		}
	}
	if durationToEnd >= extrapolationThreshold {
		durationToEnd = averageDurationBetweenSamples / 2
	}
	factor := 1.0
	if sampledInterval != 0 {
		factor = (sampledInterval + durationToStart + durationToEnd) / sampledInterval
	}
	if isRate {
		factor /= rngSeconds
	}
	return resultFloat * factor
}

// instantValue is Prometheus' irate/idelta for float samples without start
// timestamps.
func instantValue(w samples, isRate bool) (float64, bool) {
	n := w.len()
	if n < 2 {
		return 0, false
	}
	prevT, prevF, lastT, lastF := w.t[n-2], w.f[n-2], w.t[n-1], w.f[n-1]
	var result float64
	if isRate && lastF < prevF {
		result = lastF
	} else {
		result = lastF - prevF
	}
	sampledInterval := lastT - prevT
	if sampledInterval == 0 {
		return 0, false
	}
	if isRate {
		result /= float64(sampledInterval) / 1000
	}
	return result, true
}

type group struct {
	metric   labels.Labels
	dropName bool
	acc      []acc
}

// acc is one group's aggregation at one step: the engine's
// groupedAggregation for floats.
type acc struct {
	v, c, n float64
	mean    float64 // avg's incremental mean, once the sum would overflow
	inc     bool
	seen    bool
}

func (a *acc) add(op parser.ItemType, f float64) {
	if !a.seen {
		a.seen, a.v, a.c, a.n, a.mean = true, f, 0, 1, f
		if op == parser.GROUP {
			a.v = 1
		}
		return
	}
	switch op {
	case parser.AVG:
		// Prometheus' direct mean with Kahan summation, switching to the
		// incremental mean when the sum would overflow.
		a.n++
		if !a.inc {
			v, c := kahansum.Inc(f, a.v, a.c)
			if !math.IsInf(v, 0) {
				a.v, a.c = v, c
				return
			}
			a.inc = true
			a.mean = a.v / (a.n - 1)
			a.c /= a.n - 1
		}
		q := (a.n - 1) / a.n
		a.mean, a.c = kahansum.Inc(f/a.n, q*a.mean, q*a.c)
	case parser.SUM:
		a.v, a.c = kahansum.Inc(f, a.v, a.c)
	case parser.MIN:
		if a.v > f || math.IsNaN(a.v) {
			a.v = f
		}
	case parser.MAX:
		if a.v < f || math.IsNaN(a.v) {
			a.v = f
		}
	case parser.COUNT:
		a.n++
	}
}

// contextErr is the engine's error for an ended context (contextDone).
func contextErr(ctx context.Context) error {
	err := ctx.Err()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return promql.ErrQueryCanceled("expression evaluation")
	case errors.Is(err, context.DeadlineExceeded):
		return promql.ErrQueryTimeout("expression evaluation")
	}
	return err
}
