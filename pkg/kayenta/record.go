package kayenta

import (
	"context"
	"encoding/json"
	"time"

	"github.com/levitated/levitated/pkg/analysis"
	"github.com/levitated/levitated/pkg/tenant"
)

// Recorder keeps the outcome of every finished execution as history (the
// server wires it to pkg/impact, which writes a change_analysis event and
// series), once per execution id.
type Recorder interface {
	RecordExecution(ctx context.Context, o Outcome) error
}

// Outcome is one finished execution.
type Outcome struct {
	ID          string
	Application string
	ConfigID    string
	ConfigName  string
	// ChangeID is the change event the execution judged: the request's
	// metadata entry named event_id ([{"name": "event_id", "value": …}]).
	ChangeID string
	// Result is the judge's; nil when the execution ended TERMINAL, with
	// Error saying why.
	Result *analysis.CanaryJudgeResult
	Error  string
	// Start and End bound the experiment's scopes, BaselineStart and
	// BaselineEnd the control's.
	Start, End, BaselineStart, BaselineEnd time.Time
	// Status is the execution as GET /canary/{id} answers it (JSON).
	Status []byte
}

// MetadataEventID is the name of the request metadata entry that links an
// execution to the change event it judges.
const MetadataEventID = "event_id"

// recordTimeout bounds recording one execution.
const recordTimeout = 30 * time.Second

// recordOutcome records a finished execution, before it is marked finished:
// a crash in between runs it again, and the Recorder records it once.
func (s *Service) recordOutcome(ctx context.Context, e *execution) error {
	if s.opts.Recorder == nil {
		return nil
	}
	o := Outcome{ID: e.ID, Application: e.Application, ConfigID: e.CanaryConfigID, ConfigName: e.Config.Name,
		ChangeID: metadataValue(e.Request.Metadata, MetadataEventID), Result: e.Result}
	if e.Exception != nil {
		o.Error = e.Exception.Details.Error
	}
	for _, p := range e.Request.Scopes {
		widen(&o.Start, &o.End, time.Time(p.ExperimentScope.Start), time.Time(p.ExperimentScope.End))
		widen(&o.BaselineStart, &o.BaselineEnd, time.Time(p.ControlScope.Start), time.Time(p.ControlScope.End))
	}
	if b, err := json.Marshal(e.status()); err == nil {
		o.Status = b
	}
	rctx, cancel := context.WithTimeout(tenant.NewContext(context.WithoutCancel(ctx), e.Tenant), recordTimeout)
	defer cancel()
	return s.opts.Recorder.RecordExecution(rctx, o)
}

func widen(start, end *time.Time, s, e time.Time) {
	if !s.IsZero() && (start.IsZero() || s.Before(*start)) {
		*start = s
	}
	if e.After(*end) {
		*end = e
	}
}

// metadataValue reads Kayenta's request metadata, a list of {name, value},
// for name; anything else reads as absent.
func metadataValue(raw json.RawMessage, name string) string {
	var md []struct {
		Name  string `json:"name"`
		Value any    `json:"value"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &md) != nil {
		return ""
	}
	for _, m := range md {
		if v, ok := m.Value.(string); ok && m.Name == name {
			return v
		}
	}
	return ""
}
