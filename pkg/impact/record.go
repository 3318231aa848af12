package impact

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/pkg/events"
)

// EventStore is the change-event store (*eventstore.Store).
type EventStore interface {
	Get(ctx context.Context, tenant uint32, id string) (events.Event, error)
	List(ctx context.Context, tenant uint32, q events.Query) ([]events.Event, string, error)
	Append(ctx context.Context, tenant uint32, evs []events.Event) ([]events.Event, error)
}

// Names of the events and series a judgement is recorded as.
const (
	// EventImpact is the point event recording a judgement.
	EventImpact = "change_impact"
	// EventGate is the point event recording a gate's decision.
	EventGate = "change_gate"

	MetricScore       = "change_impact_score"
	MetricSignalRatio = "change_impact_signal_ratio"
	MetricDeployments = "change_deployments_total"
	MetricFailures    = "change_failures_total"
	MetricLeadSum     = "change_lead_time_seconds_sum"
	MetricLeadCount   = "change_lead_time_seconds_count"
	MetricRestoreSum  = "change_restore_seconds_sum"
	MetricRestoreCnt  = "change_restore_seconds_count"

	// AttrCommitTimestamp, on a change, is when its code was committed
	// (RFC 3339 or Unix seconds): its lead time runs from there to the
	// change's end.
	AttrCommitTimestamp = "commit_timestamp"
)

// Attributes of a change_impact event, besides the judged change's own.
const (
	attrChangeID    = "change_id"
	attrChangeName  = "change_name"
	attrService     = "change_service"
	attrVerdict     = "verdict"
	attrScore       = "score"
	attrFailing     = "failing_signals"
	attrChangeStart = "change_start"
	attrChangeEnd   = "change_end"
	attrLeadTime    = "lead_time_seconds"
)

// IdempotencyKey is the key of the change_impact event of a change: one
// judgement per change, however often it is attempted.
func IdempotencyKey(changeID string) string { return "change_impact:" + changeID }

// recorder writes judgements as series and events.
type recorder struct {
	events  EventStore
	samples promstorage.Appendable
}

// record writes jd: the score and ratio series, the DORA series recomputed
// from the stored judgements of the same service and change name, then the
// change_impact event. The event is written last: it is the commit record.
// A change already recorded returns an error matching events.ErrConflict.
func (r *recorder) record(ctx context.Context, tid uint32, jd *Judgement) (events.Event, error) {
	c := jd.Change
	attrs := impactAttributes(jd)
	past, err := r.judgementsOf(ctx, tid, c.Service, c.Name)
	if err != nil {
		return events.Event{}, err
	}
	for _, p := range past {
		if p.Attributes[attrChangeID] == c.ID {
			return p, fmt.Errorf("change %s: %w", c.ID, events.Conflict("impact: the change is judged already"))
		}
	}
	now := jd.JudgedAt
	dora := DORA(append(past, events.Event{Time: now, Attributes: attrs}))

	app := r.samples.Appender(ctx)
	t := now.UnixMilli()
	add := func(ls labels.Labels, v float64) error {
		_, err := app.Append(0, ls, t, v)
		return err
	}
	var errs []error
	seriesLabels := func(metric string, extra ...string) labels.Labels {
		b := labels.NewBuilder(labels.EmptyLabels())
		for k, v := range c.Attributes {
			b.Set(k, v)
		}
		b.Set(labels.MetricName, metric)
		b.Set("change_id", c.ID)
		b.Set("event_name", c.Name)
		b.Set("verdict", jd.Verdict)
		for i := 0; i+1 < len(extra); i += 2 {
			b.Set(extra[i], extra[i+1])
		}
		return b.Labels()
	}
	if jd.Score != nil {
		errs = append(errs, add(seriesLabels(MetricScore), *jd.Score))
	}
	for _, cmp := range jd.Comparisons {
		for _, s := range cmp.Signals {
			if s.Judged && s.Ratio != nil && len(s.Labels) == 0 {
				errs = append(errs, add(seriesLabels(MetricSignalRatio, "signal", s.Signal, "comparison", cmp.Kind), *s.Ratio))
			}
		}
	}
	doraLabels := func(metric string) labels.Labels {
		return labels.FromStrings(labels.MetricName, metric, "service", c.Service, "event_name", c.Name)
	}
	for _, s := range []struct {
		m string
		v float64
	}{
		{MetricDeployments, float64(dora.Deployments)}, {MetricFailures, float64(dora.Failures)},
		{MetricLeadSum, dora.LeadTimeSum.Seconds()}, {MetricLeadCount, float64(dora.LeadTimes)},
		{MetricRestoreSum, dora.RestoreSum.Seconds()}, {MetricRestoreCnt, float64(dora.Restores)},
	} {
		errs = append(errs, add(doraLabels(s.m), s.v))
	}
	for _, err := range errs {
		if err != nil {
			_ = app.Rollback()
			return events.Event{}, fmt.Errorf("write the series of judgement %s: %w", c.ID, err)
		}
	}
	if err := app.Commit(); err != nil {
		return events.Event{}, fmt.Errorf("write the series of judgement %s: %w", c.ID, err)
	}

	text, err := json.Marshal(jd)
	if err != nil {
		return events.Event{}, fmt.Errorf("encode judgement %s: %w", c.ID, err)
	}
	ev := events.Event{
		Name: EventImpact, State: events.StateStop, Time: now, Attributes: attrs,
		Text: string(text), Source: "levitated-impact", IdempotencyKey: IdempotencyKey(c.ID),
	}
	if jd.Score != nil {
		v := *jd.Score
		ev.Value = &v
	}
	out, err := r.events.Append(ctx, tid, []events.Event{ev})
	if err != nil {
		return events.Event{}, fmt.Errorf("record judgement %s: %w", c.ID, err)
	}
	return out[0], nil
}

// impactAttributes are the change_impact event's attributes: the judged
// change's, then change_id, change_name, change_service, verdict, score,
// failing_signals, change_start, change_end (Unix seconds) and
// lead_time_seconds.
func impactAttributes(jd *Judgement) map[string]string {
	c := jd.Change
	a := maps.Clone(c.Attributes)
	if a == nil {
		a = map[string]string{}
	}
	a[attrChangeID] = c.ID
	a[attrChangeName] = c.Name
	a[attrService] = c.Service
	a[attrVerdict] = jd.Verdict
	if jd.Score != nil {
		a[attrScore] = strconv.FormatFloat(*jd.Score, 'g', -1, 64)
	} else {
		delete(a, attrScore)
	}
	if len(jd.Failing) > 0 {
		a[attrFailing] = strings.Join(jd.Failing, ",")
	} else {
		delete(a, attrFailing)
	}
	a[attrChangeStart] = unixSeconds(c.Start)
	a[attrChangeEnd] = unixSeconds(deployedAt(c))
	delete(a, attrLeadTime)
	if ct, ok := c.Attributes[AttrCommitTimestamp]; ok {
		if t, err := events.ParseTime(AttrCommitTimestamp, ct); err == nil && !t.After(deployedAt(c)) {
			a[attrLeadTime] = strconv.FormatFloat(deployedAt(c).Sub(t).Seconds(), 'f', -1, 64)
		}
	}
	return a
}

// deployedAt is when a change is in place: the end of a window, the time
// of a point event.
func deployedAt(c Change) time.Time {
	if c.Point {
		return c.Start
	}
	return c.End
}

func unixSeconds(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)
}

// judgementsOf lists the stored change_impact events of a service's
// changes of one name, oldest first.
func (r *recorder) judgementsOf(ctx context.Context, tid uint32, service, name string) ([]events.Event, error) {
	ms := []*labels.Matcher{
		labels.MustNewMatcher(labels.MatchEqual, attrService, service),
		labels.MustNewMatcher(labels.MatchEqual, attrChangeName, name),
	}
	return listAll(ctx, r.events, tid, events.Query{Name: EventImpact, Matchers: ms})
}

// listAll pages through a List.
func listAll(ctx context.Context, es EventStore, tid uint32, q events.Query) ([]events.Event, error) {
	q.Limit = events.MaxLimit
	var out []events.Event
	for {
		page, next, err := es.List(ctx, tid, q)
		if err != nil {
			return nil, fmt.Errorf("list %s events: %w", q.Name, err)
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		q.After = next
	}
}
