package promql

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	levstorage "github.com/levitated/levitated/pkg/storage"
)

// NewQueryable returns what levitated's engine reads: the series of samples
// merged with the series computed from change events (events: the event
// store's last9_change_events, change_event_active and
// change_event_window_*) and with those of any more (the remote StoreAPI
// endpoints of --query.store), each for the tenant of the call's context.
// A series that several hold is merged by Prometheus' chained series
// merge: a sample at the same timestamp counts once. Every Querier is
// behind NarrowingQuerier, so that an event-window function reads its range
// argument only as far back as its windows need.
//
// Without more, a select that need not be sorted (the engine's, the series
// API's) does not sort the samples' series (eventsMerge): Prometheus' merge
// would sort every selected series by its labels only to merge them with
// the few event series.
//
// The server, the tests and the benchmarks all build their queryable here,
// so that each reads what a query on the server reads.
func NewQueryable(samples, events storage.Queryable, more ...storage.Queryable) storage.Queryable {
	qs := append([]storage.Queryable{samples, events}, more...)
	return storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		queriers := make([]storage.Querier, 0, len(qs))
		for _, q := range qs {
			qr, err := q.Querier(mint, maxt)
			if err != nil {
				for _, open := range queriers {
					_ = open.Close()
				}
				return nil, err
			}
			queriers = append(queriers, qr)
		}
		if len(more) == 0 {
			return NarrowingQuerier(&eventsMerge{samples: queriers[0], events: queriers[1]}), nil
		}
		merged := storage.NewMergeQuerier(queriers, nil, storage.ChainedSeriesMerge)
		return NarrowingQuerier(partDecliner{merged}), nil
	})
}

// eventsMerge is Prometheus' merge of the samples' and the events'
// queriers (merge: labels, sorted selects), with
// unsorted selects of its own: the event series (few, built in memory) are
// selected first; without any, the select is the samples' alone, unsorted;
// with some, the samples' series come unsorted, each merged with the event
// series of the same labels if there is one, and then the event series no
// samples' series had. The series and their samples are the merge's; only
// their order differs, which a caller of an unsorted select does not rely
// on.
//
// Prometheus' merge querier itself (label names and values, sorted
// selects) is made when first needed: a query's unsorted selects (all of
// a range query's) never need it, and it took six allocations per query.
type eventsMerge struct {
	samples, events storage.Querier

	once   sync.Once
	merged storage.Querier // nil until merge, or once closed without it
}

// merge is Prometheus' merge of the two queriers.
func (q *eventsMerge) merge() storage.Querier {
	q.once.Do(func() {
		q.merged = storage.NewMergeQuerier([]storage.Querier{q.samples, q.events}, nil, storage.ChainedSeriesMerge)
	})
	return q.merged
}

func (q *eventsMerge) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.merge().LabelValues(ctx, name, hints, ms...)
}

func (q *eventsMerge) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return q.merge().LabelNames(ctx, hints, ms...)
}

// Close closes both queriers, through the merge if it was made.
func (q *eventsMerge) Close() error {
	q.once.Do(func() {}) // no merge is made from now on
	if q.merged != nil {
		return q.merged.Close()
	}
	return errors.Join(q.samples.Close(), q.events.Close())
}

func (q *eventsMerge) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	if sortSeries || (hints != nil && hints.Limit > 0) {
		// A limited select keeps the merge's first series in label
		// order.
		return q.merge().Select(ctx, sortSeries, hints, ms...)
	}
	evSet := q.events.Select(ctx, true, hints, ms...)
	var evs []storage.Series
	for evSet.Next() {
		evs = append(evs, evSet.At())
	}
	if err := evSet.Err(); err != nil {
		return storage.ErrSeriesSet(err)
	}
	set := q.samples.Select(ctx, false, hints, ms...)
	ws := evSet.Warnings()
	if len(evs) == 0 && len(ws) == 0 {
		return set
	}
	// A part of the samples' select (levstorage.WithPart) cannot be
	// merged with the events' whole select.
	levstorage.DeclinePart(ctx)
	m := &unsortedMerge{samples: set, extra: evs, used: make([]bool, len(evs)), warnings: ws}
	if len(evs) > 0 {
		m.names = map[string][]int{}
		for i, s := range evs {
			name := s.Labels().Get(labels.MetricName)
			m.names[name] = append(m.names[name], i)
		}
	}
	return m
}

// partDecliner declines the parts of a select (levstorage.WithPart): the
// merge of several stores selects them whole.
type partDecliner struct{ storage.Querier }

func (q partDecliner) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	levstorage.DeclinePart(ctx)
	return q.Querier.Select(ctx, sortSeries, hints, ms...)
}

// unsortedMerge is the series of samples, each merged with the series of
// extra of the same labels, then the series of extra not merged.
type unsortedMerge struct {
	samples  storage.SeriesSet
	extra    []storage.Series
	names    map[string][]int // extra's indexes by metric name
	used     []bool
	next     int // extra's next series, once samples are done
	done     bool
	cur      storage.Series
	warnings annotations.Annotations
}

func (m *unsortedMerge) Next() bool {
	if !m.done {
		if m.samples.Next() {
			m.cur = m.samples.At()
			if len(m.names) > 0 {
				m.cur = m.merge(m.cur)
			}
			return true
		}
		m.done = true
		if m.samples.Err() != nil {
			return false
		}
	}
	for m.next < len(m.extra) {
		i := m.next
		m.next++
		if !m.used[i] {
			m.cur = m.extra[i]
			return true
		}
	}
	return false
}

// merge returns s merged with the series of extra of the same labels, if
// there is one not merged yet.
func (m *unsortedMerge) merge(s storage.Series) storage.Series {
	lset := s.Labels()
	for _, i := range m.names[lset.Get(labels.MetricName)] {
		if !m.used[i] && labels.Equal(m.extra[i].Labels(), lset) {
			m.used[i] = true
			return storage.ChainedSeriesMerge(s, m.extra[i])
		}
	}
	return s
}

func (m *unsortedMerge) At() storage.Series { return m.cur }
func (m *unsortedMerge) Err() error         { return m.samples.Err() }

func (m *unsortedMerge) Warnings() annotations.Annotations {
	var ws annotations.Annotations
	ws.Merge(m.warnings)
	ws.Merge(m.samples.Warnings())
	return ws
}
