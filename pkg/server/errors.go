package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	v1 "github.com/prometheus/prometheus/web/api/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// This file is the one place the server maps an error to what a client
// sees: the HTTP status, the headers (Retry-After, WWW-Authenticate) and
// the body, in the dialect of the route (Prometheus' web/api/v1
// returnAPIError does the same for its handlers). Handlers return errors;
// writeError answers them.

// Dialect is how a route words an error.
type Dialect int

const (
	// DialectText is the message as text/plain (http.Error).
	DialectText Dialect = iota
	// DialectPrometheus is Prometheus' API envelope:
	// {"status":"error","errorType":"bad_data","error":"..."}.
	DialectPrometheus
	// DialectJSON is {"error":"...","message":"..."}, the errors of
	// Last9's change-events API and Grafana's annotation API; the message
	// of an error with a gRPC status is the status's.
	DialectJSON
)

func (d Dialect) String() string {
	switch d {
	case DialectPrometheus:
		return "Prometheus JSON"
	case DialectJSON:
		return "JSON"
	}
	return "text"
}

// dialectOfPath is the dialect of a request no route declares: Prometheus'
// envelope under /api/, text elsewhere.
func dialectOfPath(p string) Dialect {
	if strings.HasPrefix(p, "/api/") {
		return DialectPrometheus
	}
	return DialectText
}

// statusError is an error with the HTTP status it answers with.
type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string   { return e.err.Error() }
func (e *statusError) Unwrap() error   { return e.err }
func (e *statusError) HTTPStatus() int { return e.code }

// GRPCStatus is the status a gRPC call answers with.
func (e *statusError) GRPCStatus() *status.Status {
	code := codes.Internal
	switch e.code {
	case http.StatusBadRequest:
		code = codes.InvalidArgument
	case http.StatusUnauthorized:
		code = codes.Unauthenticated
	case http.StatusForbidden:
		code = codes.PermissionDenied
	case http.StatusNotFound:
		code = codes.NotFound
	case http.StatusTooManyRequests:
		code = codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		code = codes.Unavailable
	}
	return status.New(code, e.err.Error())
}

// badData is a request the client must change: 400.
func badData(err error) error { return &statusError{http.StatusBadRequest, err} }

// unauthenticated is a missing or wrong credential: 401 (gRPC
// UNAUTHENTICATED).
func unauthenticated(err error) error { return &statusError{http.StatusUnauthorized, err} }

// forbidden is a credential without the scope needed: 403 (gRPC
// PERMISSION_DENIED).
func forbidden(err error) error { return &statusError{http.StatusForbidden, err} }

// httpStatus finds the status of err: its HTTPStatus() (a *limits.Error,
// a store's refusal), a gRPC status's (as grpc-gateway maps it); else 500.
func httpStatus(err error) int {
	var hs interface{ HTTPStatus() int }
	if errors.As(err, &hs) {
		return hs.HTTPStatus()
	}
	var gs interface{ GRPCStatus() *status.Status }
	if errors.As(err, &gs) {
		return runtime.HTTPStatusFromCode(gs.GRPCStatus().Code())
	}
	return http.StatusInternalServerError
}

// prometheusErrorType is Prometheus' errorType for a status.
func prometheusErrorType(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "bad_data"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusUnprocessableEntity:
		return "execution"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusGatewayTimeout:
		return "timeout"
	}
	return "internal"
}

// retryAfter sets the Retry-After header of an error that says when a
// retry may succeed (a *limits.Error, a store that does not take writes).
func retryAfter(w http.ResponseWriter, err error) {
	var ra interface{ RetryAfterSeconds() int }
	if errors.As(err, &ra) {
		if s := ra.RetryAfterSeconds(); s > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(s))
		}
	}
}

// writeError answers err in dialect d.
func writeError(w http.ResponseWriter, d Dialect, err error) {
	code := httpStatus(err)
	retryAfter(w, err)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="levitated", Basic realm="levitated"`)
	}
	switch d {
	case DialectPrometheus:
		b, _ := json.Marshal(&v1.Response{Status: "error", ErrorType: prometheusErrorType(code), Error: err.Error()})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(b)
	case DialectJSON:
		msg := err.Error()
		var gs interface{ GRPCStatus() *status.Status }
		if errors.As(err, &gs) {
			msg = gs.GRPCStatus().Message()
		}
		b, _ := json.Marshal(map[string]string{"error": msg, "message": msg})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(append(b, '\n'))
	default:
		http.Error(w, err.Error(), code)
	}
}

// gatewayError is the error handler of the event gateway (grpc-gateway):
// its status body and the HTTP status of the gRPC code, with the error's
// Retry-After.
func gatewayError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	retryAfter(w, err)
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// serveErrors serves f, which answers a request itself but for the
// errors it returns (a refusal of the store or of a limit): those are
// answered in dialect d, and logged when they are the server's fault.
func (s *Server) serveErrors(d Dialect, f func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			if httpStatus(err) == http.StatusInternalServerError {
				s.logger.Error("request failed", "path", r.URL.Path, "err", err)
			}
			writeError(w, d, err)
		}
	})
}

// respond writes data in Prometheus' success envelope.
func respond(w http.ResponseWriter, data any) {
	b, err := json.Marshal(&v1.Response{Status: "success", Data: data})
	if err != nil {
		writeError(w, DialectPrometheus, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// apiFunc is a handler of levitated's own Prometheus-style routes: it
// returns the data to answer, noContent, or an error.
type apiFunc func(r *http.Request) (any, error)

// noContent answers 204 with no body, as Prometheus' admin endpoints do.
type noContent struct{}

// serveAPI answers f's result in Prometheus' envelope.
func serveAPI(f apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, err := f(r)
		switch {
		case err != nil:
			writeError(w, DialectPrometheus, err)
		case data == noContent{}:
			w.WriteHeader(http.StatusNoContent)
		default:
			respond(w, data)
		}
	}
}
