package promql

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/events"
	levstorage "github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/tenant"
)

// TestQueryableUnsortedSelect: an unsorted select of NewQueryable (the
// engine's) gives the same series with the same samples as Prometheus'
// sorted merge of the store and the event store, on a real store and event
// store, with event series alone, samples' series alone, and a series both
// hold (merged, the sample at an event's time counted once); the samples'
// series come in the store's order, not sorted.
func TestQueryableUnsortedSelect(t *testing.T) {
	env := newScriptEnv(t)
	ctx := context.Background()
	base := env.base
	app := env.db.Appender(ctx)
	// Created in descending label order, so that the store's order is not
	// the labels' order.
	for i := 9; i >= 0; i-- {
		lset := labels.FromStrings("__name__", "m", "i", fmt.Sprint(i), "service", fmt.Sprintf("s%d", i%3))
		for k := range 5 {
			_, err := app.Append(0, lset, base.Add(time.Duration(k)*time.Minute).UnixMilli(), float64(i*k))
			require.NoError(t, err)
		}
	}
	// A samples' series with the labels of an event series: one sample at
	// the event's time, one at another.
	both := labels.FromStrings("__name__", events.MetricChangeEvents, "event_name", "deploy", "event_state", "start", "service", "s1")
	_, err := app.Append(0, both, base.Add(90*time.Second).UnixMilli(), 7)
	require.NoError(t, err)
	_, err = app.Append(0, both, base.Add(2*time.Minute).UnixMilli(), 1)
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	tid, err := env.db.TenantID(ctx, tenant.Default)
	require.NoError(t, err)
	var evs []events.Event
	for _, svc := range []string{"s1", "s2"} {
		attrs := map[string]string{"service": svc}
		evs = append(evs,
			events.Event{Name: "deploy", State: events.StateStart, Time: base.Add(2 * time.Minute), Attributes: attrs},
			events.Event{Name: "deploy", State: events.StateStop, Time: base.Add(3 * time.Minute), Attributes: attrs})
	}
	_, err = env.events.Append(ctx, tid, evs)
	require.NoError(t, err)

	m := labels.MustNewMatcher
	selects := [][]*labels.Matcher{
		{m(labels.MatchRegexp, "__name__", ".+")},
		{m(labels.MatchEqual, "__name__", "m")},
		{m(labels.MatchEqual, "__name__", events.MetricChangeEvents)},
		{m(labels.MatchEqual, "service", "s1")},
		{m(labels.MatchRegexp, "__name__", "change_event.*")},
		{m(labels.MatchEqual, "__name__", "absent")},
	}
	mint, maxt := base.Add(-time.Hour).UnixMilli(), base.Add(time.Hour).UnixMilli()
	read := func(ss promstorage.SeriesSet) (names []string, all []string) {
		var it chunkenc.Iterator
		for ss.Next() {
			s := ss.At()
			var pts []string
			it = s.Iterator(it)
			for it.Next() == chunkenc.ValFloat {
				ts, v := it.At()
				pts = append(pts, fmt.Sprintf("%d:%g", ts-base.UnixMilli(), v))
			}
			require.NoError(t, it.Err())
			names = append(names, s.Labels().String())
			all = append(all, s.Labels().String()+" "+strings.Join(pts, " "))
		}
		require.NoError(t, ss.Err())
		return names, all
	}
	for _, hints := range []*promstorage.SelectHints{nil, {Start: mint, End: maxt}, {Start: mint, End: maxt, Func: "series"}} {
		for _, ms := range selects {
			t.Run(fmt.Sprintf("%v/%v", hints, ms), func(t *testing.T) {
				q, err := env.queryable().Querier(mint, maxt)
				require.NoError(t, err)
				defer q.Close()
				_, want := read(q.Select(ctx, true, hints, ms...))
				names, got := read(q.Select(ctx, false, hints, ms...))
				slices.Sort(got)
				require.Equal(t, want, got)
				if ms[0].Value == "m" {
					require.Len(t, names, 10)
					require.False(t, slices.IsSorted(names), "the samples' series were sorted: %v", names)
				}
			})
		}
	}
	// In parts (levstorage.WithPart, as pkg/rollup reads): a select that
	// no event series matches is served, and its parts read in order are
	// the unsorted select; one that event series match is declined.
	for _, ms := range selects {
		t.Run(fmt.Sprintf("parts/%v", ms), func(t *testing.T) {
			q, err := env.queryable().Querier(mint, maxt)
			require.NoError(t, err)
			defer q.Close()
			hints := &promstorage.SelectHints{Start: mint, End: maxt}
			_, whole := read(q.Select(ctx, false, hints, ms...))
			var got []string
			served := true
			for i := 0; ; i++ {
				part := &levstorage.Part{Index: i, Size: 3}
				_, all := read(q.Select(levstorage.WithPart(ctx, part), false, hints, ms...))
				if !part.Served() {
					served = false
					break
				}
				got = append(got, all...)
				if part.Last() {
					break
				}
			}
			hasEvents := slices.ContainsFunc(whole, func(s string) bool {
				return strings.HasPrefix(s, "{__name__=\""+events.MetricChangeEvents) || strings.HasPrefix(s, "{__name__=\"change_event")
			})
			require.Equal(t, !hasEvents, served, "served")
			if served {
				require.Equal(t, whole, got)
			}
		})
	}

	// The merged series: both samples, and the event's at 2m once.
	q, err := env.queryable().Querier(mint, maxt)
	require.NoError(t, err)
	defer q.Close()
	_, got := read(q.Select(ctx, false, nil, m(labels.MatchEqual, "__name__", events.MetricChangeEvents), m(labels.MatchEqual, "service", "s1"), m(labels.MatchEqual, "event_state", "start")))
	require.Equal(t, []string{both.String() + " 90000:7 120000:1"}, got)
}
