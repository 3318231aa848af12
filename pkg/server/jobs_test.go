package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestJobsOrder starts the jobs in the order added and stops them in
// reverse, each stopped before the next is told to stop; a job that fails
// is reported once, by its error, and the others keep running.
func TestJobsOrder(t *testing.T) {
	g := newJobs(slog.New(slog.DiscardHandler))
	var mu sync.Mutex
	var events []string
	note := func(s string) {
		mu.Lock()
		events = append(events, s)
		mu.Unlock()
	}
	started := make(chan string, 3)
	for _, name := range []string{"storage", "retention", "ruler"} {
		g.add(name, func(ctx context.Context) error {
			started <- name
			<-ctx.Done()
			note("stopped " + name)
			return ctx.Err() // an error after the stop is not a failure
		})
	}
	boom := errors.New("boom")
	g.add("failing", func(context.Context) error { return boom })
	g.start()
	got := map[string]bool{}
	for range 3 {
		got[<-started] = true
	}
	require.Len(t, got, 3)
	require.ErrorIs(t, <-g.failure(), boom)
	g.stop()
	require.Equal(t, []string{"stopped ruler", "stopped retention", "stopped storage"}, events)
	select {
	case err := <-g.failure():
		t.Fatalf("a second failure reported: %v", err)
	default:
	}
	g.stop() // stopping twice is harmless
}
