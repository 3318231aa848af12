package eventstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/storage"
	"github.com/levitated/levitated/pkg/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

// quietLogger keeps Pebble's informational logs out of test output.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(string, ...any)          {}
func (quietLogger) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

// eventsNS is the event store's namespace of db.
func eventsNS(t testing.TB, db *storage.DB) *storage.Namespace {
	return storagetest.Namespace(t, db, storage.OwnerEvents)
}

func newStore(t testing.TB) (*Store, *clock, *storage.Namespace) {
	t.Helper()
	ns := eventsNS(t, storagetest.New(t))
	c := &clock{now: t0}
	return New(ns, Options{Now: c.Now}), c, ns
}

// keys lists the keys of the namespace.
func keys(t testing.TB, ns *storage.Namespace) [][]byte {
	t.Helper()
	var out [][]byte
	require.NoError(t, ns.Each(func(k, _ []byte) bool {
		out = append(out, bytes.Clone(k))
		return true
	}))
	return out
}

func at(sec int) time.Time { return t0.Add(-time.Hour + time.Duration(sec)*time.Second) }

func ev(name string, st events.State, sec int, attrs ...string) events.Event {
	e := events.Event{Name: name, State: st, Time: at(sec)}
	if len(attrs) > 0 {
		e.Attributes = map[string]string{}
		for i := 0; i+1 < len(attrs); i += 2 {
			e.Attributes[attrs[i]] = attrs[i+1]
		}
	}
	return e
}

func appendOne(t *testing.T, s *Store, tenant uint32, e events.Event) events.Event {
	t.Helper()
	out, err := s.Append(context.Background(), tenant, []events.Event{e})
	require.NoError(t, err)
	require.Len(t, out, 1)
	return out[0]
}

func listAll(t *testing.T, s *Store, tenant uint32) []events.Event {
	t.Helper()
	var all []events.Event
	token := ""
	for {
		evs, next, err := s.List(context.Background(), tenant, events.Query{Limit: events.MaxLimit, After: token})
		require.NoError(t, err)
		all = append(all, evs...)
		if next == "" {
			return all
		}
		token = next
	}
}

func TestAppendGetListWindow(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	v := 7.5
	in := ev("deploy", events.StateStart, 0, "service", "api", "version", "1.2")
	in.Text, in.URL, in.Source, in.Value = "rolling out", "https://ci.example/run/1", "ci", &v
	start := appendOne(t, s, 1, in)
	require.Len(t, start.ID, 26)
	require.Equal(t, at(0), start.Time)
	require.Equal(t, t0, start.ReceivedAt)
	require.Equal(t, &events.Window{StartID: start.ID, Start: at(0)}, start.Window)

	stop := appendOne(t, s, 1, ev("deploy", events.StateStop, 90, "service", "api", "version", "1.2", "exit_code", "0"))
	require.Equal(t, start.ID, stop.StartID)
	want := &events.Window{StartID: start.ID, Start: at(0), StopID: stop.ID, End: at(90)}
	require.Equal(t, want, stop.Window)

	got, err := s.Get(ctx, 1, start.ID)
	require.NoError(t, err)
	require.Equal(t, want, got.Window)
	require.Equal(t, "rolling out", got.Text)
	require.Equal(t, "https://ci.example/run/1", got.URL)
	require.Equal(t, "ci", got.Source)
	require.Equal(t, 7.5, *got.Value)
	require.Equal(t, map[string]string{"service": "api", "version": "1.2"}, got.Attributes)

	// Other tenants see nothing.
	_, err = s.Get(ctx, 2, start.ID)
	require.ErrorIs(t, err, events.ErrNotFound)
	require.Empty(t, listAll(t, s, 2))

	_, err = s.Get(ctx, 1, "not-an-id")
	var fe *events.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "id", fe.Field)

	all := listAll(t, s, 1)
	require.Len(t, all, 2)
	require.Equal(t, start.ID, all[0].ID)
	require.Equal(t, stop.ID, all[1].ID)
}

func TestListQueryAndPaging(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		svc := []string{"api", "web"}[i%2]
		appendOne(t, s, 1, ev("deploy", events.StateStart, i*10, "service", svc))
	}
	appendOne(t, s, 1, ev("scale", events.StateStart, 200, "service", "api"))
	appendOne(t, s, 1, ev("deploy", events.StateStop, 300, "service", "api")) // closes the start at 80

	ms, err := events.ParseMatchers("match", []string{`service=~"a.*"`})
	require.NoError(t, err)
	got, next, err := s.List(ctx, 1, events.Query{Name: "deploy", Matchers: ms, Start: at(20), End: at(80)})
	require.NoError(t, err)
	require.Empty(t, next)
	var secs []int
	for _, e := range got {
		secs = append(secs, int(e.Time.Sub(at(0))/time.Second))
	}
	require.Equal(t, []int{20, 40, 60, 80}, secs)

	open, _, err := s.List(ctx, 1, events.Query{Name: "deploy", Matchers: ms, OpenOnly: true})
	require.NoError(t, err)
	secs = nil
	for _, e := range open {
		secs = append(secs, int(e.Time.Sub(at(0))/time.Second))
	}
	require.Equal(t, []int{0, 20, 40, 60}, secs, "the start at 80 is closed")

	// Pages of 3 cover all 12 events exactly once, in order.
	var ids []string
	token := ""
	for page := 0; ; page++ {
		require.Less(t, page, 10)
		evs, next, err := s.List(ctx, 1, events.Query{Limit: 3, After: token})
		require.NoError(t, err)
		for _, e := range evs {
			ids = append(ids, e.ID)
		}
		if next == "" {
			break
		}
		token = next
	}
	require.Len(t, ids, 12)
	all := listAll(t, s, 1)
	for i := range all {
		require.Equal(t, all[i].ID, ids[i])
	}
}

func TestWindowMatchingRule(t *testing.T) {
	ctx := context.Background()
	t.Run("latest open window whose attributes are in the stop", func(t *testing.T) {
		s, _, _ := newStore(t)
		a := appendOne(t, s, 1, ev("deploy", events.StateStart, 0, "service", "api"))
		b := appendOne(t, s, 1, ev("deploy", events.StateStart, 10, "service", "api"))
		web := appendOne(t, s, 1, ev("deploy", events.StateStart, 20, "service", "web"))
		stop := appendOne(t, s, 1, ev("deploy", events.StateStop, 30, "service", "api", "exit_code", "0"))
		require.Equal(t, b.ID, stop.StartID)
		stop2 := appendOne(t, s, 1, ev("deploy", events.StateStop, 40, "service", "api"))
		require.Equal(t, a.ID, stop2.StartID)
		// A stop with fewer attributes does not close a window with more.
		point := appendOne(t, s, 1, ev("deploy", events.StateStop, 50))
		require.Empty(t, point.StartID)
		require.Nil(t, point.Window)
		got, err := s.Get(ctx, 1, web.ID)
		require.NoError(t, err)
		require.True(t, got.Window.Open())
	})
	t.Run("late stop closes the window that started before it", func(t *testing.T) {
		s, _, _ := newStore(t)
		a := appendOne(t, s, 1, ev("deploy", events.StateStart, 0, "service", "api"))
		appendOne(t, s, 1, ev("deploy", events.StateStart, 100, "service", "api"))
		stop := appendOne(t, s, 1, ev("deploy", events.StateStop, 50, "service", "api"))
		require.Equal(t, a.ID, stop.StartID)
	})
	t.Run("stop before the start of the only matching window", func(t *testing.T) {
		s, _, _ := newStore(t)
		a := appendOne(t, s, 1, ev("deploy", events.StateStart, 100, "service", "api"))
		_, err := s.Append(ctx, 1, []events.Event{ev("deploy", events.StateStop, 50, "service", "api")})
		require.EqualError(t, err, fmt.Sprintf("timestamp: stop at %s is before the start of the open window it matches (%s at %s)",
			at(50).Format(time.RFC3339Nano), a.ID, at(100).Format(time.RFC3339Nano)))
		require.Len(t, listAll(t, s, 1), 1)
	})
	t.Run("stop with no open window is a point event", func(t *testing.T) {
		s, _, _ := newStore(t)
		p := appendOne(t, s, 1, ev("deploy", events.StateStop, 10, "service", "api"))
		require.Empty(t, p.StartID)
		require.Nil(t, p.Window)
	})
	t.Run("by start_id and start_key", func(t *testing.T) {
		s, _, _ := newStore(t)
		a := appendOne(t, s, 1, ev("deploy", events.StateStart, 0, "service", "api"))
		keyed := ev("deploy", events.StateStart, 5, "service", "other")
		keyed.IdempotencyKey = "run-42"
		k := appendOne(t, s, 1, keyed)
		appendOne(t, s, 1, ev("deploy", events.StateStart, 10, "service", "api"))

		byID := ev("deploy", events.StateStop, 20)
		byID.StartID = a.ID
		st := appendOne(t, s, 1, byID)
		require.Equal(t, a.ID, st.StartID)

		byKey := ev("deploy", events.StateStop, 20)
		byKey.StartKey = "run-42"
		st = appendOne(t, s, 1, byKey)
		require.Equal(t, k.ID, st.StartID)

		again := ev("deploy", events.StateStop, 30)
		again.StartID = a.ID
		_, err := s.Append(ctx, 1, []events.Event{again})
		require.ErrorIs(t, err, events.ErrConflict)
		require.Contains(t, err.Error(), "start_id: the window of "+a.ID+" was already closed by ")

		early := ev("deploy", events.StateStop, 1)
		early.StartKey = "nope"
		_, err = s.Append(ctx, 1, []events.Event{early})
		require.ErrorIs(t, err, events.ErrNotFound)
		require.EqualError(t, err, `start_key: no event has the idempotency key "nope"`)

		b := appendOne(t, s, 1, ev("deploy", events.StateStart, 100, "service", "x"))
		before := ev("deploy", events.StateStop, 50)
		before.StartID = b.ID
		_, err = s.Append(ctx, 1, []events.Event{before})
		require.ErrorContains(t, err, "timestamp: stop at ")
		require.ErrorContains(t, err, "is before its start "+b.ID)
	})
	t.Run("start and stop in one batch", func(t *testing.T) {
		s, _, _ := newStore(t)
		out, err := s.Append(ctx, 1, []events.Event{
			ev("canary-step", events.StateStart, 0, "weight", "20"),
			ev("canary-step", events.StateStop, 60, "weight", "20"),
		})
		require.NoError(t, err)
		require.Equal(t, out[0].ID, out[1].StartID)
	})
}

func TestIdempotency(t *testing.T) {
	s, c, _ := newStore(t)
	ctx := context.Background()
	e := ev("deploy", events.StateStart, 0, "service", "api")
	e.Time = time.Time{} // "when received": a retry must still match
	e.IdempotencyKey = "k1"
	first := appendOne(t, s, 1, e)
	c.Set(t0.Add(time.Second))
	again := appendOne(t, s, 1, e)
	require.Equal(t, first, again)
	require.Len(t, listAll(t, s, 1), 1)

	diff := e.Clone()
	diff.Attributes["service"] = "web"
	_, err := s.Append(ctx, 1, []events.Event{diff})
	require.ErrorIs(t, err, events.ErrConflict)
	require.EqualError(t, err, fmt.Sprintf(`idempotency_key: "k1" was already used for event %s with a different body`, first.ID))
	require.Len(t, listAll(t, s, 1), 1)

	// The same key in another tenant is another event.
	other := appendOne(t, s, 2, e)
	require.Len(t, listAll(t, s, 2), 1)
	require.Equal(t, other.ID, listAll(t, s, 2)[0].ID)

	// Concurrent resends: one event stored, all get it.
	e2 := ev("deploy", events.StateStart, 0)
	e2.IdempotencyKey = "k2"
	var wg sync.WaitGroup
	ids := make([]string, 32)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := s.Append(ctx, 1, []events.Event{e2})
			if err == nil {
				ids[i] = out[0].ID
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		require.Equal(t, ids[0], id)
	}
	require.Len(t, listAll(t, s, 1), 2)
}

func TestValidationStoresNothing(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	appendOne(t, s, 1, ev("deploy", events.StateStart, 0, "service", "api"))
	future := ev("deploy", events.StateStart, 0)
	future.Time = t0.Add(11 * time.Minute)
	old := ev("deploy", events.StateStart, 0)
	old.Time = t0.Add(-16 * 24 * time.Hour)
	cases := []struct {
		name string
		evs  []events.Event
		want string
	}{
		{"missing name", []events.Event{{State: events.StateStart}}, "name: required"},
		{"bad key", []events.Event{ev("deploy", events.StateStart, 0, "1bad", "x")}, "attributes.1bad: key is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"},
		{"reserved key", []events.Event{ev("deploy", events.StateStart, 0, "event_name", "x")}, "attributes.event_name: reserved: the event series use this label"},
		{"future", []events.Event{future}, "timestamp: 2026-03-01T12:11:00Z is more than 10m0s in the future (limit 10m0s)"},
		{"past retention", []events.Event{old}, "timestamp: 2026-02-13T12:00:00Z is older than the retention of 360h0m0s"},
		{"second of batch", []events.Event{ev("deploy", events.StateStart, 0), {Name: "x"}}, `events[1].state: required, "start" or "stop"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Append(ctx, 1, tc.evs)
			require.EqualError(t, err, tc.want)
			var fe *events.FieldError
			require.ErrorAs(t, err, &fe)
			require.Len(t, listAll(t, s, 1), 1)
		})
	}
}

// TestConcurrentAppends checks that many concurrent appends all land; they
// commit outside the store's mutex, so Pebble syncs them as a group.
func TestConcurrentAppends(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				e := ev("deploy", events.StateStart, i, "worker", fmt.Sprint(w))
				if _, err := s.Append(ctx, 1, []events.Event{e}); err != nil {
					errs <- err
				}
				e.State = events.StateStop
				e.Time = e.Time.Add(time.Second)
				if _, err := s.Append(ctx, 1, []events.Event{e}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	all := listAll(t, s, 1)
	require.Len(t, all, 1280)
	for _, e := range all {
		require.NotNil(t, e.Window, "every event is in a window: %+v", e)
		require.False(t, e.Window.Open())
	}
}

func TestTail(t *testing.T) {
	s, _, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ms, err := events.ParseMatchers("match", []string{`service="api"`})
	require.NoError(t, err)
	got := make(chan events.Event, 10)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Tail(ctx, 1, events.Query{Name: "deploy", Matchers: ms}, func() error { close(ready); return nil },
			func(e events.Event) error { got <- e; return nil })
	}()
	<-ready
	appendOne(t, s, 2, ev("deploy", events.StateStart, 0, "service", "api")) // other tenant
	appendOne(t, s, 1, ev("deploy", events.StateStart, 0, "service", "web"))
	appendOne(t, s, 1, ev("scale", events.StateStart, 0, "service", "api"))
	want := appendOne(t, s, 1, ev("deploy", events.StateStart, 1, "service", "api"))
	stop := appendOne(t, s, 1, ev("deploy", events.StateStop, 2, "service", "api"))
	require.Equal(t, want, <-got)
	require.Equal(t, stop, <-got)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.Empty(t, got)
}

func TestTailOverflow(t *testing.T) {
	c := &clock{now: t0}
	s := New(eventsNS(t, storagetest.New(t)), Options{Now: c.Now, TailBuffer: 2})
	ctx := context.Background()
	ready := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	n := 0
	go func() {
		done <- s.Tail(ctx, 1, events.Query{}, func() error { close(ready); return nil }, func(events.Event) error {
			<-release
			n++
			return nil
		})
	}()
	<-ready
	for i := 0; i < 5; i++ {
		appendOne(t, s, 1, ev("deploy", events.StateStop, i))
	}
	close(release)
	err := <-done
	require.ErrorIs(t, err, events.ErrUnavailable)
	require.EqualError(t, err, "tail: fell more than 2 events behind; reconnect and list the gap")
	require.GreaterOrEqual(t, n, 2)
}

func TestRetention(t *testing.T) {
	s, c, db := newStore(t)
	ctx := context.Background()
	old := ev("deploy", events.StateStart, 0, "service", "api")
	old.IdempotencyKey = "old"
	oldEv := appendOne(t, s, 1, old)
	appendOne(t, s, 3, ev("deploy", events.StateStart, 0, "service", "api"))
	c.Set(t0.Add(10 * 24 * time.Hour))
	fresh := ev("deploy", events.StateStart, 0)
	fresh.Time = c.Now().Add(-time.Minute)
	fresh.IdempotencyKey = "new"
	freshEv := appendOne(t, s, 1, fresh)

	now := t0.Add(16 * 24 * time.Hour)
	c.Set(now)
	require.NoError(t, s.EnforceRetention(ctx, now))
	require.Equal(t, []events.Event{freshEv}, listAll(t, s, 1))
	require.Empty(t, listAll(t, s, 3))
	_, err := s.Get(ctx, 1, oldEv.ID)
	require.ErrorIs(t, err, events.ErrNotFound)

	// Nothing of the old event is left: no open entry, no key.
	var kinds []string
	for _, k := range keys(t, db) {
		kinds = append(kinds, fmt.Sprintf("%d/%#x", k[3], k[4]))
	}
	require.Equal(t, []string{"1/0x40", "1/0x41", "1/0x42", "1/0x43"}, kinds)
	// The deleted key can be used again.
	old.Time = now
	appendOne(t, s, 1, old)
}

func TestNothingLeaksIntoOtherKinds(t *testing.T) {
	db := storagetest.New(t)
	c := &clock{now: t0}
	s := New(eventsNS(t, db), Options{Now: c.Now})
	// A key of another owner (the analysis store, kind 0x50) for the same
	// tenant is untouched by the event store and invisible to it.
	other := storagetest.Namespace(t, db, storage.OwnerAnalysis)
	foreign := append(other.Prefix(1, storage.KindCanaryConfig), 'x')
	require.NoError(t, other.Set(foreign, []byte("config"), true))
	appendOne(t, s, 1, ev("deploy", events.StateStart, 0))
	require.NoError(t, s.EnforceRetention(context.Background(), t0.Add(100*24*time.Hour)))
	v, closer, err := other.Get(foreign)
	require.NoError(t, err)
	require.Equal(t, "config", string(v))
	closer.Close()
	require.Empty(t, listAll(t, s, 1))
}

func TestMatchersOnList(t *testing.T) {
	s, _, _ := newStore(t)
	appendOne(t, s, 1, ev("deploy", events.StateStart, 0, "service", "api", "env", "prod"))
	appendOne(t, s, 1, ev("deploy", events.StateStart, 0, "service", "api", "env", "dev"))
	appendOne(t, s, 1, ev("deploy", events.StateStart, 0, "service", "web"))
	count := func(sel ...string) int {
		ms, err := events.ParseMatchers("match", sel)
		require.NoError(t, err)
		evs, _, err := s.List(context.Background(), 1, events.Query{Matchers: ms})
		require.NoError(t, err)
		return len(evs)
	}
	require.Equal(t, 2, count(`service="api"`))
	require.Equal(t, 2, count(`env!="prod"`))
	require.Equal(t, 1, count(`env!~"d.*"`, `service="api"`))
	require.Equal(t, 1, count(`{env="", service="web"}`))
	require.Equal(t, 3, count(`event_name="deploy"`, `event_state="start"`))
	_, err := events.ParseMatchers("match", []string{`service=`})
	require.ErrorContains(t, err, "match[0]: ")
	_ = labels.MetricName
}

func TestAppendHonoursContext(t *testing.T) {
	s, _, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Append(ctx, 1, []events.Event{ev("deploy", events.StateStart, 0)})
	require.True(t, errors.Is(err, context.Canceled))
	require.Empty(t, listAll(t, s, 1))
}
