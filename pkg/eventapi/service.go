package eventapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/tenant"
)

// EventStore is what the event services need from the event store
// (pkg/storage/eventstore.Store implements it). Append commits durably
// before it returns.
type EventStore interface {
	EventAppender
	Get(ctx context.Context, tenant uint32, id string) (events.Event, error)
	List(ctx context.Context, tenant uint32, q events.Query) ([]events.Event, string, error)
	Tail(ctx context.Context, tenant uint32, q events.Query, ready func() error, fn func(events.Event) error) error
}

// EventAppender is the write side of the event store.
type EventAppender interface {
	Append(ctx context.Context, tenant uint32, evs []events.Event) ([]events.Event, error)
}

// TenantIDs maps a tenant name to the numeric id the store keys by
// (pkg/tenant.IDs; *storage.DB).
type TenantIDs interface {
	TenantID(ctx context.Context, name string) (uint32, error)
}

// EventServiceOptions configure an EventService.
type EventServiceOptions struct {
	// Limits bound request bodies and events (events.DefaultLimits by
	// default). Keep them equal to the store's.
	Limits events.Limits
	// Appender, if set, stores the events in place of the store's Append
	// (the server gives the store with the events rate limit,
	// limits.Events).
	Appender EventAppender
	// Logger may be nil.
	Logger *slog.Logger
}

// EventService is the one implementation of event ingest and reading behind
// every API: the gRPC levitated.v1.EventService, its REST gateway, and the
// Last9 and Grafana-annotation handlers.
type EventService struct {
	levitatedv1.UnimplementedEventServiceServer

	store   EventStore
	app     EventAppender
	tenants TenantIDs
	limits  events.Limits
	logger  *slog.Logger
}

// NewEventService returns the service over store; tenants turns the
// caller's tenant into the store's tenant id.
func NewEventService(store EventStore, tenants TenantIDs, opts EventServiceOptions) *EventService {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Appender == nil {
		opts.Appender = store
	}
	return &EventService{store: store, app: opts.Appender, tenants: tenants, limits: opts.Limits.EnsureDefaults(), logger: opts.Logger}
}

func (s *EventService) tenantID(ctx context.Context) (uint32, error) {
	return tenant.ID(ctx, s.tenants)
}

// Append stores evs for the caller's tenant and returns them as stored.
func (s *EventService) Append(ctx context.Context, evs []events.Event) ([]events.Event, error) {
	t, err := s.tenantID(ctx)
	if err != nil {
		return nil, err
	}
	return s.app.Append(ctx, t, evs)
}

// CreateEvent implements levitated.v1.EventService.
func (s *EventService) CreateEvent(ctx context.Context, req *levitatedv1.CreateEventRequest) (*levitatedv1.CreateEventResponse, error) {
	if req.GetEvent() == nil {
		return nil, grpcError(&events.FieldError{Field: "event", Rule: "required"})
	}
	e, err := eventFromProto(req.GetEvent())
	if err != nil {
		return nil, grpcError(err)
	}
	out, err := s.Append(ctx, []events.Event{e})
	if err != nil {
		return nil, grpcError(err)
	}
	return &levitatedv1.CreateEventResponse{Event: eventToProto(&out[0])}, nil
}

// BatchCreateEvents implements levitated.v1.EventService.
func (s *EventService) BatchCreateEvents(ctx context.Context, req *levitatedv1.BatchCreateEventsRequest) (*levitatedv1.BatchCreateEventsResponse, error) {
	if len(req.GetEvents()) == 0 {
		return nil, grpcError(&events.FieldError{Field: "events", Rule: "empty"})
	}
	if len(req.GetEvents()) > s.limits.MaxBatch {
		return nil, grpcError(&events.FieldError{Field: "events", Rule: fmt.Sprintf("%d events, more than %d", len(req.GetEvents()), s.limits.MaxBatch)})
	}
	in := make([]events.Event, len(req.GetEvents()))
	for i, pe := range req.GetEvents() {
		e, err := eventFromProto(pe)
		if err != nil {
			return nil, grpcError(events.WithPrefix(fmt.Sprintf("events[%d]", i), err))
		}
		in[i] = e
	}
	out, err := s.appendBatch(ctx, in)
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &levitatedv1.BatchCreateEventsResponse{Events: make([]*levitatedv1.Event, len(out))}
	for i := range out {
		resp.Events[i] = eventToProto(&out[i])
	}
	return resp, nil
}

// appendBatch appends evs; errors of a one-event batch still name it
// events[0], as the caller sent a batch.
func (s *EventService) appendBatch(ctx context.Context, evs []events.Event) ([]events.Event, error) {
	out, err := s.Append(ctx, evs)
	if err != nil && len(evs) == 1 {
		err = events.WithPrefix("events[0]", err)
	}
	return out, err
}

// GetEvent implements levitated.v1.EventService.
func (s *EventService) GetEvent(ctx context.Context, req *levitatedv1.GetEventRequest) (*levitatedv1.GetEventResponse, error) {
	if req.GetId() == "" {
		return nil, grpcError(&events.FieldError{Field: "id", Rule: "required"})
	}
	t, err := s.tenantID(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	e, err := s.store.Get(ctx, t, req.GetId())
	if err != nil {
		return nil, grpcError(err)
	}
	return &levitatedv1.GetEventResponse{Event: eventToProto(&e)}, nil
}

// ListEvents implements levitated.v1.EventService.
func (s *EventService) ListEvents(ctx context.Context, req *levitatedv1.ListEventsRequest) (*levitatedv1.ListEventsResponse, error) {
	q := events.Query{Name: req.GetName(), OpenOnly: req.GetOpenOnly(), Limit: int(req.GetLimit()), After: req.GetPageToken()}
	var err error
	if req.GetStart() != "" {
		if q.Start, err = events.ParseTime("start", req.GetStart()); err != nil {
			return nil, grpcError(err)
		}
	}
	if req.GetEnd() != "" {
		if q.End, err = events.ParseTime("end", req.GetEnd()); err != nil {
			return nil, grpcError(err)
		}
	}
	if !q.Start.IsZero() && !q.End.IsZero() && q.End.Before(q.Start) {
		return nil, grpcError(&events.FieldError{Field: "end", Rule: "before start"})
	}
	if req.GetLimit() < 0 || req.GetLimit() > events.MaxLimit {
		return nil, grpcError(&events.FieldError{Field: "limit", Rule: fmt.Sprintf("%d is not between 0 and %d", req.GetLimit(), events.MaxLimit)})
	}
	if q.Matchers, err = events.ParseMatchers("match", req.GetMatch()); err != nil {
		return nil, grpcError(err)
	}
	t, err := s.tenantID(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	evs, next, err := s.store.List(ctx, t, q)
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &levitatedv1.ListEventsResponse{Events: make([]*levitatedv1.Event, len(evs)), NextPageToken: next}
	for i := range evs {
		resp.Events[i] = eventToProto(&evs[i])
	}
	return resp, nil
}

// TailEvents implements levitated.v1.EventService: it sends the response
// headers once subscribed, then every new matching event.
func (s *EventService) TailEvents(req *levitatedv1.TailEventsRequest, stream grpc.ServerStreamingServer[levitatedv1.TailEventsResponse]) error {
	ctx := stream.Context()
	err := s.tail(ctx, req, func() error { return stream.SendHeader(metadata.MD{}) }, func(e *levitatedv1.Event) error {
		return stream.Send(&levitatedv1.TailEventsResponse{Event: e})
	})
	if err != nil && ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return grpcError(err)
}

func (s *EventService) tail(ctx context.Context, req *levitatedv1.TailEventsRequest, ready func() error, send func(*levitatedv1.Event) error) error {
	ms, err := events.ParseMatchers("match", req.GetMatch())
	if err != nil {
		return err
	}
	t, err := s.tenantID(ctx)
	if err != nil {
		return err
	}
	q := events.Query{Name: req.GetName(), Matchers: ms, OpenOnly: req.GetOpenOnly()}
	return s.store.Tail(ctx, t, q, ready, func(e events.Event) error { return send(eventToProto(&e)) })
}

// grpcError returns err as a gRPC status error. Errors that carry a status
// (events.FieldError and the events sentinels) keep their code and message;
// context errors become Canceled/DeadlineExceeded; anything else is
// Internal.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}
