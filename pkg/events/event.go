// Package events is the change-event model of levitated: what an event is,
// the rules it must follow, how it is read from JSON, and the labels it has
// when PromQL sees it as a series. It does no I/O; the event store
// (pkg/storage/eventstore) persists events and the event API
// (pkg/eventapi) receives them.
//
// A change event marks a deploy, a canary step, a scale-up or a config
// change. It is a start or a stop. A start opens a window; the stop that
// matches it (see [Window] and docs/events.md) closes the window. A stop that
// matches no open window is kept as a point event.
package events

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// State is the state of an event: a start opens a window, a stop closes one.
type State uint8

// The states an event can have. The zero State is invalid.
const (
	StateStart State = 1
	StateStop  State = 2
)

// String returns "start", "stop" or "" for the zero State.
func (s State) String() string {
	switch s {
	case StateStart:
		return "start"
	case StateStop:
		return "stop"
	}
	return ""
}

// ParseState parses "start" or "stop".
func ParseState(s string) (State, error) {
	switch s {
	case "start":
		return StateStart, nil
	case "stop":
		return StateStop, nil
	case "":
		return 0, &FieldError{Field: "state", Rule: `required, "start" or "stop"`}
	}
	return 0, &FieldError{Field: "state", Rule: fmt.Sprintf(`%q is not "start" or "stop"`, s)}
}

// Event is one change event. The fields marked output-only are set by the
// event store and ignored on input.
type Event struct {
	// ID identifies the event within its tenant. Output only.
	ID string
	// Name says what changed: "deploy", "canary-step", "config-change".
	Name string
	// State is StateStart or StateStop.
	State State
	// Time is when the change happened. The zero Time means "when received".
	Time time.Time
	// Attributes describe the change (service, version, weight…). Keys are
	// Prometheus label names; they become labels of the event series.
	Attributes map[string]string
	// Text is an optional free-text description.
	Text string
	// URL is an optional link (a pipeline run, a pull request).
	URL string
	// Source names the sender ("eventctl", "last9", "grafana-annotation"…).
	Source string
	// IdempotencyKey, when set, makes a resend return the original event
	// instead of storing a new one.
	IdempotencyKey string
	// Value overrides the value of the last9_change_events sample (by
	// default 1 for a start, 2 for a stop).
	Value *float64
	// StartID, on a stop, names the start whose window it closes. On
	// output it is the start of the window the stop closed, if any.
	StartID string
	// StartKey, on a stop, names the start to close by its idempotency key.
	StartKey string

	// ReceivedAt is when the store accepted the event. Output only.
	ReceivedAt time.Time
	// Window is, for a start, its window; for a stop, the window it closed
	// (nil for a point event). Output only.
	Window *Window
	// Warnings say what the store accepted but the sender probably did not
	// mean: a stop that closed no window, a start that leaves an identical
	// window open. Output only, never stored.
	Warnings []string
}

// Window is the span between a start and the stop that closed it.
type Window struct {
	StartID string
	Start   time.Time
	// StopID and End are empty while the window is open.
	StopID string
	End    time.Time
}

// Open reports whether no stop has closed the window yet.
func (w *Window) Open() bool { return w.StopID == "" }

// SampleValue is the value of the event's last9_change_events sample: Value
// if set, else 1 for a start and 2 for a stop, as Last9 documents.
func (e *Event) SampleValue() float64 {
	if e.Value != nil {
		return *e.Value
	}
	if e.State == StateStop {
		return 2
	}
	return 1
}

// Clone returns a deep copy of e.
func (e Event) Clone() Event {
	c := e
	if e.Attributes != nil {
		c.Attributes = make(map[string]string, len(e.Attributes))
		for k, v := range e.Attributes {
			c.Attributes[k] = v
		}
	}
	if e.Value != nil {
		v := *e.Value
		c.Value = &v
	}
	if e.Window != nil {
		w := *e.Window
		c.Window = &w
	}
	if e.Warnings != nil {
		c.Warnings = append([]string(nil), e.Warnings...)
	}
	return c
}

// ClosesWindowOf reports whether the stop e may close the window opened by
// start, by the matching rule: the same name, and every attribute of the
// start present in the stop with the same value (the stop may add more, such
// as exit_code). Naming the start by StartID or StartKey bypasses this rule.
// Time is not considered here; see the event store.
func (e *Event) ClosesWindowOf(start *Event) bool {
	if e.Name != start.Name {
		return false
	}
	for k, v := range start.Attributes {
		if sv, ok := e.Attributes[k]; !ok || sv != v {
			return false
		}
	}
	return true
}

// UnmatchedStopWarning is the warning for a stop that closed no window: it
// was kept as a point event, and the start it was meant for (if any) stays
// open. open are open windows' starts of the same name (newest first), to
// show what the stop may have been meant for.
func UnmatchedStopWarning(e *Event, open []Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "stop matched no open window: no open %q window started at or before %s has only attributes that this stop has with the same values %s; "+
		"the stop is kept as a point event",
		e.Name, e.Time.UTC().Format(time.RFC3339Nano), FormatAttributes(e.Attributes))
	if len(open) == 0 {
		fmt.Fprintf(&b, "; no %q window is open", e.Name)
	} else {
		fmt.Fprintf(&b, "; open %q windows:", e.Name)
		for i := range open {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, " %s %s since %s", open[i].ID, FormatAttributes(open[i].Attributes), open[i].Time.UTC().Format(time.RFC3339Nano))
		}
		b.WriteString(" (a stop must carry every attribute of the start, or name it with start_id or start_key)")
	}
	return b.String()
}

// OpenTwinWarning is the warning for a start while a window of the same
// name and the same attributes, opened by startID at startTime, is still
// open: a stop for these attributes will close only the newer one.
func OpenTwinWarning(e *Event, startID string, startTime time.Time) string {
	return fmt.Sprintf("start leaves window %s open: it has the same name %q and attributes %s and started at %s; "+
		"a stop with these attributes closes only the newest, so stop %s first (start_id) if it has ended",
		startID, e.Name, FormatAttributes(e.Attributes), startTime.UTC().Format(time.RFC3339Nano), startID)
}

// FormatAttributes writes attributes as {k="v", …} in key order.
func FormatAttributes(attrs map[string]string) string {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", k, attrs[k])
	}
	b.WriteByte('}')
	return b.String()
}
