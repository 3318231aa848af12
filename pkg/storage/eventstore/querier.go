package eventstore

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/levitated/levitated/pkg/events"
)

// GridInterval is the spacing of the samples of the window series inside a
// window. It is below PromQL's 5-minute lookback and below the usual
// evaluation steps, so every evaluation instant inside a window sees a
// sample; a stale marker at the stop time ends the window exactly.
const GridInterval int64 = 15_000 // milliseconds

var metricNames = []string{events.MetricChangeEvents, events.MetricActive, events.MetricWindowStart, events.MetricWindowEnd}

// Querier returns a storage.Querier over the events of tenant between mint
// and maxt (milliseconds, inclusive). It serves the series named in
// pkg/events: last9_change_events (one sample per event) and, per window,
// change_event_active, change_event_window_start_seconds and
// change_event_window_end_seconds (see docs/events.md). Merge it with the
// samples' querier by storage.NewMergeQuerier.
func (s *Store) Querier(tenant uint32, mint, maxt int64) storage.Querier {
	return &querier{s: s, tenant: tenant, mint: mint, maxt: maxt}
}

type querier struct {
	s          *Store
	tenant     uint32
	mint, maxt int64
}

func (q *querier) Close() error { return nil }

// wantedMetrics returns the metric names of ours that the __name__
// matchers (if any) accept.
func wantedMetrics(ms []*labels.Matcher) map[string]bool {
	want := map[string]bool{}
	for _, n := range metricNames {
		ok := true
		for _, m := range ms {
			if m.Name == labels.MetricName && !m.Matches(n) {
				ok = false
				break
			}
		}
		if ok {
			want[n] = true
		}
	}
	return want
}

// Select returns the event series matching ms. hints narrow the time range
// (Start, End), Func "series" skips the samples, Func WindowListHint
// returns window lists; ShardCount/ShardIndex and Limit are honoured.
func (q *querier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	withSamples := true
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
		if hints.Start == 0 && hints.End == 0 {
			mint, maxt = q.mint, q.maxt
		}
		withSamples = hints.Func != "series"
	}
	// The event-window functions read windows as lists (WindowListHint).
	windowLists := hints != nil && hints.Func == WindowListHint
	series, err := q.build(ctx, mint, maxt, ms, withSamples, windowLists)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if hints != nil && hints.ShardCount > 0 {
		series = slices.DeleteFunc(series, func(s *listSeries) bool {
			return labels.StableHash(s.lset)%hints.ShardCount != hints.ShardIndex
		})
	}
	// Sorted always: cheap here, and the merge querier needs it.
	sort.Slice(series, func(i, j int) bool { return labels.Compare(series[i].lset, series[j].lset) < 0 })
	if hints != nil && hints.Limit > 0 && len(series) > hints.Limit {
		series = series[:hints.Limit]
	}
	return &seriesSet{series: series}
}

// LabelValues returns the values of name among the event series in range
// that match ms.
func (q *querier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	series, err := q.build(ctx, q.mint, q.maxt, ms, false, false)
	if err != nil {
		return nil, nil, err
	}
	set := map[string]struct{}{}
	for _, s := range series {
		if v := s.lset.Get(name); v != "" {
			set[v] = struct{}{}
		}
	}
	return sortedLimited(set, hints), nil, nil
}

// LabelNames returns the label names of the event series in range that
// match ms.
func (q *querier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	series, err := q.build(ctx, q.mint, q.maxt, ms, false, false)
	if err != nil {
		return nil, nil, err
	}
	set := map[string]struct{}{}
	for _, s := range series {
		s.lset.Range(func(l labels.Label) { set[l.Name] = struct{}{} })
	}
	return sortedLimited(set, hints), nil, nil
}

func sortedLimited(set map[string]struct{}, hints *storage.LabelHints) []string {
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	if hints != nil && hints.Limit > 0 && len(out) > hints.Limit {
		out = out[:hints.Limit]
	}
	return out
}

// build computes the event series in [mint, maxt] that match ms.
func (q *querier) build(ctx context.Context, mint, maxt int64, ms []*labels.Matcher, withSamples, windowLists bool) ([]*listSeries, error) {
	if mint > maxt {
		return nil, nil
	}
	want := wantedMetrics(ms)
	if len(want) == 0 {
		return nil, nil
	}
	var out []*listSeries
	matches := func(ls labels.Labels) bool {
		for _, m := range ms {
			if !m.Matches(ls.Get(m.Name)) {
				return false
			}
		}
		return true
	}
	if want[events.MetricChangeEvents] {
		ss, err := q.eventSeries(ctx, mint, maxt, matches, withSamples)
		if err != nil {
			return nil, err
		}
		out = append(out, ss...)
	}
	if want[events.MetricActive] || want[events.MetricWindowStart] || want[events.MetricWindowEnd] {
		windowSeries := q.windowSeries
		if windowLists {
			windowSeries = func(ctx context.Context, mint, maxt int64, want map[string]bool, matches func(labels.Labels) bool, _ bool) ([]*listSeries, error) {
				return q.windowListSeries(ctx, mint, maxt, want, matches)
			}
		}
		ss, err := windowSeries(ctx, mint, maxt, want, matches, withSamples)
		if err != nil {
			return nil, err
		}
		out = append(out, ss...)
	}
	return out, nil
}

func msToNanos(ms int64) uint64 {
	if ms <= 0 {
		return 0
	}
	if ms > math.MaxInt64/1_000_000 {
		return math.MaxInt64
	}
	return uint64(ms) * 1e6
}

// eventSeries: one last9_change_events sample per event in [mint, maxt].
func (q *querier) eventSeries(ctx context.Context, mint, maxt int64, matches func(labels.Labels) bool, withSamples bool) ([]*listSeries, error) {
	lo := timeKey(q.tenant, kindEvent, msToNanos(mint))
	hi := timeKey(q.tenant, kindEvent, msToNanos(maxt)+1e6)
	it, err := q.s.ns.NewIter(lo, hi)
	if err != nil {
		return nil, fmt.Errorf("select events: %w", err)
	}
	defer it.Close()
	byLabels := map[string]*listSeries{}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		id := idFromBytes(it.Key()[5:])
		var rec eventRecord
		if err := decodeRecord(it.Value(), &rec); err != nil {
			return nil, err
		}
		e, err := rec.event(id)
		if err != nil {
			return nil, err
		}
		ls := events.EventLabels(&e)
		if !matches(ls) {
			continue
		}
		key := string(ls.Bytes(nil))
		s := byLabels[key]
		if s == nil {
			s = &listSeries{lset: ls}
			byLabels[key] = s
		}
		if !withSamples {
			continue
		}
		t := e.Time.UnixMilli()
		if n := len(s.samples); n > 0 && s.samples[n-1].t == t {
			s.samples[n-1].f = e.SampleValue() // the later event of the same millisecond wins
			continue
		}
		s.samples = append(s.samples, sample{t: t, f: e.SampleValue()})
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("select events: %w", err)
	}
	out := make([]*listSeries, 0, len(byLabels))
	for _, s := range byLabels {
		out = append(out, s)
	}
	return out, nil
}

// window is one stored window, in milliseconds; end is MaxInt64 if open.
type window struct {
	start, end int64
	open       bool
}

// Windows returns, per window label set (event_name and attributes), the
// windows of tenant that overlap [mint, maxt], in start order.
func (q *querier) windows(ctx context.Context, mint, maxt int64) (map[string]*windowGroup, error) {
	groups := map[string]*windowGroup{}
	err := q.scanWindows(ctx, maxt, func(key, name string, attrs map[string]string, w window) {
		if !w.open && w.end < mint {
			return
		}
		g := groups[key]
		if g == nil {
			g = &windowGroup{name: name, attrs: attrs}
			groups[key] = g
		}
		g.windows = append(g.windows, w)
	})
	return groups, err
}

// scanWindows calls fn, in start order, for every window of the tenant that
// starts at or before maxt, with the key of its label set.
func (q *querier) scanWindows(ctx context.Context, maxt int64, fn func(key, name string, attrs map[string]string, w window)) error {
	lo := prefix(q.tenant, kindWindow)
	hi := timeKey(q.tenant, kindWindow, msToNanos(maxt)+1e6)
	it, err := q.s.ns.NewIter(lo, hi)
	if err != nil {
		return fmt.Errorf("select windows: %w", err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		id := idFromBytes(it.Key()[5:])
		var wr windowRecord
		if err := decodeRecord(it.Value(), &wr); err != nil {
			return err
		}
		w := window{start: id.time().UnixMilli(), end: math.MaxInt64, open: wr.StopID == ""}
		if !w.open {
			w.end = wr.End / 1e6
		}
		base := events.WindowLabels(events.MetricActive, wr.Name, wr.Attributes)
		fn(string(base.Bytes(nil)), wr.Name, wr.Attributes, w)
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("select windows: %w", err)
	}
	return nil
}

type windowGroup struct {
	name    string
	attrs   map[string]string
	windows []window
}

func (q *querier) windowSeries(ctx context.Context, mint, maxt int64, want map[string]bool, matches func(labels.Labels) bool, withSamples bool) ([]*listSeries, error) {
	groups, err := q.windows(ctx, mint, maxt)
	if err != nil {
		return nil, err
	}
	var out []*listSeries
	for _, g := range groups {
		var segs []segment
		if withSamples {
			segs = segments(g.windows)
		}
		for _, metric := range []string{events.MetricActive, events.MetricWindowStart, events.MetricWindowEnd} {
			if !want[metric] {
				continue
			}
			ls := events.WindowLabels(metric, g.name, g.attrs)
			if !matches(ls) {
				continue
			}
			s := &listSeries{lset: ls}
			if withSamples {
				// An open window is active until now (plus the future
				// limit), not forever: that bounds the samples of
				// unbounded selects.
				limit := q.s.opts.Now().Add(q.s.opts.Limits.MaxFuture).UnixMilli()
				s.samples = gridSamples(segs, metric, mint, min(maxt, limit))
				if len(s.samples) == 0 {
					continue
				}
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// segment is a span of time in which the same window is the latest-started
// active one of its label set; from..to in ms, to exclusive.
type segment struct {
	from, to int64
	w        window
}

// segments splits the union of ws into spans, each labelled with the
// latest-started window active in it. ws is in start order.
func segments(ws []window) []segment {
	points := make([]int64, 0, 2*len(ws))
	for _, w := range ws {
		points = append(points, w.start)
		if !w.open {
			points = append(points, w.end)
		}
	}
	slices.Sort(points)
	points = slices.Compact(points)
	var out []segment
	for i, p := range points {
		to := int64(math.MaxInt64)
		if i+1 < len(points) {
			to = points[i+1]
		}
		var cur *window
		for j := range ws {
			if ws[j].start <= p && p < ws[j].end && (cur == nil || ws[j].start >= cur.start) {
				cur = &ws[j]
			}
		}
		if cur == nil {
			continue
		}
		if n := len(out); n > 0 && out[n-1].to == p && out[n-1].w == *cur {
			out[n-1].to = to
			continue
		}
		out = append(out, segment{from: p, to: to, w: *cur})
	}
	return out
}

// gridSamples renders segments as samples of metric in [mint, maxt]: one at
// each segment's start and every GridInterval after it, and a stale marker
// where the active span ends (unless another segment starts there).
func gridSamples(segs []segment, metric string, mint, maxt int64) []sample {
	var out []sample
	for i, sg := range segs {
		v := 1.0
		switch metric {
		case events.MetricWindowStart:
			v = float64(sg.w.start) / 1000
		case events.MetricWindowEnd:
			v = math.Inf(1)
			if !sg.w.open {
				v = float64(sg.w.end) / 1000
			}
		}
		first := sg.from
		if first < mint {
			first = sg.from + (mint-sg.from+GridInterval-1)/GridInterval*GridInterval
		}
		for t := first; t < sg.to && t <= maxt; t += GridInterval {
			out = append(out, sample{t: t, f: v})
		}
		ends := sg.to != math.MaxInt64 && (i+1 == len(segs) || segs[i+1].from != sg.to)
		if ends && sg.to >= mint && sg.to <= maxt {
			out = append(out, sample{t: sg.to, f: math.Float64frombits(value.StaleNaN)})
		}
	}
	return out
}

// listSeries is a storage.Series over a slice of float samples.
type listSeries struct {
	lset    labels.Labels
	samples []sample
}

func (s *listSeries) Labels() labels.Labels { return s.lset }

func (s *listSeries) Iterator(it chunkenc.Iterator) chunkenc.Iterator {
	if si, ok := it.(*sampleIterator); ok {
		si.samples, si.i = s.samples, -1
		return si
	}
	return &sampleIterator{samples: s.samples, i: -1}
}

type seriesSet struct {
	series []*listSeries
	i      int
}

func (s *seriesSet) Next() bool {
	if s.i >= len(s.series) {
		return false
	}
	s.i++
	return s.i <= len(s.series)
}

func (s *seriesSet) At() storage.Series                { return s.series[s.i-1] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

type sample struct {
	t int64
	f float64
}

func (s sample) T() int64                      { return s.t }
func (s sample) ST() int64                     { return 0 }
func (s sample) F() float64                    { return s.f }
func (s sample) H() *histogram.Histogram       { return nil }
func (s sample) FH() *histogram.FloatHistogram { return nil }
func (s sample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s sample) Copy() chunks.Sample           { return s }

// sampleIterator is a chunkenc.Iterator over float samples.
type sampleIterator struct {
	samples []sample
	i       int
}

func (it *sampleIterator) Next() chunkenc.ValueType {
	if it.i+1 >= len(it.samples) {
		it.i = len(it.samples)
		return chunkenc.ValNone
	}
	it.i++
	return chunkenc.ValFloat
}

func (it *sampleIterator) Seek(t int64) chunkenc.ValueType {
	if it.i < 0 {
		it.i = 0
	}
	if it.i >= len(it.samples) {
		return chunkenc.ValNone
	}
	if it.samples[it.i].t >= t {
		return chunkenc.ValFloat
	}
	j := sort.Search(len(it.samples)-it.i, func(j int) bool { return it.samples[it.i+j].t >= t })
	it.i += j
	if it.i >= len(it.samples) {
		return chunkenc.ValNone
	}
	return chunkenc.ValFloat
}

func (it *sampleIterator) At() (int64, float64) { s := it.samples[it.i]; return s.t, s.f }

// AtHistogram is never called: Next only reports float samples.
func (it *sampleIterator) AtHistogram(*histogram.Histogram) (int64, *histogram.Histogram) {
	return it.AtT(), nil
}

// AtFloatHistogram is never called: Next only reports float samples.
func (it *sampleIterator) AtFloatHistogram(*histogram.FloatHistogram) (int64, *histogram.FloatHistogram) {
	return it.AtT(), nil
}
func (it *sampleIterator) AtT() int64  { return it.samples[it.i].t }
func (it *sampleIterator) AtST() int64 { return 0 }
func (it *sampleIterator) Err() error  { return nil }
