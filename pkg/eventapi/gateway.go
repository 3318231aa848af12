package eventapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/events"
)

// RegisterEventGateway mounts the REST face of the event service on mux,
// calling svc in-process:
//
//	POST /api/v1/events        one event, or {"events":[…]} (atomic batch)
//	POST /api/v1/events:batch  {"events":[…]}
//	GET  /api/v1/events        list (start, end, name, match, open_only, limit, page_token)
//	GET  /api/v1/events/{id}   one event
//	GET  /api/v1/events:tail   newline-delimited JSON stream of new events
//
// The POST bodies are read by events.DecodeJSON, which is strict (unknown
// fields are errors) and also takes Unix-second or millisecond timestamps
// and number or boolean attribute values. Errors have the gateway's shape
// and status (gRPC code mapped to HTTP; 413 for a body over the limit).
func RegisterEventGateway(ctx context.Context, mux *runtime.ServeMux, svc *EventService) error {
	if err := levitatedv1.RegisterEventServiceHandlerServer(ctx, mux, svc); err != nil {
		return fmt.Errorf("register event gateway: %w", err)
	}
	// Registered after the generated handlers, so they take precedence
	// (the gateway's mux tries the latest registration first).
	routes := []struct {
		method, path string
		h            runtime.HandlerFunc
	}{
		{http.MethodPost, "/api/v1/events", svc.handleCreate(mux, false)},
		{http.MethodPost, "/api/v1/events:batch", svc.handleCreate(mux, true)},
		{http.MethodGet, "/api/v1/events:tail", svc.handleTail(mux)},
	}
	for _, r := range routes {
		if err := mux.HandlePath(r.method, r.path, r.h); err != nil {
			return fmt.Errorf("register %s %s: %w", r.method, r.path, err)
		}
	}
	return nil
}

// readBody reads at most limit bytes of r's body; a larger body is an error
// that writeGatewayError answers with 413.
func readBody(r *http.Request, limit int) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if len(body) > limit {
		return nil, &bodyTooLargeError{limit: limit}
	}
	return body, nil
}

type bodyTooLargeError struct{ limit int }

func (e *bodyTooLargeError) Error() string {
	return fmt.Sprintf("body: larger than %d bytes", e.limit)
}

func (s *EventService) handleCreate(mux *runtime.ServeMux, batchOnly bool) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		ctx := r.Context()
		_, outbound := runtime.MarshalerForRequest(mux, r)
		body, err := readBody(r, s.limits.MaxRequestBodySize)
		if err != nil {
			writeGatewayError(ctx, mux, outbound, w, r, err)
			return
		}
		evs, batch, err := events.DecodeJSON(body, s.limits)
		if err == nil && batchOnly && !batch {
			err = &events.FieldError{Field: "events", Rule: "required: this route takes {\"events\":[…]}"}
		}
		if err != nil {
			writeGatewayError(ctx, mux, outbound, w, r, err)
			return
		}
		if key := r.Header.Get("Idempotency-Key"); key != "" && !batch && evs[0].IdempotencyKey == "" {
			evs[0].IdempotencyKey = key
		}
		var out []events.Event
		if batch {
			out, err = s.appendBatch(ctx, evs)
		} else {
			out, err = s.Append(ctx, evs)
		}
		if err != nil {
			writeGatewayError(ctx, mux, outbound, w, r, err)
			return
		}
		setWarnings(w, out)
		var resp proto.Message
		if batch {
			br := &levitatedv1.BatchCreateEventsResponse{}
			for i := range out {
				br.Events = append(br.Events, eventToProto(&out[i]))
			}
			resp = br
		} else {
			resp = &levitatedv1.CreateEventResponse{Event: eventToProto(&out[0])}
		}
		writeGatewayMessage(w, outbound, resp)
	}
}

func writeGatewayMessage(w http.ResponseWriter, m runtime.Marshaler, msg proto.Message) {
	b, err := m.Marshal(msg)
	if err != nil {
		http.Error(w, "marshal response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", m.ContentType(msg))
	_, _ = w.Write(b)
}

// writeGatewayError answers with the gateway's error handler, so the body
// and status match the generated routes; a body over the limit gets 413,
// which no gRPC code maps to.
func writeGatewayError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *bodyTooLargeError
	if errors.As(err, &tooLarge) {
		st := status.New(codes.InvalidArgument, err.Error())
		b, merr := m.Marshal(st.Proto())
		if merr != nil {
			b = []byte(err.Error())
		}
		w.Header().Set("Content-Type", m.ContentType(st.Proto()))
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = w.Write(b)
		return
	}
	runtime.HTTPError(ctx, mux, m, w, r, grpcError(err))
}

// handleTail streams events as the gateway streams server-streaming RPCs:
// one JSON object per line, {"result":{…TailEventsResponse…}}, or
// {"error":{…status…}} when the stream fails.
func (s *EventService) handleTail(mux *runtime.ServeMux) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		ctx := r.Context()
		_, outbound := runtime.MarshalerForRequest(mux, r)
		q := r.URL.Query()
		req := &levitatedv1.TailEventsRequest{Name: q.Get("name"), Match: q["match"], OpenOnly: q.Get("open_only") == "true"}
		flusher, _ := w.(http.Flusher)
		started := false
		ready := func() error {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
			if flusher != nil {
				flusher.Flush()
			}
			return nil
		}
		send := func(e *levitatedv1.Event) error {
			b, err := outbound.Marshal(map[string]proto.Message{"result": &levitatedv1.TailEventsResponse{Event: e}})
			if err != nil {
				return err
			}
			if _, err := w.Write(append(b, '\n')); err != nil {
				return err
			}
			if flusher != nil {
				flusher.Flush()
			}
			return nil
		}
		err := s.tail(ctx, req, ready, send)
		if err == nil || ctx.Err() != nil {
			return
		}
		if !started {
			writeGatewayError(ctx, mux, outbound, w, r, err)
			return
		}
		st, _ := status.FromError(grpcError(err))
		if b, merr := outbound.Marshal(map[string]proto.Message{"error": st.Proto()}); merr == nil {
			_, _ = w.Write(append(b, '\n'))
		}
	}
}
