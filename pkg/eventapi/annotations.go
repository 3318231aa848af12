package eventapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"time"

	"github.com/levitated/levitated/pkg/events"
)

// annotationRequest is Grafana's POST /api/annotations body
// (grafana/grafana pkg/api/dtos/annotations.go, PostAnnotationsCmd).
type annotationRequest struct {
	DashboardUID string          `json:"dashboardUID"`
	DashboardID  int64           `json:"dashboardId"`
	PanelID      int64           `json:"panelId"`
	Time         int64           `json:"time"`
	TimeEnd      int64           `json:"timeEnd"`
	Tags         []string        `json:"tags"`
	Text         string          `json:"text"`
	Data         json.RawMessage `json:"data"`
}

// AnnotationsHandler serves Grafana's POST /api/annotations over the event
// service, so tools that already send Grafana annotations (Argo CD
// notifications, Flux's notification-controller, Jenkins) can send change
// events. Mount it at POST /api/annotations.
//
// Mapping (docs/events.md): the first tag that is a valid event name and
// has no ':' or '=' is the event name (default "annotation"); tags
// "key:value" or "key=value" become attributes (keys sanitized as on the
// Last9 path); other tags are joined with "," into the attribute "tags";
// text is the text; time and timeEnd are Unix milliseconds (time defaults
// to now). With timeEnd after time the annotation is a closed window: a
// start at time and a stop at timeEnd, stored atomically. Without it, it is
// a stop, which closes a matching open window or is kept as a point event.
// Unknown fields are ignored, as Grafana does.
//
// It answers {"message":"Annotation added","id":N,"event_id":"…"} where id
// is a number derived from the event id (Grafana clients expect a number)
// and event_id is the levitated event id (of the start for a window).
type AnnotationsHandler struct{ svc *EventService }

// NewAnnotationsHandler returns the Grafana-annotation-compatible handler.
func NewAnnotationsHandler(svc *EventService) *AnnotationsHandler {
	return &AnnotationsHandler{svc: svc}
}

// Serve stores the event and answers, but for a refusal of the store
// (a limit, a full disk), which it returns for the server to answer.
func (h *AnnotationsHandler) Serve(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSONError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use POST")
		return nil
	}
	body, err := readBody(r, h.svc.limits.MaxRequestBodySize)
	if err != nil {
		writeHTTPError(w, err)
		return nil
	}
	evs, err := decodeAnnotation(body, h.svc.limits, r.Header.Get("Idempotency-Key"))
	if err != nil {
		writeHTTPError(w, err)
		return nil
	}
	out, err := h.svc.Append(r.Context(), evs)
	if err != nil {
		return grpcError(err)
	}
	hash := fnv.New64a()
	hash.Write([]byte(out[0].ID))
	resp := map[string]any{
		"message":  "Annotation added",
		"id":       int64(hash.Sum64() >> 1),
		"event_id": out[0].ID,
	}
	if warnings := setWarnings(w, out); len(warnings) > 0 {
		resp["warnings"] = warnings
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func decodeAnnotation(body []byte, l events.Limits, idemKey string) ([]events.Event, error) {
	if err := events.CheckJSONDepth(body, l.MaxJSONDepth); err != nil {
		return nil, err
	}
	if f := events.InvalidUTF8(body); f != "" {
		return nil, &events.FieldError{Field: f, Rule: "not valid UTF-8"}
	}
	var req annotationRequest
	if err := json.Unmarshal(body, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, &events.FieldError{Field: te.Field, Rule: "wrong type: " + te.Value}
		}
		return nil, &events.FieldError{Field: "body", Rule: "not a JSON object: " + err.Error()}
	}
	if req.Time < 0 {
		return nil, &events.FieldError{Field: "time", Rule: "negative"}
	}
	if req.TimeEnd < 0 {
		return nil, &events.FieldError{Field: "timeEnd", Rule: "negative"}
	}
	e := events.Event{Name: "annotation", Text: req.Text, Source: "grafana-annotation"}
	attrs := map[string]string{}
	var plain []string
	named := false
	for i, tag := range req.Tags {
		tag = strings.TrimSpace(tag)
		if tag == "" {
			continue
		}
		if k, v, ok := cutTag(tag); ok {
			if v != "" {
				attrs[k] = v
			}
			continue
		}
		if strings.ContainsAny(tag, ":=") {
			// ":x", "::", "=": an attribute without a key, never a name.
			return nil, &events.FieldError{Field: fmt.Sprintf("tags[%d]", i), Rule: fmt.Sprintf("%q has no key before its ':' or '=' (tags are an event name, key:value or key=value)", tag)}
		}
		if !named && events.Validate(&events.Event{Name: tag, State: events.StateStart}, l) == nil {
			e.Name, named = tag, true
			continue
		}
		plain = append(plain, tag)
	}
	if len(plain) > 0 {
		attrs["tags"] = strings.Join(plain, ",")
	}
	e.Attributes = sanitizeAttributes(attrs)
	if req.Time > 0 {
		e.Time = time.UnixMilli(req.Time).UTC()
	}
	if req.TimeEnd == 0 || req.TimeEnd <= req.Time {
		if req.TimeEnd != 0 && req.TimeEnd < req.Time {
			return nil, &events.FieldError{Field: "timeEnd", Rule: "before time"}
		}
		e.State = events.StateStop
		e.IdempotencyKey = idemKey
		return []events.Event{e}, nil
	}
	if req.Time == 0 {
		return nil, &events.FieldError{Field: "time", Rule: "required with timeEnd"}
	}
	start := e
	start.State = events.StateStart
	start.IdempotencyKey = idemKey + "/start"
	if idemKey == "" {
		start.IdempotencyKey = "grafana-annotation/" + randomHex()
	}
	stop := e.Clone()
	stop.State = events.StateStop
	stop.Time = time.UnixMilli(req.TimeEnd).UTC()
	stop.StartKey = start.IdempotencyKey
	if idemKey != "" {
		stop.IdempotencyKey = idemKey + "/stop"
	}
	return []events.Event{start, stop}, nil
}

func cutTag(tag string) (k, v string, ok bool) {
	i := strings.IndexAny(tag, ":=")
	if i <= 0 {
		return "", "", false
	}
	return strings.TrimSpace(tag[:i]), strings.TrimSpace(tag[i+1:]), true
}

func randomHex() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
