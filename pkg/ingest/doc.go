// Package ingest turns what metric senders send into appends on the
// sample store: Prometheus remote write 1.0 and 2.0 (through Prometheus'
// own handler, with metadata and exemplars) and OTLP metrics. Every write
// it acknowledges has been committed durably by the store it was given
// (the interface it consumes is declared here: RemoteWriteStore).
//
// It serves writes only: change events, their reads and the APIs
// compatible with other tools are pkg/eventapi's. It must not decide a
// request's tenant (that comes from pkg/tenant through the context), its
// scope or its limits (pkg/server's route table; the limits wrap the
// stores it is given, pkg/limits), nor open storage itself. A refusal of
// a store (a limit, a full disk) is returned by the handler's Serve, not
// answered: the server maps it to a status.
package ingest
