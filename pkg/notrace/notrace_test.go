package notrace

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func TestStartKeepsTheContextAndAllocatesNothing(t *testing.T) {
	// A context holding a caller's span with a valid span context (as an
	// incoming request's would).
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3},
		SpanID:     trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), parent)
	tr := TracerProvider{}.Tracer("promql")

	got, sp := tr.Start(ctx, "query", trace.WithAttributes(attribute.String("q", "up")))
	require.Equal(t, ctx, got, "the caller's context comes back unchanged")
	require.False(t, sp.IsRecording())
	require.False(t, sp.SpanContext().IsValid(), "the span is not the caller's")
	sp.SetAttributes(attribute.Int("n", 1))
	sp.End()
	require.Equal(t, parent, trace.SpanContextFromContext(got), "the caller's trace context stays in it")

	// A request's context as the engine gets it: no span in it.
	bg := context.WithValue(context.Background(), key{}, "tenant")
	allocs := testing.AllocsPerRun(100, func() {
		c, s := tr.Start(bg, "query")
		s.End()
		sink = c // the context escapes, as the engine's do
	})
	require.Zero(t, allocs, "allocations per span")

	// OpenTelemetry's no-op provider, for what this package saves: it
	// puts every span into a new context.
	noopAllocs := testing.AllocsPerRun(100, func() {
		c, s := noop.NewTracerProvider().Tracer("promql").Start(bg, "query")
		s.End()
		sink = c
	})
	require.Positive(t, noopAllocs, "trace/noop allocates per span (if it stops, this package can go)")
}

// sink keeps the measured contexts on the heap.
var sink context.Context

type key struct{}
