// Package notrace is the OpenTelemetry tracer provider of a levitated that
// exports no spans: Prometheus' engine and API start a dozen spans per
// query, and OpenTelemetry's own no-op provider (trace/noop) puts each one
// into a new context — a dozen allocations per query for spans nobody
// records. This provider's spans are one shared non-recording span and the
// caller's context is returned as it came, so a trace context that arrived
// with a request stays in it for whatever propagates it onwards.
package notrace

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracerProvider starts no spans.
type TracerProvider struct{ embedded.TracerProvider }

// Tracer returns a tracer that starts no spans.
func (TracerProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return tracer{} }

type tracer struct{ embedded.Tracer }

// span is every span's: non-recording, with an empty span context, held
// in an interface once.
var span trace.Span = noop.Span{}

// Start returns ctx unchanged and a non-recording span; ending the span
// does nothing (it is not the span of ctx, which the caller may own).
func (tracer) Start(ctx context.Context, _ string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	return ctx, span
}
