package eventstore

import (
	"context"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/events"
)

// TestWindowListHint checks the window-list representation: one sample per
// window at its start, valued its end in seconds (+Inf while open), every
// window overlapping the range plus the latest that ended before it, and
// windows of one label set starting in the same millisecond merged.
func TestWindowListHint(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	for _, e := range []events.Event{
		ev("deploy", events.StateStart, 0, "service", "a"), // [0, 10): ended long before the range
		ev("deploy", events.StateStop, 10, "service", "a"),
		ev("deploy", events.StateStart, 100, "service", "a"), // [100, 200): ended before the range, the latest such
		ev("deploy", events.StateStop, 200, "service", "a"),
		ev("deploy", events.StateStart, 900, "service", "a"), // [900, 1100): overlaps the range
		ev("deploy", events.StateStop, 1100, "service", "a"),
		ev("deploy", events.StateStart, 1500, "service", "a"), // open
		ev("deploy", events.StateStart, 2500, "service", "a"), // after the range
		ev("deploy", events.StateStart, 50, "service", "b"),   // b: only one, ended before the range
		ev("deploy", events.StateStop, 60, "service", "b"),
	} {
		_, err := s.Append(ctx, 1, []events.Event{e})
		require.NoError(t, err)
	}
	mint, maxt := at(1000).UnixMilli(), at(2000).UnixMilli()
	q := s.Querier(1, mint, maxt)
	type win struct {
		start int64
		end   float64
	}
	read := func(hints *storage.SelectHints, ms ...*labels.Matcher) map[string][]win {
		set := q.Select(ctx, true, hints, ms...)
		out := map[string][]win{}
		for set.Next() {
			it := set.At().Iterator(nil)
			var ws []win
			for it.Next() == chunkenc.ValFloat {
				t, v := it.At()
				ws = append(ws, win{t, v})
			}
			out[set.At().Labels().String()] = ws
		}
		require.NoError(t, set.Err())
		return out
	}
	sec := func(s int) float64 { return float64(at(s).UnixMilli()) / 1000 }
	ms := func(s int) int64 { return at(s).UnixMilli() }
	name := labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, events.MetricActive)
	got := read(&storage.SelectHints{Start: mint, End: maxt, Func: WindowListHint}, name)
	require.Equal(t, map[string][]win{
		`{__name__="change_event_active", event_name="deploy", service="a"}`: {{ms(100), sec(200)}, {ms(900), sec(1100)}, {ms(1500), math.Inf(1)}},
		`{__name__="change_event_active", event_name="deploy", service="b"}`: {{ms(50), sec(60)}},
	}, got)

	// Without the hint: the grid samples, as before.
	grid := read(&storage.SelectHints{Start: mint, End: maxt}, name)
	require.Len(t, grid, 1)
	require.Greater(t, len(grid[`{__name__="change_event_active", event_name="deploy", service="a"}`]), 3)
}

func TestWindowListSamplesMergeSameStart(t *testing.T) {
	got := windowListSamples([]window{{start: 5, end: 9}, {start: 1, end: 3}, {start: 5, end: math.MaxInt64, open: true}})
	require.Equal(t, []sample{{t: 1, f: 0.003}, {t: 5, f: math.Inf(1)}}, got)
}
