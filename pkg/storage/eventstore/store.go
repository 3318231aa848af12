// Package eventstore keeps change events durably in levitated's Pebble
// database, beside the samples, under the key kinds 0x40-0x4F of each
// tenant (FORMAT.md). It appends events with idempotency and window
// matching, reads them back by id or by query, streams new ones to tailing
// clients, deletes them past retention, and serves them to PromQL as series
// (Querier).
//
// Durability: Append returns only after its batch is committed with
// pebble.Sync. Appends run their reads and checks under a short mutex and
// commit outside it, so concurrent appends share Pebble's group commit
// instead of queueing behind one another's fsync.
package eventstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/storage"
)

// Options configure a Store.
type Options struct {
	// Retention is how long events are kept; older timestamps are rejected
	// on append and deleted by EnforceRetention. Default 15 days, as samples.
	Retention time.Duration
	// Limits bound the size of events (events.DefaultLimits by default).
	Limits events.Limits
	// Now is the clock; default time.Now.
	Now func() time.Time
	// TailBuffer is how many events a tailing client may fall behind
	// before its stream is ended. Default 1024.
	TailBuffer int
	// Logger may be nil.
	Logger *slog.Logger
	// OnChange, if set, is called with a tenant after its events changed
	// (an append committed or failed, a retention deletion): a results
	// cache drops what read them. It must be quick and must not call back
	// into the store.
	OnChange func(tenant uint32)
}

// DefaultOptions returns the default options.
func DefaultOptions() Options {
	return Options{
		Retention:  15 * 24 * time.Hour,
		Limits:     events.DefaultLimits(),
		Now:        time.Now,
		TailBuffer: 1024,
	}
}

func (o Options) ensureDefaults() Options {
	d := DefaultOptions()
	if o.Retention <= 0 {
		o.Retention = d.Retention
	}
	o.Limits = o.Limits.EnsureDefaults()
	if o.Now == nil {
		o.Now = d.Now
	}
	if o.TailBuffer <= 0 {
		o.TailBuffer = d.TailBuffer
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Store is the event store over its namespace of the database. It is
// safe for concurrent use. It does not close the database.
type Store struct {
	ns   *storage.Namespace
	opts Options
	seq  atomic.Uint64

	// mu guards the read-and-check phase of Append and the in-flight state
	// below; it is never held across a commit.
	mu sync.Mutex
	// inflightKeys are idempotency keys of appends between check and commit;
	// the channel is closed when that append is done.
	inflightKeys map[string]chan struct{}
	// claimed are windows (tenant+start key) that an in-flight stop closes.
	claimed map[string]struct{}

	tails tailHub
}

// getter reads one key: the namespace, or a batch.
type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

// New returns a Store over the event store's namespace
// (storage.OwnerEvents) of the database.
func New(ns *storage.Namespace, opts Options) *Store {
	s := &Store{
		ns:           ns,
		opts:         opts.ensureDefaults(),
		inflightKeys: make(map[string]chan struct{}),
		claimed:      make(map[string]struct{}),
	}
	// Sequence numbers only need to be unique among events of the same
	// nanosecond; seeding from the clock keeps them unique across restarts
	// and makes ids of one instant sort in arrival order.
	s.seq.Store(uint64(time.Now().UnixNano()))
	s.tails.subs = make(map[*subscriber]struct{})
	return s
}

func (s *Store) changed(tenant uint32) {
	if s.opts.OnChange != nil {
		s.opts.OnChange(tenant)
	}
}

// Retention returns the retention the store applies.
func (s *Store) Retention() time.Duration { return s.opts.Retention }

// Append stores evs for tenant in one atomic, synced batch and returns
// them as stored (ids, times, windows). For each event:
//   - its fields are validated (events.Validate) and its time, defaulting to
//     now, must be within retention and not too far in the future;
//   - an idempotency key already stored returns the original event and
//     stores nothing new, or fails with events.ErrConflict if the body
//     differs;
//   - a stop closes the window named by StartID or StartKey, or else the
//     latest open window of the same name whose attributes all appear in
//     the stop with the same values and whose start is not after the stop;
//     with no such window it is kept as a point event, with a warning
//     (events.UnmatchedStopWarning);
//   - a start while a window of the same name and exactly the same
//     attributes is open (among the newest 16 of that name) gets a
//     warning (events.OpenTwinWarning).
//
// Errors name the field (prefixed with events[i] when len(evs) > 1); on
// error nothing is stored.
func (s *Store) Append(ctx context.Context, tenant uint32, evs []events.Event) ([]events.Event, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	if len(evs) > s.opts.Limits.MaxBatch {
		return nil, &events.FieldError{Field: "events", Rule: fmt.Sprintf("%d events, more than %d", len(evs), s.opts.Limits.MaxBatch)}
	}
	now := s.opts.Now()
	in := make([]events.Event, len(evs))
	fps := make([][32]byte, len(evs))
	for i := range evs {
		e := evs[i].Clone()
		e.ID, e.ReceivedAt, e.Window = "", time.Time{}, nil
		fps[i] = events.Fingerprint(&e)
		err := events.Validate(&e, s.opts.Limits)
		if err == nil && !e.Time.IsZero() {
			err = events.CheckTime("timestamp", e.Time, now, s.opts.Limits.MaxFuture, s.opts.Retention)
		}
		if err != nil {
			return nil, s.prefix(len(evs), i, err)
		}
		if e.Time.IsZero() {
			e.Time = now
		}
		e.Time = e.Time.UTC()
		e.ReceivedAt = now.UTC()
		in[i] = e
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out, wait, err := s.tryAppend(ctx, tenant, in, fps)
		if wait != nil {
			// Another append holds one of our idempotency keys: wait for it
			// to finish, then look again (we will see its result).
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return out, err
	}
}

func (s *Store) prefix(n, i int, err error) error {
	if n == 1 {
		return err
	}
	return events.WithPrefix(fmt.Sprintf("events[%d]", i), err)
}

// pending is what one append holds between its checks and its commit.
type pending struct {
	keys    []string
	claimed []string
	done    chan struct{}
}

func (s *Store) tryAppend(ctx context.Context, tenant uint32, in []events.Event, fps [][32]byte) ([]events.Event, <-chan struct{}, error) {
	b := s.ns.NewIndexedBatch()
	defer func() {
		if b != nil {
			_ = b.Close()
		}
	}()
	out := make([]events.Event, len(in))
	p := pending{done: make(chan struct{})}
	var written []events.Event
	batchKeys := map[string]int{} // idempotency key → index in this batch

	s.mu.Lock()
	err := func() error {
		for i := range in {
			e := in[i].Clone()
			if e.IdempotencyKey != "" {
				ik := string(idemKey(tenant, e.IdempotencyKey))
				if j, ok := batchKeys[e.IdempotencyKey]; ok {
					if fps[j] != fps[i] {
						return s.prefix(len(in), i, events.Conflict(fmt.Sprintf(
							"idempotency_key: %q is used twice in this batch with different bodies", e.IdempotencyKey)))
					}
					out[i] = out[j]
					continue
				}
				if ch, ok := s.inflightKeys[ik]; ok {
					return waitError{ch}
				}
				orig, found, err := s.lookupIdem(b, tenant, e.IdempotencyKey, fps[i])
				if err != nil {
					return s.prefix(len(in), i, err)
				}
				if found {
					out[i] = orig
					batchKeys[e.IdempotencyKey] = i
					continue
				}
				batchKeys[e.IdempotencyKey] = i
				p.keys = append(p.keys, ik)
			}
			id := eventID{ts: uint64(e.Time.UnixNano()), seq: s.seq.Add(1)}
			e.ID = id.String()
			if e.State == events.StateStop {
				w, err := s.closeWindow(b, tenant, &e, id, &p)
				if err != nil {
					return s.prefix(len(in), i, err)
				}
				e.Window = w
				if w == nil {
					open, err := s.openStarts(b, tenant, e.Name, 3)
					if err != nil {
						return s.prefix(len(in), i, err)
					}
					e.Warnings = append(e.Warnings, events.UnmatchedStopWarning(&e, open))
				}
			} else {
				e.Window = &events.Window{StartID: e.ID, Start: e.Time}
				if err := b.Set(openKey(tenant, e.Name, id), nil, nil); err != nil {
					return err
				}
				if err := b.Set(windowKey(tenant, id), encodeRecord(windowRecord{Name: e.Name, Attributes: e.Attributes}), nil); err != nil {
					return err
				}
			}
			if err := b.Set(eventKey(tenant, id), encodeRecord(recordOf(&e)), nil); err != nil {
				return err
			}
			if e.IdempotencyKey != "" {
				if err := b.Set(idemKey(tenant, e.IdempotencyKey), encodeIdem(id, fps[i]), nil); err != nil {
					return err
				}
			}
			written = append(written, e)
			out[i] = e
		}
		return nil
	}()
	if err != nil {
		s.mu.Unlock()
		var we waitError
		if errors.As(err, &we) {
			return nil, we.ch, nil
		}
		return nil, nil, err
	}
	for _, k := range p.keys {
		s.inflightKeys[k] = p.done
	}
	for _, c := range p.claimed {
		s.claimed[c] = struct{}{}
	}
	s.mu.Unlock()

	// The idempotency keys and windows stay claimed until the commit is
	// done, even if Commit returned earlier (a disk that refuses writes):
	// a retry must not write the same event again beside a commit that is
	// still to complete.
	finish := func(err error) {
		s.mu.Lock()
		for _, k := range p.keys {
			delete(s.inflightKeys, k)
		}
		for _, c := range p.claimed {
			delete(s.claimed, c)
		}
		s.mu.Unlock()
		close(p.done)
		if len(written) > 0 {
			s.changed(tenant) // even on error: the commit may have been applied
		}
		if err == nil {
			s.tails.publish(tenant, written)
		}
	}
	if len(written) == 0 {
		finish(nil)
	} else {
		commit := b
		b = nil // Commit owns it
		if err := s.ns.CommitSync(commit, finish); err != nil {
			return nil, nil, fmt.Errorf("commit events: %w", err)
		}
	}
	// Warn about starts that leave an identical window open. This reads
	// after the commit and outside s.mu, so it costs concurrent appends
	// nothing; a warning is advice, and a race may only miss one.
	for i := range out {
		if out[i].State != events.StateStart || out[i].ID == "" || out[i].Window == nil || out[i].Window.StartID != out[i].ID || out[i].Warnings != nil {
			continue
		}
		twin, err := s.openTwin(tenant, &out[i])
		if err != nil {
			s.opts.Logger.Warn("eventstore: look for an identical open window", "err", err)
			continue
		}
		if twin != nil {
			out[i].Warnings = append(out[i].Warnings, events.OpenTwinWarning(&out[i], twin.ID, twin.Time))
		}
	}
	return out, nil, nil
}

type waitError struct{ ch chan struct{} }

func (waitError) Error() string { return "eventstore: idempotency key in flight" }

// lookupIdem returns the event stored under key, if any.
func (s *Store) lookupIdem(r getter, tenant uint32, key string, fp [32]byte) (events.Event, bool, error) {
	v, closer, err := r.Get(idemKey(tenant, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return events.Event{}, false, nil
	}
	if err != nil {
		return events.Event{}, false, fmt.Errorf("read idempotency key: %w", err)
	}
	id, storedFP, err := decodeIdem(v)
	closer.Close()
	if err != nil {
		return events.Event{}, false, err
	}
	if storedFP != fp {
		return events.Event{}, false, events.Conflict(fmt.Sprintf(
			"idempotency_key: %q was already used for event %s with a different body", key, id))
	}
	e, err := s.get(r, tenant, id)
	if errors.Is(err, events.ErrNotFound) {
		// The original is past retention; its key was not deleted yet.
		return events.Event{}, false, nil
	}
	return e, err == nil, err
}

// closeWindow finds the window the stop e closes, adds the writes that
// close it to b and returns it, or returns nil for a point event.
func (s *Store) closeWindow(b *pebble.Batch, tenant uint32, e *events.Event, id eventID, p *pending) (*events.Window, error) {
	var start eventID
	switch {
	case e.StartID != "" || e.StartKey != "":
		field := "start_id"
		if e.StartID != "" {
			sid, err := parseID("start_id", e.StartID)
			if err != nil {
				return nil, err
			}
			start = sid
		} else {
			field = "start_key"
			v, closer, err := b.Get(idemKey(tenant, e.StartKey))
			if errors.Is(err, pebble.ErrNotFound) {
				return nil, events.NotFound(fmt.Sprintf("start_key: no event has the idempotency key %q", e.StartKey))
			}
			if err != nil {
				return nil, fmt.Errorf("read idempotency key: %w", err)
			}
			start, _, err = decodeIdem(v)
			closer.Close()
			if err != nil {
				return nil, err
			}
		}
		se, err := s.get(b, tenant, start)
		if errors.Is(err, events.ErrNotFound) {
			return nil, events.NotFound(fmt.Sprintf("%s: no event %s", field, start))
		}
		if err != nil {
			return nil, err
		}
		if se.State != events.StateStart {
			return nil, &events.FieldError{Field: field, Rule: fmt.Sprintf("event %s is a stop, not a start", start)}
		}
		if se.Name != e.Name {
			return nil, &events.FieldError{Field: field, Rule: fmt.Sprintf("event %s is named %q, not %q", start, se.Name, e.Name)}
		}
		if se.Window != nil && !se.Window.Open() {
			return nil, events.Conflict(fmt.Sprintf("%s: the window of %s was already closed by %s", field, start, se.Window.StopID))
		}
		if _, ok := s.claimed[string(windowKey(tenant, start))]; ok {
			return nil, events.Conflict(fmt.Sprintf("%s: the window of %s is being closed by another stop", field, start))
		}
		if e.Time.Before(se.Time) {
			return nil, &events.FieldError{Field: "timestamp", Rule: fmt.Sprintf("stop at %s is before its start %s at %s",
				e.Time.Format(time.RFC3339Nano), start, se.Time.Format(time.RFC3339Nano))}
		}
	default:
		found, err := s.matchOpenWindow(b, tenant, e)
		if err != nil || found == nil {
			return nil, err
		}
		start = *found
	}
	// Close it: drop the open entry, record the end.
	wk := windowKey(tenant, start)
	v, closer, err := b.Get(wk)
	if err != nil {
		return nil, fmt.Errorf("read window %s: %w", start, err)
	}
	var wr windowRecord
	err = decodeRecord(v, &wr)
	closer.Close()
	if err != nil {
		return nil, err
	}
	wr.StopID = id.String()
	wr.End = e.Time.UnixNano()
	if err := b.Set(wk, encodeRecord(wr), nil); err != nil {
		return nil, err
	}
	if err := b.Delete(openKey(tenant, wr.Name, start), nil); err != nil {
		return nil, err
	}
	p.claimed = append(p.claimed, string(wk))
	e.StartID = start.String()
	return &events.Window{StartID: start.String(), Start: start.time(), StopID: id.String(), End: e.Time}, nil
}

// matchOpenWindow applies the matching rule: the latest open window of the
// same name, whose attributes are all in the stop, that starts at or before
// the stop.
func (s *Store) matchOpenWindow(b *pebble.Batch, tenant uint32, e *events.Event) (*eventID, error) {
	var found *eventID
	var later *events.Event
	err := s.eachOpen(b, tenant, e.Name, func(sid eventID, start events.Event) bool {
		if !e.ClosesWindowOf(&start) {
			return true
		}
		if start.Time.After(e.Time) {
			if later == nil {
				later = &start
			}
			return true
		}
		found = &sid
		return false
	})
	if err != nil || found != nil {
		return found, err
	}
	if later != nil {
		return nil, &events.FieldError{Field: "timestamp", Rule: fmt.Sprintf(
			"stop at %s is before the start of the open window it matches (%s at %s)",
			e.Time.Format(time.RFC3339Nano), later.ID, later.Time.Format(time.RFC3339Nano))}
	}
	return nil, nil
}

// twinScan is how many of the newest open windows of a name a start is
// compared with: a forgotten stop or a re-run CI stage leaves a recent
// twin, and the bound keeps a start's cost independent of how many
// windows of its name are open.
const twinScan = 16

// openTwin returns the start of an open window with e's name and exactly
// e's attributes, started at or before e, among the twinScan newest open
// windows of that name: a new start beside it leaves it open.
func (s *Store) openTwin(tenant uint32, e *events.Event) (*events.Event, error) {
	var twin *events.Event
	n := 0
	// openTwin runs outside s.mu: it looks at s.claimed (a window another
	// append is closing is no twin) only for a candidate, under s.mu.
	err := s.scanOpen(s.ns, tenant, e.Name, nil, func(sid eventID, start events.Event) bool {
		if start.ID == e.ID {
			return true
		}
		if !start.Time.After(e.Time) && sameAttributes(start.Attributes, e.Attributes) {
			s.mu.Lock()
			_, closing := s.claimed[string(windowKey(tenant, sid))]
			s.mu.Unlock()
			if !closing {
				twin = &start
				return false
			}
		}
		n++
		return n < twinScan
	})
	return twin, err
}

// openStarts returns up to n starts of open windows named name, newest
// first: what an unmatched stop may have been meant for.
func (s *Store) openStarts(b *pebble.Batch, tenant uint32, name string, n int) ([]events.Event, error) {
	var out []events.Event
	err := s.eachOpen(b, tenant, name, func(_ eventID, start events.Event) bool {
		out = append(out, start)
		return len(out) < n
	})
	return out, err
}

// eachOpen calls fn with the start of each open window named name, newest
// first, skipping windows another append is closing and starts deleted by
// retention, until fn returns false. The caller holds s.mu, which guards
// s.claimed.
func (s *Store) eachOpen(b *pebble.Batch, tenant uint32, name string, fn func(sid eventID, start events.Event) bool) error {
	return s.scanOpen(batchReader{b}, tenant, name, func(k string) bool {
		_, busy := s.claimed[k]
		return busy
	}, fn)
}

// rangeReader reads keys and ranges: the namespace, or a batch over it
// (batchReader).
type rangeReader interface {
	getter
	NewIter(lo, hi []byte) (*pebble.Iterator, error)
}

// batchReader reads an indexed batch, with its own writes, as a rangeReader.
type batchReader struct{ *pebble.Batch }

func (b batchReader) NewIter(lo, hi []byte) (*pebble.Iterator, error) {
	return b.Batch.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
}

func (s *Store) scanOpen(r rangeReader, tenant uint32, name string, busy func(windowKey string) bool, fn func(sid eventID, start events.Event) bool) error {
	lo := openPrefix(tenant, name)
	it, err := r.NewIter(lo, storage.PrefixEnd(lo))
	if err != nil {
		return fmt.Errorf("scan open windows: %w", err)
	}
	defer it.Close()
	for ok := it.Last(); ok; ok = it.Prev() {
		k := it.Key()
		if len(k) != len(lo)+16 {
			continue
		}
		sid := idFromBytes(k[len(lo):])
		if busy != nil && busy(string(windowKey(tenant, sid))) {
			continue
		}
		start, err := s.get(r, tenant, sid)
		if errors.Is(err, events.ErrNotFound) {
			continue // deleted by retention
		}
		if err != nil {
			return err
		}
		if !fn(sid, start) {
			return nil
		}
	}
	return it.Error()
}

func sameAttributes(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// Get returns the event with the given id, with its window.
func (s *Store) Get(ctx context.Context, tenant uint32, id string) (events.Event, error) {
	if err := ctx.Err(); err != nil {
		return events.Event{}, err
	}
	eid, err := parseID("id", id)
	if err != nil {
		return events.Event{}, err
	}
	return s.get(s.ns, tenant, eid)
}

func (s *Store) get(r getter, tenant uint32, id eventID) (events.Event, error) {
	v, closer, err := r.Get(eventKey(tenant, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return events.Event{}, events.NotFound(fmt.Sprintf("event %s not found", id))
	}
	if err != nil {
		return events.Event{}, fmt.Errorf("read event %s: %w", id, err)
	}
	var rec eventRecord
	err = decodeRecord(v, &rec)
	closer.Close()
	if err != nil {
		return events.Event{}, err
	}
	e, err := rec.event(id)
	if err != nil {
		return events.Event{}, err
	}
	if err := s.attachWindow(r, tenant, &e); err != nil {
		return events.Event{}, err
	}
	return e, nil
}

// attachWindow sets e.Window from the window record of e (a start) or of
// the start e closed (a stop).
func (s *Store) attachWindow(r getter, tenant uint32, e *events.Event) error {
	startID := e.ID
	if e.State == events.StateStop {
		if e.StartID == "" {
			return nil
		}
		startID = e.StartID
	}
	sid, err := parseID("start_id", startID)
	if err != nil {
		return err
	}
	v, closer, err := r.Get(windowKey(tenant, sid))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read window %s: %w", sid, err)
	}
	var wr windowRecord
	err = decodeRecord(v, &wr)
	closer.Close()
	if err != nil {
		return err
	}
	w := &events.Window{StartID: startID, Start: sid.time(), StopID: wr.StopID}
	if wr.StopID != "" {
		w.End = time.Unix(0, wr.End).UTC()
	}
	e.Window = w
	return nil
}

// List returns events of tenant matching q in time order, at most q.Limit
// (default events.DefaultLimit, at most events.MaxLimit), and the page token
// for the next page ("" when there is none).
func (s *Store) List(ctx context.Context, tenant uint32, q events.Query) ([]events.Event, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = events.DefaultLimit
	}
	limit = min(limit, events.MaxLimit)
	lo := timeKey(tenant, kindEvent, timeNanos(q.Start, 0))
	if q.After != "" {
		after, err := parseID("page_token", q.After)
		if err != nil {
			return nil, "", err
		}
		if k := append(eventKey(tenant, after), 0); bytes.Compare(k, lo) > 0 {
			lo = k
		}
	}
	hi := storage.PrefixEnd(prefix(tenant, kindEvent))
	if !q.End.IsZero() {
		hi = timeKey(tenant, kindEvent, timeNanos(q.End, 0)+1)
	}
	it, err := s.ns.NewIter(lo, hi)
	if err != nil {
		return nil, "", fmt.Errorf("list events: %w", err)
	}
	defer it.Close()
	var out []events.Event
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, "", err
			}
		}
		e, err := s.decodeEventAt(tenant, it.Key(), it.Value())
		if err != nil {
			return nil, "", err
		}
		if !q.Matches(&e) {
			continue
		}
		if len(out) == limit {
			return out, out[len(out)-1].ID, nil
		}
		out = append(out, e)
	}
	if err := it.Error(); err != nil {
		return nil, "", fmt.Errorf("list events: %w", err)
	}
	return out, "", nil
}

func (s *Store) decodeEventAt(tenant uint32, key, value []byte) (events.Event, error) {
	id := idFromBytes(key[5:])
	var rec eventRecord
	if err := decodeRecord(value, &rec); err != nil {
		return events.Event{}, err
	}
	e, err := rec.event(id)
	if err != nil {
		return events.Event{}, err
	}
	if err := s.attachWindow(s.ns, tenant, &e); err != nil {
		return events.Event{}, err
	}
	return e, nil
}

// timeNanos returns t as Unix nanoseconds, or def for the zero Time; times
// before 1970 are 0.
func timeNanos(t time.Time, def uint64) uint64 {
	if t.IsZero() {
		return def
	}
	if n := t.UnixNano(); n > 0 {
		return uint64(n)
	}
	return 0
}
