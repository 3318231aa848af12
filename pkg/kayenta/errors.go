package kayenta

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Error is a request error as Kayenta answers it (ControllerExceptionHandler:
// an IllegalArgumentException is 400, a NotFoundException 404, both with a
// {"message": …} body). levitated adds the field the error is about, which
// also starts the message.
type Error struct {
	// Status is the HTTP status: 400 or 404.
	Status int
	// Field is the path of the field in the request, e.g.
	// "canaryConfig.metrics[2].query" or "thresholds.marginal"; empty when
	// the error is about the request as a whole.
	Field string
	// Message says what is wrong.
	Message string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

func badRequest(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Field: field, Message: fmt.Sprintf(format, args...)}
}

func notFound(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusNotFound, Field: field, Message: fmt.Sprintf(format, args...)}
}

// withPrefix puts prefix in front of the field of err, if err is an *Error.
func withPrefix(prefix string, err error) error {
	var e *Error
	if !errors.As(err, &e) || prefix == "" {
		return err
	}
	f := prefix
	if e.Field != "" {
		if strings.HasPrefix(e.Field, "[") {
			f += e.Field
		} else {
			f += "." + e.Field
		}
	}
	return &Error{Status: e.Status, Field: f, Message: e.Message}
}

// errorBody is what an error answers: Kayenta's {"message"}, plus the field.
type errorBody struct {
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// writeError answers err: an *Error with its status, anything else as 500
// (which no bad input reaches).
func writeError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Message: err.Error()}
	}
	writeJSON(w, e.Status, errorBody{Message: e.Error(), Field: e.Field})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Message: "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// decodeJSON reads a JSON body into v, leniently as Kayenta's Jackson mapper
// does (unknown fields are ignored), and names the field of a type error.
func decodeJSON(body []byte, v any, what string) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return badRequest(what, "the request body is empty; send the %s as JSON", what)
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = what
		}
		return badRequest(field, "want %s, got a JSON %s", jsonTypeName(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return badRequest(what, "invalid JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	}
	return badRequest(what, "%v", err)
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "a list"
	case "bool":
		return "true or false"
	case "float64", "float32", "int", "int64", "int32", "uint32", "uint64":
		return "a number"
	}
	return kind
}
