package impact

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/tenant"
)

// judgementOf reads the judgement a change_impact event records.
func judgementOf(ev events.Event) (Judgement, error) {
	var jd Judgement
	if err := json.Unmarshal([]byte(ev.Text), &jd); err != nil {
		return Judgement{}, fmt.Errorf("read the judgement of change_impact event %s: %w", ev.ID, err)
	}
	jd.EventID = ev.ID
	return jd, nil
}

// Impact returns the recorded judgement of the change that event id
// started, closed or is (a point event). It is events.ErrNotFound, with a
// message saying why, when there is none yet.
func (s *Service) Impact(ctx context.Context, id string) (Judgement, error) {
	tid, err := tenant.ID(ctx, s.deps.Tenants)
	if err != nil {
		return Judgement{}, err
	}
	e, err := s.deps.Events.Get(ctx, tid, id)
	if err != nil {
		return Judgement{}, err
	}
	changeID := id
	if e.Window != nil {
		changeID = e.Window.StartID
	}
	ev, ok, err := s.recorded(ctx, tid, changeID)
	if err != nil {
		return Judgement{}, err
	}
	if !ok {
		cfg := s.Config()
		switch {
		case !cfg.Judged(e.Name):
			return Judgement{}, events.NotFound(fmt.Sprintf("event %s is a %q event, which is not judged (judged: %s)", id, e.Name, strings.Join(cfg.Events, ", ")))
		case e.Window != nil && e.Window.Open():
			return Judgement{}, events.NotFound(fmt.Sprintf("change %s is not judged yet: its window is open; it is judged %s after its stop", changeID, cfg.Delay))
		}
		if svc, _ := cfg.ServiceOf(e.Attributes); svc == "" {
			return Judgement{}, events.NotFound(fmt.Sprintf("change %s is not judged: it has none of the service attributes %s", changeID, strings.Join(cfg.ServiceAttributes, ", ")))
		}
		return Judgement{}, events.NotFound(fmt.Sprintf("change %s is not judged yet; a window is judged %s after its stop, a point event %s after it", changeID, cfg.Delay, cfg.PointWindow+cfg.Delay))
	}
	return judgementOf(ev)
}

// GateRequest asks whether a service's latest change may proceed.
type GateRequest struct {
	// Service is the changed service (required).
	Service string `json:"service"`
	// Event is the change's event name; default any judged name.
	Event string `json:"event,omitempty"`
	// EventID picks a change (its start, stop or point event) instead of
	// the latest.
	EventID string `json:"event_id,omitempty"`
	// Match are attribute matchers the change must match (`stage="2"`).
	Match []string `json:"match,omitempty"`
	// Signals, if set, judge only these signals, now.
	Signals []string `json:"signals,omitempty"`
	// AllowMarginal lets a marginal verdict pass.
	AllowMarginal bool `json:"allow_marginal,omitempty"`
	// DryRun answers without recording anything.
	DryRun bool `json:"dry_run,omitempty"`
	// AlwaysOK answers 200 even when the change is blocked, for clients
	// that read the decision from the body (Argo Rollouts' Web provider
	// counts any other status as an error, not a failure).
	AlwaysOK bool `json:"always_ok,omitempty"`
}

// GateResult is the gate's answer.
type GateResult struct {
	// Allowed is true when the verdict is pass (or marginal with
	// AllowMarginal).
	Allowed  bool     `json:"allowed"`
	Decision string   `json:"decision"` // "promote" or "block"
	Verdict  string   `json:"verdict"`
	Score    *float64 `json:"score,omitempty"`
	ChangeID string   `json:"change_id"`
	// Source is "recorded" (the change's recorded judgement) or "judged"
	// (judged for this request).
	Source    string    `json:"source"`
	Reasons   []string  `json:"reasons"`
	Judgement Judgement `json:"judgement"`
	// EventID is the change_gate event recording the decision (not with
	// dry_run).
	EventID string `json:"event_id,omitempty"`
}

// Gate decides on the change req names: its recorded judgement if it has
// one (and req names no signals), else a judgement made now (over the
// window so far, if it is open). A closed change judged now is recorded as
// the scheduler would; unless DryRun, the decision is recorded as a
// change_gate event.
func (s *Service) Gate(ctx context.Context, req GateRequest) (GateResult, error) {
	if req.Service == "" && req.EventID == "" {
		return GateResult{}, &events.FieldError{Field: "service", Rule: "is required: the service whose change to gate"}
	}
	cfg := s.Config()
	if req.Event != "" && !cfg.Judged(req.Event) {
		return GateResult{}, &events.FieldError{Field: "event", Rule: fmt.Sprintf("%q is not a judged event name (judged: %s)", req.Event, strings.Join(cfg.Events, ", "))}
	}
	match, err := events.ParseMatchers("match", req.Match)
	if err != nil {
		return GateResult{}, err
	}
	tid, err := tenant.ID(ctx, s.deps.Tenants)
	if err != nil {
		return GateResult{}, err
	}
	now := s.opts.Now()
	c, err := s.findChange(ctx, tid, cfg, req, match)
	if err != nil {
		return GateResult{}, err
	}
	res := GateResult{ChangeID: c.ID, Source: "recorded"}
	var jd Judgement
	ev, ok, err := s.recorded(ctx, tid, c.ID)
	if err != nil {
		return GateResult{}, err
	}
	if ok && len(req.Signals) == 0 && ev.Attributes[attrPhase] != PhaseEarly { // an open window is judged up to now
		if jd, err = judgementOf(ev); err != nil {
			return GateResult{}, err
		}
	} else {
		res.Source = "judged"
		switch {
		case !req.DryRun && !c.Open && len(req.Signals) == 0:
			jd, err = s.judgeAndRecord(ctx, tid, cfg, c, now)
		default:
			jd, err = s.judge.Judge(ctx, cfg, c, req.Signals, now)
			var perm *PermanentError
			if errors.As(err, &perm) {
				jd, err = Inconclusive(c, now, perm), nil
			}
		}
		if err != nil {
			return GateResult{}, err
		}
	}
	res.Judgement, res.Verdict, res.Score = jd, jd.Verdict, jd.Score
	res.Allowed = jd.Verdict == VerdictPass || (req.AllowMarginal && jd.Verdict == VerdictMarginal)
	res.Decision = "block"
	if res.Allowed {
		res.Decision = "promote"
	}
	res.Reasons = jd.Explanation
	if !req.DryRun {
		attrs := map[string]string{"service": c.Service, "change_id": c.ID, "decision": res.Decision, "verdict": jd.Verdict, "change_name": c.Name}
		out, err := s.deps.Events.Append(ctx, tid, []events.Event{{
			Name: EventGate, State: events.StateStop, Time: now, Attributes: attrs, Source: "levitated-gate",
			Text: strings.Join(jd.Explanation, " "),
		}})
		if err != nil {
			return GateResult{}, fmt.Errorf("record the gate's decision: %w", err)
		}
		res.EventID = out[0].ID
	}
	return res, nil
}

// findChange resolves the change a gate request names: EventID, or the
// latest-starting change of the service (of Event, matching Match) within
// the horizon.
func (s *Service) findChange(ctx context.Context, tid uint32, cfg *Config, req GateRequest, match []*labels.Matcher) (Change, error) {
	now := s.opts.Now()
	changeOf := func(e events.Event) (Change, bool, error) {
		var start events.Event
		if e.Window != nil && e.State == events.StateStop {
			var err error
			if start, err = s.deps.Events.Get(ctx, tid, e.Window.StartID); err != nil {
				return Change{}, false, fmt.Errorf("read the start of window %s: %w", e.Window.StartID, err)
			}
		}
		c, ok := ChangeOf(cfg, e, start, now)
		return c, ok, nil
	}
	if req.EventID != "" {
		e, err := s.deps.Events.Get(ctx, tid, req.EventID)
		if err != nil {
			return Change{}, err
		}
		if !cfg.Judged(e.Name) {
			return Change{}, &events.FieldError{Field: "event_id", Rule: fmt.Sprintf("event %s is a %q event, which is not judged", req.EventID, e.Name)}
		}
		c, ok, err := changeOf(e)
		switch {
		case err != nil:
			return Change{}, err
		case !ok:
			return Change{}, &events.FieldError{Field: "event_id", Rule: fmt.Sprintf("event %s is not a change of a service (it has none of %s, or is a start without a window)", req.EventID, strings.Join(cfg.ServiceAttributes, ", "))}
		case req.Service != "" && c.Service != req.Service:
			return Change{}, &events.FieldError{Field: "event_id", Rule: fmt.Sprintf("event %s changed service %q, not %q", req.EventID, c.Service, req.Service)}
		}
		return c, nil
	}
	names := cfg.Events
	if req.Event != "" {
		names = []string{req.Event}
	}
	var latest *events.Event
	for _, name := range names {
		for _, attr := range cfg.ServiceAttributes {
			ms := append([]*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, attr, req.Service)}, match...)
			evs, err := listAll(ctx, s.deps.Events, tid, events.Query{Name: name, Start: now.Add(-cfg.Horizon), End: now, Matchers: ms})
			if err != nil {
				return Change{}, err
			}
			for i := range evs {
				e := &evs[i]
				isChange := e.State == events.StateStart || e.Window == nil // a start, or a point event
				if !isChange {
					continue
				}
				if svc, _ := cfg.ServiceOf(e.Attributes); svc != req.Service {
					continue
				}
				if latest == nil || !e.Time.Before(latest.Time) {
					latest = e
				}
			}
		}
	}
	if latest == nil {
		return Change{}, events.NotFound(fmt.Sprintf("no change of service %q (%s) in the last %s", req.Service, strings.Join(names, ", "), cfg.Horizon))
	}
	c, _, err := changeOf(*latest)
	return c, err
}
