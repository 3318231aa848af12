package impact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/levitated/levitated/pkg/events"
)

// maxGateBody bounds a gate request's body.
const maxGateBody = 64 << 10

// ImpactHandler serves GET /api/v1/events/{id}/impact: the judgement of
// the change, or 404 saying why there is none.
func (s *Service) ImpactHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jd, err := s.Impact(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, jd)
	})
}

// GateHandler serves POST /api/v1/gates:evaluate: 200 with the decision
// when the change may proceed, 412 with it when not, so that
// `curl --fail` in CI stops the pipeline on a block.
func (s *Service) GateHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxGateBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeJSON(w, http.StatusRequestEntityTooLarge, errorBody(codes.InvalidArgument, fmt.Sprintf("body: larger than %d bytes", maxGateBody)))
				return
			}
			writeError(w, fmt.Errorf("read body: %w", err))
			return
		}
		var req GateRequest
		if err := decodeJSON(b, &req); err != nil {
			writeError(w, &events.FieldError{Field: "body", Rule: err.Error()})
			return
		}
		res, err := s.Gate(r.Context(), req)
		if err != nil {
			writeError(w, err)
			return
		}
		code := http.StatusOK
		if !res.Allowed && !req.AlwaysOK {
			code = http.StatusPreconditionFailed
		}
		writeJSON(w, code, res)
	})
}

func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// errorBody is the events API's error shape (grpc-gateway's).
func errorBody(c codes.Code, msg string) map[string]any {
	return map[string]any{"code": int(c), "message": msg, "details": []any{}}
}

// writeError answers an error with the status its gRPC code maps to, as
// the events API does.
func writeError(w http.ResponseWriter, err error) {
	st, ok := status.FromError(err)
	if !ok {
		var se interface{ GRPCStatus() *status.Status }
		if errors.As(err, &se) {
			st = se.GRPCStatus()
		} else {
			st = status.New(codes.Internal, err.Error())
		}
	}
	writeJSON(w, runtime.HTTPStatusFromCode(st.Code()), errorBody(st.Code(), st.Message()))
}
