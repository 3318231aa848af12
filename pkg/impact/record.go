package impact

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
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

	// PhaseInitial is a change's first judgement; PhaseFinal its judgement
	// again at the end of the grace, recorded when late data changed it.
	PhaseInitial = "initial"
	PhaseFinal   = "final"
	// PhaseEarly is the judgement of a window still open, OpenAfter after
	// its start.
	PhaseEarly = "early"

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
	attrPhase       = "judgement"
	attrSupersedes  = "supersedes"
)

// IdempotencyKey is the key of the change_impact event of a change's
// judgement in a phase: one initial and at most one final judgement per
// change, however often they are attempted.
func IdempotencyKey(changeID, phase string) string {
	if phase == PhaseFinal || phase == PhaseEarly {
		return "change_impact:" + changeID + "/" + phase
	}
	return "change_impact:" + changeID
}

// recorder writes judgements as series and events.
type recorder struct {
	events  EventStore
	samples promstorage.Appendable

	mu   sync.Mutex
	past map[pastKey]*pastJudgements // judgementsOf's reads, by service and change name
}

type pastKey struct {
	tid           uint32
	service, name string
}

// pastJudgements are a service's change_impact events of one change name
// as read from the store at readAt (without their text, which the DORA
// figures do not read), with those recorded here since.
type pastJudgements struct {
	evs    []events.Event
	readAt time.Time
}

// pastTTL is how long the judgements of a service read from the store
// serve the DORA series of its next judgements (each adding its own)
// before they are read again. Reading them at every judgement decoded each
// event's whole text: with 50 changes of a service judged in a row, 56 %
// of the judgements' CPU (bench/RESULTS.md, "Change impact: cost"). Events
// that pass the retention leave the figures within it.
const pastTTL = time.Minute

// record writes jd: first the change_impact event, the commit record,
// then its series (writeSeries). A change recorded already returns its
// recorded event and an error matching events.ErrConflict, and writes no
// series. An error after the event is written is a *SeriesError: the
// judgement is recorded, its series are written again later (they are
// derived from the event, so writing them again changes nothing).
func (r *recorder) record(ctx context.Context, tid uint32, jd *Judgement) (events.Event, error) {
	c := jd.Change
	// The series' samples are at the event's time, in milliseconds: a
	// repair derives them from the event and must find the same ones.
	jd.JudgedAt = jd.JudgedAt.Truncate(time.Millisecond)
	if jd.Phase == "" {
		jd.Phase = PhaseInitial
	}
	text, err := json.Marshal(jd)
	if err != nil {
		return events.Event{}, fmt.Errorf("encode judgement %s: %w", c.ID, err)
	}
	ev := events.Event{
		Name: EventImpact, State: events.StateStop, Time: jd.JudgedAt, Attributes: impactAttributes(jd),
		Text: string(text), Source: "levitated-impact", IdempotencyKey: IdempotencyKey(c.ID, jd.Phase),
	}
	if jd.Score != nil {
		v := *jd.Score
		ev.Value = &v
	}
	out, err := r.events.Append(ctx, tid, []events.Event{ev})
	if errors.Is(err, events.ErrConflict) {
		prior, ok, lerr := recordedEvent(ctx, r.events, tid, c.ID)
		switch {
		case lerr != nil:
			return events.Event{}, lerr
		case !ok || (jd.Phase != PhaseInitial && prior.Attributes[attrPhase] != jd.Phase):
			return events.Event{}, fmt.Errorf("record judgement %s: %w", c.ID, err)
		}
		return prior, fmt.Errorf("change %s: %w", c.ID, events.Conflict("impact: the change is judged already"))
	}
	if err != nil {
		return events.Event{}, fmt.Errorf("record judgement %s: %w", c.ID, err)
	}
	r.recorded(tid, out[0])
	if err := r.writeSeries(ctx, tid, out[0], nil); err != nil {
		return out[0], &SeriesError{EventID: out[0].ID, Err: err}
	}
	return out[0], nil
}

// SeriesError is a judgement recorded as an event whose series could not
// all be written; they are written again from the event later.
type SeriesError struct {
	EventID string
	Err     error
}

func (e *SeriesError) Error() string {
	return fmt.Sprintf("the series of change_impact event %s: %v", e.EventID, e.Err)
}
func (e *SeriesError) Unwrap() error { return e.Err }

// writeSeries writes the series of the judgement that the change_impact
// event ev records, all at ev's time: change_impact_score,
// change_impact_signal_ratio, and the DORA series computed from the
// service's change_impact events of the same change name up to ev's time
// (past, when given, lists them; else they are read). Everything written
// follows from the stored events, so writing the series of an event again
// writes the same samples, which the store takes as no-ops. Samples the
// store refuses are skipped and reported; the others are written.
func (r *recorder) writeSeries(ctx context.Context, tid uint32, ev events.Event, past []events.Event) error {
	jd, err := judgementOf(ev)
	if err != nil {
		return err
	}
	c := jd.Change
	if past == nil {
		if past, err = r.judgementsOf(ctx, tid, c.Service, c.Name); err != nil {
			return err
		}
	}
	upTo := make([]events.Event, 0, len(past)+1)
	seen := false
	for _, p := range past {
		if !p.Time.After(ev.Time) {
			upTo = append(upTo, p)
			seen = seen || p.ID == ev.ID
		}
	}
	if !seen {
		upTo = append(upTo, ev)
	}
	dora := DORA(upTo)

	app := r.samples.Appender(ctx)
	t := ev.Time.UnixMilli()
	var errs []error
	written := 0
	add := func(ls labels.Labels, v float64) {
		if _, err := app.Append(0, ls, t, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ls.Get(labels.MetricName), err))
			return
		}
		written++
	}
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
		add(seriesLabels(MetricScore), *jd.Score)
	}
	for _, cmp := range jd.Comparisons {
		for _, s := range cmp.Signals {
			if s.Judged && s.Ratio != nil && len(s.Labels) == 0 {
				add(seriesLabels(MetricSignalRatio, "signal", s.Signal, "comparison", cmp.Kind), *s.Ratio)
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
		add(doraLabels(s.m), s.v)
	}
	if written > 0 {
		if err := app.Commit(); err != nil {
			return fmt.Errorf("write the series of judgement %s: %w", c.ID, err)
		}
	} else {
		_ = app.Rollback()
	}
	if len(errs) > 0 {
		return fmt.Errorf("write the series of judgement %s: %w", c.ID, errors.Join(errs...))
	}
	return nil
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
	a[attrPhase] = jd.Phase
	if jd.Supersedes != "" {
		a[attrSupersedes] = jd.Supersedes
	} else {
		delete(a, attrSupersedes)
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
	k, now := pastKey{tid, service, name}, time.Now()
	r.mu.Lock()
	if p := r.past[k]; p != nil && now.Sub(p.readAt) < pastTTL {
		evs := slices.Clone(p.evs)
		r.mu.Unlock()
		return evs, nil
	}
	r.mu.Unlock()
	ms := []*labels.Matcher{
		labels.MustNewMatcher(labels.MatchEqual, attrService, service),
		labels.MustNewMatcher(labels.MatchEqual, attrChangeName, name),
	}
	evs, err := listAll(ctx, r.events, tid, events.Query{Name: EventImpact, Matchers: ms})
	if err != nil {
		return nil, err
	}
	for i := range evs {
		evs[i].Text = ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.past == nil {
		r.past = map[pastKey]*pastJudgements{}
	}
	for pk, p := range r.past {
		if now.Sub(p.readAt) >= pastTTL {
			delete(r.past, pk)
		}
	}
	r.past[k] = &pastJudgements{evs: evs, readAt: now}
	return slices.Clone(evs), nil
}

// recorded adds a change_impact event just written to the judgements of
// its service read before.
func (r *recorder) recorded(tid uint32, ev events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.past[pastKey{tid, ev.Attributes[attrService], ev.Attributes[attrChangeName]}]
	if p == nil || slices.ContainsFunc(p.evs, func(e events.Event) bool { return e.ID == ev.ID }) {
		return
	}
	ev.Text = ""
	p.evs = append(p.evs, ev)
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

// recordedEvent returns the change_impact event of a change's judgement in
// force, if there is one: the final one, else the initial one.
func recordedEvent(ctx context.Context, es EventStore, tid uint32, changeID string) (events.Event, bool, error) {
	evs, _, err := es.List(ctx, tid, events.Query{Name: EventImpact, Limit: 10,
		Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, attrChangeID, changeID)}})
	if err != nil {
		return events.Event{}, false, fmt.Errorf("list change_impact events: %w", err)
	}
	if len(evs) == 0 {
		return events.Event{}, false, nil
	}
	rank := map[string]int{PhaseEarly: 0, PhaseInitial: 1, "": 1, PhaseFinal: 2}
	best := evs[0]
	for _, e := range evs[1:] {
		if rank[e.Attributes[attrPhase]] > rank[best.Attributes[attrPhase]] {
			best = e
		}
	}
	return best, true, nil
}
