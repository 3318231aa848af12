// Package ingest turns what senders send into commits on the stores:
// Prometheus remote write 1.0 and 2.0 (through Prometheus' own handler,
// with metadata and exemplars), OTLP metrics, and change events over gRPC,
// REST (grpc-gateway), Last9's change-event API and Grafana's annotation
// API. Every write it acknowledges has been committed durably by the store
// it was given (the interfaces it consumes are declared here:
// RemoteWriteStore, EventStore).
//
// It also serves the event services' reads (get, list, tail) and the
// read side of the Last9 and annotation APIs, which share their
// conversions with the writes. It must not decide a request's tenant
// (that comes from pkg/tenant through the context), its scope or its
// limits (pkg/server's route table; the limits wrap the stores it is
// given, pkg/limits), nor open storage itself. A refusal of a store (a
// limit, a full disk) is returned by the handler's Serve, not answered:
// the server maps it to a status.
package ingest
