package yield

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestIngestIdle(t *testing.T) {
	var in Ingest
	require.Zero(t, in.InFlight())
	select {
	case <-in.Idle():
	default:
		t.Fatal("idle with nothing in flight")
	}
	end1, end2 := in.Begin(), in.Begin()
	idle := in.Idle()
	require.Equal(t, 2, in.InFlight())
	end1()
	end1() // ending twice ends once
	require.Equal(t, 1, in.InFlight())
	select {
	case <-idle:
		t.Fatal("idle with a request in flight")
	default:
	}
	end2()
	<-idle
	require.Zero(t, in.InFlight())
}

// fakeClock advances only when the pacer sleeps or a step runs.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

func newTestPacer(in *Ingest, share float64, maxWait time.Duration) (*Pacer, *fakeClock) {
	p := NewPacer(in, share, maxWait)
	c := &fakeClock{now: time.Unix(0, 0)}
	p.now, p.sleep = c.Now, c.sleep
	return p, c
}

// TestPacerRests: after a step that took d, the pacer rests
// d×(1−share)/share, so the steps take share of the time.
func TestPacerRests(t *testing.T) {
	for _, tc := range []struct {
		share float64
		rest  time.Duration
	}{{0.5, 100 * time.Millisecond}, {0.25, 300 * time.Millisecond}, {1, 0}, {0, 0}, {2, 0}} {
		p, c := newTestPacer(nil, tc.share, 0)
		ran := false
		require.NoError(t, p.Run(context.Background(), func() { ran = true; c.advance(100 * time.Millisecond) }))
		require.True(t, ran)
		st := p.Stats()
		require.Equal(t, int64(1), st.Steps)
		require.Equal(t, 100*time.Millisecond, st.Ran)
		require.Equal(t, tc.rest, st.Rested, "share %g", tc.share)
		if tc.rest > 0 {
			require.Equal(t, []time.Duration{tc.rest}, c.slept)
		} else {
			require.Empty(t, c.slept)
		}
	}
}

// TestPacerWaitsForIngest: a step does not start while a write request
// is in flight; it starts when the last ends, or after MaxWait.
func TestPacerWaitsForIngest(t *testing.T) {
	var in Ingest
	p, _ := newTestPacer(&in, 1, time.Hour)
	end := in.Begin()
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background(), func() { close(started) }) }()
	select {
	case <-started:
		t.Fatal("a step started while a write request was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	end()
	<-started
	require.NoError(t, <-done)
	require.Zero(t, p.Stats().WaitedOut)

	// With ingest that never pauses, a step still runs after MaxWait.
	p2, _ := newTestPacer(&in, 1, time.Millisecond)
	end = in.Begin()
	defer end()
	ran := false
	require.NoError(t, p2.Run(context.Background(), func() { ran = true }))
	require.True(t, ran)
	require.Equal(t, int64(1), p2.Stats().WaitedOut)

	// A context that ends while waiting: the step does not run.
	p3, _ := newTestPacer(&in, 1, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	go cancel()
	require.ErrorIs(t, p3.Run(ctx, func() { t.Error("ran after its context ended") }), context.Canceled)
}

// TestPacerOneStepAtATime: concurrent callers' steps do not overlap.
func TestPacerOneStepAtATime(t *testing.T) {
	p, _ := newTestPacer(nil, 1, 0)
	var mu sync.Mutex
	running, most := 0, 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				require.NoError(t, p.Run(context.Background(), func() {
					mu.Lock()
					running++
					most = max(most, running)
					mu.Unlock()
					time.Sleep(100 * time.Microsecond)
					mu.Lock()
					running--
					mu.Unlock()
				}))
			}
		})
	}
	wg.Wait()
	require.Equal(t, 1, most)
	require.Equal(t, int64(160), p.Stats().Steps)
}
