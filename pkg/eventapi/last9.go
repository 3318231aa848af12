package eventapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/status"

	"github.com/levitated/levitated/pkg/events"
)

// last9Request is the body of Last9's change-events API
// (PUT /api/v4/organizations/{org}/change_events).
type last9Request struct {
	Timestamp      json.RawMessage `json:"timestamp"`
	EventName      string          `json:"event_name"`
	EventState     string          `json:"event_state"`
	DataSourceName string          `json:"data_source_name"`
	Attributes     json.RawMessage `json:"attributes"`
	Value          json.RawMessage `json:"value"`
}

// Last9Handler serves Last9's change-events API over the event service, so
// scripts and the last9/deployment-marker-action work by changing the base
// URL. Mount it at PUT /api/v4/organizations/{org}/change_events (POST is
// accepted too). The org is ignored: the tenant comes from the token.
//
// It is as lenient as Last9: unknown fields are ignored, event_state
// defaults to "start" and is case-insensitive, a timestamp without a zone is
// UTC, attribute keys that are not label names are sanitized (invalid
// characters become "_"), event_name and event_state attributes become
// exported_event_name and exported_event_state, and null or empty attribute
// values are dropped. Everything else follows the native rules. An
// Idempotency-Key header makes a resend return the original event.
//
// It answers {"message":"success"} with 200, or {"error":…,"message":…}
// with the status the native API would give.
type Last9Handler struct{ svc *EventService }

// NewLast9Handler returns the Last9-compatible handler.
func NewLast9Handler(svc *EventService) *Last9Handler { return &Last9Handler{svc: svc} }

// Serve stores the event and answers, but for a refusal of the store
// (a limit, a full disk), which it returns for the server to answer.
func (h *Last9Handler) Serve(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		w.Header().Set("Allow", "PUT, POST")
		writeJSONError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use PUT")
		return nil
	}
	body, err := readBody(r, h.svc.limits.MaxRequestBodySize)
	if err != nil {
		writeHTTPError(w, err)
		return nil
	}
	e, err := decodeLast9(body, h.svc.limits)
	if err != nil {
		writeHTTPError(w, err)
		return nil
	}
	e.IdempotencyKey = r.Header.Get("Idempotency-Key")
	out, err := h.svc.Append(r.Context(), []events.Event{e})
	if err != nil {
		return grpcError(err)
	}
	resp := map[string]any{"message": "success"}
	if warnings := setWarnings(w, out); len(warnings) > 0 {
		resp["warnings"] = warnings
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func decodeLast9(body []byte, l events.Limits) (events.Event, error) {
	var e events.Event
	if err := events.CheckJSONDepth(body, l.MaxJSONDepth); err != nil {
		return e, err
	}
	if f := events.InvalidUTF8(body); f != "" {
		return e, &events.FieldError{Field: f, Rule: "not valid UTF-8"}
	}
	var req last9Request
	if err := json.Unmarshal(body, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return e, &events.FieldError{Field: te.Field, Rule: "wrong type: " + te.Value}
		}
		return e, &events.FieldError{Field: "body", Rule: "not a JSON object: " + err.Error()}
	}
	e.Name = req.EventName
	if e.Name == "" {
		return e, &events.FieldError{Field: "event_name", Rule: "required"}
	}
	st := strings.ToLower(strings.TrimSpace(req.EventState))
	if st == "" {
		st = "start"
	}
	state, err := events.ParseState(st)
	if err != nil {
		return e, &events.FieldError{Field: "event_state", Rule: fmt.Sprintf(`%q is not "start" or "stop"`, req.EventState)}
	}
	e.State = state
	if len(req.Timestamp) > 0 && string(req.Timestamp) != "null" && string(req.Timestamp) != `""` {
		t, err := events.ParseJSONTime("timestamp", req.Timestamp)
		if err != nil {
			// Last9 reads ISO 8601; take a time without a zone as UTC.
			var s string
			if json.Unmarshal(req.Timestamp, &s) != nil {
				return e, err
			}
			t2, err2 := parseZoneless(s)
			if err2 != nil {
				return e, err
			}
			t = t2
		}
		e.Time = t
	}
	if len(req.Attributes) > 0 && string(req.Attributes) != "null" {
		attrs, err := events.DecodeAttributes(req.Attributes, true)
		if err != nil {
			return e, err
		}
		e.Attributes = sanitizeAttributes(attrs)
	}
	if len(req.Value) > 0 && string(req.Value) != "null" {
		s, err := events.ScalarString(req.Value)
		v, perr := strconv.ParseFloat(s, 64)
		if err != nil || perr != nil {
			return e, &events.FieldError{Field: "value", Rule: "not a number"}
		}
		e.Value = &v
	}
	e.Source = "last9"
	if req.DataSourceName != "" {
		e.Source = "last9:" + req.DataSourceName
	}
	return e, nil
}

func parseZoneless(s string) (time.Time, error) {
	var err error
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"} {
		var t time.Time
		if t, err = time.ParseInLocation(layout, strings.TrimSpace(s), time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, err
}

// sanitizeAttributes makes attributes fit the native rules the lenient
// way: keys become label names, reserved keys get the exported_ prefix,
// empty values are dropped.
func sanitizeAttributes(attrs map[string]string) map[string]string {
	out := make(map[string]string, len(attrs))
	for k, v := range attrs {
		if v == "" {
			continue
		}
		k = sanitizeLabelName(k)
		if k == events.LabelEventName || k == events.LabelEventState || strings.HasPrefix(k, "__") {
			k = "exported_" + strings.TrimLeft(k, "_")
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func sanitizeLabelName(k string) string {
	if k == "" {
		return "_"
	}
	b := []byte(k)
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	if k[0] >= '0' && k[0] <= '9' {
		return "_" + string(b)
	}
	return string(b)
}

// writeHTTPError answers a plain-JSON API (Last9, Grafana) with the HTTP
// status the gateway would give err's gRPC code.
func writeHTTPError(w http.ResponseWriter, err error) {
	var tooLarge *bodyTooLargeError
	if errors.As(err, &tooLarge) {
		writeJSONError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	st, _ := status.FromError(grpcError(err))
	writeJSONError(w, runtime.HTTPStatusFromCode(st.Code()), st.Message())
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg, "message": msg})
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

// Last9TokenHandler serves Last9's token exchange,
// POST /api/v4/oauth/access_token with {"refresh_token":…}, which the
// last9/deployment-marker-action calls before sending events. levitated has
// no refresh tokens: the "refresh token" given to the action is a levitated
// API token, and it comes back unchanged as the access token, which the
// action then sends as X-LAST9-API-TOKEN: Bearer <token>. The server's auth
// checks it there as on any request; this handler checks nothing.
type Last9TokenHandler struct {
	now func() time.Time
}

// NewLast9TokenHandler returns the token-exchange handler; now may be nil.
func NewLast9TokenHandler(now func() time.Time) *Last9TokenHandler {
	if now == nil {
		now = time.Now
	}
	return &Last9TokenHandler{now: now}
}

func (h *Last9TokenHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSONError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use POST")
		return
	}
	body, err := readBody(r, 64<<10)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeHTTPError(w, &events.FieldError{Field: "body", Rule: "not a JSON object: " + err.Error()})
		return
	}
	if req.RefreshToken == "" {
		writeHTTPError(w, &events.FieldError{Field: "refresh_token", Rule: "required (a levitated API token)"})
		return
	}
	now := h.now()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":  req.RefreshToken,
		"refresh_token": req.RefreshToken,
		"type":          "Bearer",
		"issued_at":     now.Unix(),
		"expires_at":    now.Add(24 * time.Hour).Unix(),
		"scopes":        []string{"write"},
	})
}
