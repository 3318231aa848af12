package limits

import (
	"context"

	"github.com/levitated/levitated/pkg/events"
)

// EventAppender is the write side of the event store
// (pkg/storage/eventstore.Store): Append commits durably before it
// returns.
type EventAppender interface {
	Append(ctx context.Context, tenant uint32, evs []events.Event) ([]events.Event, error)
}

// Events wraps inner so that each Append first takes its events from the
// events bucket of ctx's tenant; a refused batch (an *Error, 429 with
// Retry-After) stores nothing.
func Events(inner EventAppender, l *Limiter) EventAppender {
	return limitedEvents{inner: inner, l: l}
}

type limitedEvents struct {
	inner EventAppender
	l     *Limiter
}

func (e limitedEvents) Append(ctx context.Context, t uint32, evs []events.Event) ([]events.Event, error) {
	if err := e.l.AdmitEvents(ctx, len(evs)); err != nil {
		return nil, err
	}
	return e.inner.Append(ctx, t, evs)
}
