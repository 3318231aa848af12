package limits

import (
	"fmt"
	"math"
	"net/http"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Error is a request refused by a limit.
type Error struct {
	Tenant string
	// Limit is what was exceeded ("ingestion rate"), Value its value
	// ("1000 samples/s, burst 2000"), Setting the flag or overrides-file
	// setting that changes it, Detail what the request asked for.
	Limit, Value, Setting, Detail string
	// Code is the HTTP status to answer with.
	Code int
	// RetryAfter is when a retry may succeed; zero for none.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("tenant %q: %s limit of %s exceeded", e.Tenant, e.Limit, e.Value)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	msg += "; set by " + e.Setting
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf("; retry after %ds", e.RetryAfterSeconds())
	}
	return msg
}

// HTTPStatus is the status to answer with.
func (e *Error) HTTPStatus() int { return e.Code }

// RetryAfterSeconds is the Retry-After header value: whole seconds,
// rounded up, at least 1 when there is a delay.
func (e *Error) RetryAfterSeconds() int {
	if e.RetryAfter <= 0 {
		return 0
	}
	return int(math.Ceil(e.RetryAfter.Seconds()))
}

// GRPCStatus maps the error to a gRPC status, with a RetryInfo detail when
// a retry may succeed.
func (e *Error) GRPCStatus() *status.Status {
	code := codes.ResourceExhausted
	switch e.Code {
	case http.StatusServiceUnavailable:
		code = codes.Unavailable
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		code = codes.InvalidArgument
	}
	st := status.New(code, e.Error())
	if e.RetryAfter > 0 {
		if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(e.RetryAfterSeconds()) * time.Second)}); err == nil {
			st = d
		}
	}
	return st
}
