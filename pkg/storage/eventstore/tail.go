package eventstore

import (
	"context"
	"fmt"
	"sync"

	"github.com/levitated/levitated/pkg/events"
)

// tailHub fans committed events out to tailing subscribers.
type tailHub struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	tenant uint32
	q      events.Query
	ch     chan events.Event
	// overflow is closed when the subscriber fell behind and was dropped.
	overflow chan struct{}
}

func (h *tailHub) publish(tenant uint32, evs []events.Event) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		if sub.tenant != tenant {
			continue
		}
		for i := range evs {
			if !sub.q.Matches(&evs[i]) {
				continue
			}
			select {
			case sub.ch <- evs[i].Clone():
			default:
				close(sub.overflow)
				delete(h.subs, sub)
			}
			if _, ok := h.subs[sub]; !ok {
				break
			}
		}
	}
}

// Tail calls fn with every event of tenant that matches q
// (Name, Matchers, OpenOnly; the time range is ignored) committed after Tail
// is called, until ctx is done (it then returns ctx.Err()) or fn returns an
// error (returned as is). Events of one Append come in order; events of
// concurrent Appends may come in either order. ready, if not nil, is called once the
// subscription is in place, so a caller can tell its client that nothing
// committed from then on will be missed. A subscriber more than
// Options.TailBuffer events behind is dropped with an error matching
// events.ErrUnavailable.
func (s *Store) Tail(ctx context.Context, tenant uint32, q events.Query, ready func() error, fn func(events.Event) error) error {
	sub := &subscriber{
		tenant:   tenant,
		q:        q,
		ch:       make(chan events.Event, s.opts.TailBuffer),
		overflow: make(chan struct{}),
	}
	s.tails.mu.Lock()
	s.tails.subs[sub] = struct{}{}
	s.tails.mu.Unlock()
	defer func() {
		s.tails.mu.Lock()
		delete(s.tails.subs, sub)
		s.tails.mu.Unlock()
	}()
	if ready != nil {
		if err := ready(); err != nil {
			return err
		}
	}
	for {
		// Deliver what is buffered before reporting an overflow.
		select {
		case e := <-sub.ch:
			if err := fn(e); err != nil {
				return err
			}
			continue
		default:
		}
		select {
		case e := <-sub.ch:
			if err := fn(e); err != nil {
				return err
			}
		case <-sub.overflow:
			return events.Unavailable(fmt.Sprintf("tail: fell more than %d events behind; reconnect and list the gap", s.opts.TailBuffer))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
