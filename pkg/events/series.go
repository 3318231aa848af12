package events

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
)

// Names of the series PromQL sees for events (see docs/events.md).
const (
	// MetricChangeEvents has one sample per event at its time: 1 for a
	// start, 2 for a stop, or the event's value. Labels: event_name,
	// event_state and the attributes. Same as Last9's metric.
	MetricChangeEvents = "last9_change_events"
	// MetricActive is 1 at every instant inside a window [start, stop) and
	// absent outside. Labels: event_name and the start's attributes.
	MetricActive = "change_event_active"
	// MetricWindowStart is, inside a window, the window's start as Unix
	// seconds; absent outside. Same labels as MetricActive.
	MetricWindowStart = "change_event_window_start_seconds"
	// MetricWindowEnd is, inside a window, the window's end as Unix seconds,
	// or +Inf while the window is open; absent outside.
	MetricWindowEnd = "change_event_window_end_seconds"
)

// WindowListHint is the SelectHints.Func under which PromQL's event-window
// functions (pkg/promql) select their window argument and the event store
// (pkg/storage/eventstore) answers with one sample per window. The name
// cannot be written in PromQL.
const WindowListHint = "__event_windows"

// EventLabels returns the labels of the event's last9_change_events series.
func EventLabels(e *Event) labels.Labels {
	b := labels.NewScratchBuilder(len(e.Attributes) + 3)
	b.Add(labels.MetricName, MetricChangeEvents)
	b.Add(LabelEventName, e.Name)
	b.Add(LabelEventState, e.State.String())
	for k, v := range e.Attributes {
		b.Add(k, v)
	}
	b.Sort()
	return b.Labels()
}

// WindowLabels returns the labels of the window series named metric
// (MetricActive, MetricWindowStart, MetricWindowEnd) for a window opened by
// an event with this name and these attributes.
func WindowLabels(metric, name string, attrs map[string]string) labels.Labels {
	b := labels.NewScratchBuilder(len(attrs) + 2)
	b.Add(labels.MetricName, metric)
	b.Add(LabelEventName, name)
	for k, v := range attrs {
		b.Add(k, v)
	}
	b.Sort()
	return b.Labels()
}

// MatchLabels returns the labels an event is matched against by list
// matchers: event_name, event_state and the attributes (no __name__).
func MatchLabels(e *Event) labels.Labels {
	b := labels.NewScratchBuilder(len(e.Attributes) + 2)
	b.Add(LabelEventName, e.Name)
	b.Add(LabelEventState, e.State.String())
	for k, v := range e.Attributes {
		b.Add(k, v)
	}
	b.Sort()
	return b.Labels()
}

// Fingerprint hashes what a client sent for an event (the input fields, with
// a zero Time if it gave none), so that a resend with the same idempotency
// key can be told from a different body. Output-only fields are ignored.
func Fingerprint(e *Event) [32]byte {
	h := sha256.New()
	var buf [8]byte
	str := func(s string) {
		binary.BigEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	num := func(u uint64) {
		binary.BigEndian.PutUint64(buf[:], u)
		h.Write(buf[:])
	}
	str(e.Name)
	num(uint64(e.State))
	if e.Time.IsZero() {
		num(0)
	} else {
		num(1)
		num(uint64(e.Time.UnixNano()))
	}
	keys := make([]string, 0, len(e.Attributes))
	for k := range e.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	num(uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(e.Attributes[k])
	}
	str(e.Text)
	str(e.URL)
	str(e.Source)
	str(e.IdempotencyKey)
	if e.Value == nil {
		num(0)
	} else {
		num(1)
		num(math.Float64bits(*e.Value))
	}
	str(e.StartID)
	str(e.StartKey)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
