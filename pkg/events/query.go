package events

import (
	"fmt"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Query selects events for List and Tail.
type Query struct {
	// Start and End bound the event time, both inclusive; zero means
	// unbounded. Tail ignores them.
	Start, End time.Time
	// Name, if set, keeps only events with this name.
	Name string
	// Matchers keep only events whose labels (event_name, event_state and
	// the attributes) match all of them, as in a PromQL selector.
	Matchers []*labels.Matcher
	// OpenOnly keeps only starts whose window is still open.
	OpenOnly bool
	// Limit is the most events returned (List only); 0 means DefaultLimit.
	Limit int
	// After is a page token: the id of the last event of the previous page.
	After string
}

// Page sizes of List.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Matches reports whether e passes Name, Matchers and OpenOnly (not the time
// range, which the store applies by its keys).
func (q *Query) Matches(e *Event) bool {
	if q.Name != "" && e.Name != q.Name {
		return false
	}
	if q.OpenOnly && (e.State != StateStart || e.Window == nil || !e.Window.Open()) {
		return false
	}
	if len(q.Matchers) == 0 {
		return true
	}
	ls := MatchLabels(e)
	for _, m := range q.Matchers {
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}

// ParseMatchers parses attribute matchers written as in PromQL, one per
// string: `service="api"`, `version=~"1\\..*"`, `env!="dev"`. A string may
// also be a whole selector `{service="api",env!="dev"}`.
func ParseMatchers(field string, ss []string) ([]*labels.Matcher, error) {
	var out []*labels.Matcher
	for i, s := range ss {
		sel := s
		if len(sel) == 0 || sel[0] != '{' {
			sel = "{" + sel + "}"
		}
		ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(sel)
		if err != nil {
			return nil, &FieldError{Field: fmt.Sprintf("%s[%d]", field, i), Rule: fmt.Sprintf("%q is not a label matcher: %v", s, err)}
		}
		out = append(out, ms...)
	}
	return out, nil
}
