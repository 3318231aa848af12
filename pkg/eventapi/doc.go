// Package eventapi is levitated's change-event API: the gRPC
// levitated.v1.EventService (create, batch create, get, list, tail) and
// its REST face (POST and GET /api/v1/events, /api/v1/events:batch,
// /api/v1/events/{id}, /api/v1/events:tail through grpc-gateway), and the
// APIs of other tools that send change events, Last9's change-events API
// and Grafana's annotations API. One EventService stands behind them all,
// so every face validates, converts and stores alike. Every write it
// acknowledges has been committed durably by the store it was given (the
// interface it consumes is declared here: EventStore).
//
// It must not decide a request's tenant (that comes from pkg/tenant
// through the context), its scope or its limits (pkg/server's route
// table; the limits wrap the stores it is given, pkg/limits), nor open
// storage itself. A refusal of a store (a limit, a full disk) is returned
// (the Last9 and annotation handlers' Serve, the gateway's error handler),
// not answered: the server maps it to a status.
package eventapi
