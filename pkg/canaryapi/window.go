package canaryapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/events"
)

// resolveWindow finds the window of p.window: the start event named by
// event_id, or the latest start of the event matching the matchers, and
// its stop (or now, while it is open).
func (s *Service) resolveWindow(ctx context.Context, tid uint32, p *plan, now time.Time) (*levitatedv1.ResolvedWindow, error) {
	w := p.window
	var start events.Event
	if id := w.GetEventId(); id != "" {
		e, err := s.events.Get(ctx, tid, id)
		if err != nil {
			var fe *events.FieldError
			if errors.As(err, &fe) {
				return nil, fieldErr("window.event_id", "%s", fe.Rule)
			}
			if errors.Is(err, events.ErrNotFound) {
				return nil, events.NotFound(fmt.Sprintf("window.event_id: no event %q", id))
			}
			return nil, fmt.Errorf("read event %s: %w", id, err)
		}
		switch {
		case e.State != events.StateStart || e.Window == nil:
			return nil, fieldErr("window.event_id", "event %s is a %s, not the start of a window", id, e.State)
		case w.GetEvent() != "" && e.Name != w.GetEvent():
			return nil, fieldErr("window.event_id", "event %s is a %q event, not %q", id, e.Name, w.GetEvent())
		}
		for _, m := range p.windowMatchers {
			if !m.Matches(events.MatchLabels(&e).Get(m.Name)) {
				return nil, fieldErr("window.match", "event %s does not match %s", id, m)
			}
		}
		start = e
	} else {
		q := events.Query{
			Name:     w.GetEvent(),
			Matchers: append([]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "event_state", events.StateStart.String())}, p.windowMatchers...),
			Limit:    events.MaxLimit,
		}
		found := false
		for {
			page, next, err := s.events.List(ctx, tid, q)
			if err != nil {
				return nil, fmt.Errorf("list %q events: %w", w.GetEvent(), err)
			}
			for _, e := range page {
				if e.Window != nil {
					start, found = e, true
				}
			}
			if next == "" {
				break
			}
			q.After = next
		}
		if !found {
			return nil, events.NotFound(fmt.Sprintf("window: no %q window%s has started", w.GetEvent(), describeMatchers(p.windowMatchers)))
		}
	}
	p.start = start.Window.Start
	p.end = now
	if !start.Window.Open() {
		p.end = start.Window.End
	}
	if !p.end.After(p.start) {
		return nil, fieldErr("window", "the window of event %s starts at %s, not before its end %s", start.ID, p.start.Format(time.RFC3339), p.end.Format(time.RFC3339))
	}
	return &levitatedv1.ResolvedWindow{
		Event:      start.Name,
		StartId:    start.ID,
		Attributes: start.Attributes,
		Open:       start.Window.Open(),
	}, nil
}

func describeMatchers(ms []*labels.Matcher) string {
	if len(ms) == 0 {
		return ""
	}
	return " matching " + selectorString(ms)
}
