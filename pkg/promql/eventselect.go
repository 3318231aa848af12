package promql

import (
	"context"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// NarrowingQuerier wraps q so that the range argument of an event-window
// function is selected only as far back as its windows need: the engine
// selects every series before evaluating anything, so a select under an
// event-window function's hint is deferred until the series are first
// read, by which time the function's window argument has been evaluated
// and has narrowed the select's start (eventWindows.narrow). Other selects
// pass through. Wrap the Querier of every Queryable given to the engine
// (the results are the same without it; only slower).
func NarrowingQuerier(q storage.Querier) storage.Querier {
	return &narrowingQuerier{Querier: q}
}

type narrowingQuerier struct {
	storage.Querier
}

func (q *narrowingQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	if hints == nil || !narrowable(hints.Func) {
		return q.Querier.Select(ctx, sortSeries, hints, ms...)
	}
	h := *hints
	return &deferredSelect{ctx: ctx, q: q.Querier, sortSeries: sortSeries, hints: &h, origStart: h.Start, ms: ms}
}

// narrowable reports whether fn is an event-window function whose range
// argument eventWindows.narrow narrows.
func narrowable(fn string) bool {
	return sinceFuncs[fn] != "" || strings.HasPrefix(fn, "__"+funcAfterBeforeRatio+":") || strings.HasPrefix(fn, "__"+funcAfterBeforeDifference+":")
}

// deferredSelect selects when first read.
type deferredSelect struct {
	ctx        context.Context
	q          storage.Querier
	sortSeries bool
	hints      *storage.SelectHints
	origStart  int64
	ms         []*labels.Matcher
	set        storage.SeriesSet
}

// narrowStart moves the start of the select to start, if it has not run
// yet; never before the start the engine asked for.
func (s *deferredSelect) narrowStart(start int64) {
	if s.set == nil {
		s.hints.Start = max(s.origStart, min(start, s.hints.End))
	}
}

func (s *deferredSelect) Next() bool {
	if s.set == nil {
		s.set = s.q.Select(s.ctx, s.sortSeries, s.hints, s.ms...)
	}
	return s.set.Next()
}

func (s *deferredSelect) At() storage.Series { return s.set.At() }

func (s *deferredSelect) Err() error {
	if s.set == nil {
		return nil
	}
	return s.set.Err()
}

func (s *deferredSelect) Warnings() annotations.Annotations {
	if s.set == nil {
		return nil
	}
	return s.set.Warnings()
}
