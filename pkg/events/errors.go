package events

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FieldError says which field of an event breaks which rule, as
// "attributes.service: value longer than 4096 bytes". It is an
// InvalidArgument error (HTTP 400).
type FieldError struct {
	// Field is the path of the field: "name", "attributes.service",
	// "events[2].timestamp".
	Field string
	// Rule says what is wrong.
	Rule string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Rule }

// GRPCStatus makes the error an InvalidArgument status.
func (e *FieldError) GRPCStatus() *status.Status {
	return status.New(codes.InvalidArgument, e.Error())
}

// WithPrefix returns err with prefix+"." (or prefix alone for an index such
// as "events[3]") put in front of its field, if err is a FieldError.
func WithPrefix(prefix string, err error) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	f := prefix
	if fe.Field != "" {
		f += "." + fe.Field
	}
	return &FieldError{Field: f, Rule: fe.Rule}
}

// codedError is an error with a gRPC code, so that the gRPC server and the
// gateway give it the right status.
type codedError struct {
	code codes.Code
	msg  string
}

func (e *codedError) Error() string { return e.msg }

func (e *codedError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }

// Is makes errors.Is match codedErrors by code, so that an error made by
// NotFound matches ErrNotFound.
func (e *codedError) Is(target error) bool {
	t, ok := target.(*codedError)
	return ok && t.code == e.code && (t.msg == e.msg || t.generic())
}

func (e *codedError) generic() bool {
	return e == ErrNotFound || e == ErrConflict || e == ErrUnavailable
}

// Sentinel errors; errors.Is matches any error made by the function of the
// same kind (NotFound, Conflict, Unavailable).
var (
	// ErrNotFound: no event has the id asked for (NotFound, HTTP 404).
	ErrNotFound error = &codedError{codes.NotFound, "events: not found"}
	// ErrConflict: the request contradicts what is stored, such as an
	// idempotency key reused with a different body (AlreadyExists, HTTP 409).
	ErrConflict error = &codedError{codes.AlreadyExists, "events: conflict"}
	// ErrUnavailable: the store cannot serve now (Unavailable, HTTP 503).
	ErrUnavailable error = &codedError{codes.Unavailable, "events: unavailable"}
)

// NotFound returns an error matching ErrNotFound with the given message.
func NotFound(msg string) error { return &codedError{codes.NotFound, msg} }

// Conflict returns an error matching ErrConflict with the given message.
func Conflict(msg string) error { return &codedError{codes.AlreadyExists, msg} }

// Unavailable returns an error matching ErrUnavailable with the given message.
func Unavailable(msg string) error { return &codedError{codes.Unavailable, msg} }
