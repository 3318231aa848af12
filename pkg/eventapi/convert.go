package eventapi

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/events"
)

// eventFromProto converts an API event to the model. Output-only fields
// are ignored, as the API documents.
func eventFromProto(p *levitatedv1.Event) (events.Event, error) {
	e := events.Event{
		Name:           p.GetName(),
		Attributes:     p.GetAttributes(),
		Text:           p.GetText(),
		URL:            p.GetUrl(),
		Source:         p.GetSource(),
		IdempotencyKey: p.GetIdempotencyKey(),
		StartID:        p.GetStartId(),
		StartKey:       p.GetStartKey(),
	}
	if len(e.Attributes) == 0 {
		e.Attributes = nil
	}
	st, err := events.ParseState(p.GetState())
	if err != nil {
		return e, err
	}
	e.State = st
	if ts := p.GetTimestamp(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return e, &events.FieldError{Field: "timestamp", Rule: err.Error()}
		}
		e.Time = ts.AsTime()
	}
	if p.Value != nil {
		v := p.GetValue()
		e.Value = &v
	}
	return e, nil
}

func eventToProto(e *events.Event) *levitatedv1.Event {
	p := &levitatedv1.Event{
		Id:             e.ID,
		Name:           e.Name,
		State:          e.State.String(),
		Timestamp:      timestampOrNil(e.Time),
		Attributes:     e.Attributes,
		Text:           e.Text,
		Url:            e.URL,
		Source:         e.Source,
		IdempotencyKey: e.IdempotencyKey,
		Value:          e.Value,
		StartId:        e.StartID,
		StartKey:       e.StartKey,
		ReceivedAt:     timestampOrNil(e.ReceivedAt),
		Warnings:       e.Warnings,
	}
	if w := e.Window; w != nil {
		p.Window = &levitatedv1.Window{
			StartId: w.StartID,
			Start:   timestampOrNil(w.Start),
			StopId:  w.StopID,
			End:     timestampOrNil(w.End),
			Open:    w.Open(),
		}
	}
	return p
}

func timestampOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
