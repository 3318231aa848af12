package impact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/tenant"
)

// Names of the event and series an analysis someone asked for is recorded
// as (RecordAnalysis).
const (
	// EventAnalysis is the point event recording one analysis.
	EventAnalysis = "change_analysis"

	MetricAnalysisScore       = "change_analysis_score"
	MetricAnalysisSignalRatio = "change_analysis_signal_ratio"
)

// Sources of recorded analyses.
const (
	SourceAnalysis = "analysis" // POST /api/v1/analysis, gRPC AnalysisService.Analyze
	SourceKayenta  = "kayenta"  // a Kayenta canary execution
	SourceFlagger  = "flagger"  // POST /api/v1/analysis:webhook
)

// VerdictError is the verdict of an analysis that ended in an error (a
// Kayenta execution that ended TERMINAL).
const VerdictError = "error"

// Attributes of a change_analysis event, besides those of the change it
// judged and of the analysis (AnalysisRecord.Attributes).
const (
	attrSource        = "source"
	attrAnalysisID    = "analysis_id"
	attrNodata        = "nodata_signals"
	attrAnalysisStart = "analysis_start"
	attrAnalysisEnd   = "analysis_end"
	attrBaselineStart = "baseline_start"
	attrBaselineEnd   = "baseline_end"
	attrChangeOpen    = "change_open"
)

// AnalysisRecord is the outcome of one analysis someone asked for: a
// native analysis, a Kayenta execution or a Flagger webhook's judgement.
type AnalysisRecord struct {
	// Source is SourceAnalysis, SourceKayenta or SourceFlagger.
	Source string
	// ID names the analysis within its source; one record per ID.
	ID string
	// Verdict is the analysis's: Pass, Marginal or Fail (recorded in lower
	// case), or VerdictError.
	Verdict string
	Score   *float64
	// Start and End bound the canary's analysed time, BaselineStart and
	// BaselineEnd the baseline's.
	Start, End                 time.Time
	BaselineStart, BaselineEnd time.Time
	// ChangeID is the change event the analysis judged, if any: the start
	// of a window (or its stop), or a point event.
	ChangeID string
	// Attributes describe the analysis (Flagger's canary and phase,
	// Kayenta's application…): Prometheus label names.
	Attributes map[string]string
	Metrics    []AnalysisMetric
	// Text is the analysis's whole answer (JSON), kept as the event's text.
	Text string
}

// AnalysisMetric is one metric of an analysis.
type AnalysisMetric struct {
	Name string
	// Labels tell apart the series of a metric with several; a ratio
	// series is written only for a metric with one series.
	Labels         map[string]string
	Classification string
	Ratio          *float64
}

// AnalysisIdempotencyKey is the key of the change_analysis event of an
// analysis: one record per source and id.
// A key longer than the event store takes names the id by its SHA-256.
func AnalysisIdempotencyKey(source, id string) string {
	k := "change_analysis:" + source + ":" + id
	if len(k) > events.DefaultLimits().MaxIdempotencyKey {
		sum := sha256.Sum256([]byte(id))
		k = "change_analysis:" + source + ":sha256:" + hex.EncodeToString(sum[:])
	}
	return k
}

// analysisLocks serialise the records of one analysis id (striped), so that
// concurrent retries write the series once.
var analysisLocks [64]sync.Mutex

// RecordAnalysis records r in the tenant of ctx, once per (Source, ID): the
// change_analysis_score and change_analysis_signal_ratio series, then the
// change_analysis point event (the commit record). An analysis recorded
// already returns its event and writes nothing. A change that r.ChangeID
// names and the store no longer has is recorded by id only.
func (s *Service) RecordAnalysis(ctx context.Context, r AnalysisRecord) (events.Event, error) {
	if r.Source == "" || r.ID == "" {
		return events.Event{}, errors.New("record analysis: source and id are required")
	}
	tid, err := tenant.ID(ctx, s.deps.Tenants)
	if err != nil {
		return events.Event{}, err
	}
	key := AnalysisIdempotencyKey(r.Source, r.ID)
	h := fnv.New32a()
	_, _ = h.Write([]byte(strconv.FormatUint(uint64(tid), 10) + "\x00" + key))
	mu := &analysisLocks[h.Sum32()%uint32(len(analysisLocks))]
	mu.Lock()
	defer mu.Unlock()

	prior, _, err := s.deps.Events.List(ctx, tid, events.Query{Name: EventAnalysis, Limit: 1, Matchers: []*labels.Matcher{
		labels.MustNewMatcher(labels.MatchEqual, attrSource, r.Source),
		labels.MustNewMatcher(labels.MatchEqual, attrAnalysisID, r.ID),
	}})
	if err != nil {
		return events.Event{}, fmt.Errorf("list change_analysis events: %w", err)
	}
	if len(prior) > 0 {
		return prior[0], nil
	}

	now := s.opts.Now()
	change, err := s.analysedChange(ctx, tid, r.ChangeID, now)
	if err != nil {
		return events.Event{}, err
	}
	attrs := analysisAttributes(r, change)
	if change != nil && len(attrs) > events.DefaultLimits().MaxAttributes {
		// Too many to record with ours: the change is named by change_id
		// only, rather than the analysis's record refused.
		c := *change
		c.Attributes = nil
		change = &c
		attrs = analysisAttributes(r, change)
	}

	app := s.deps.Samples.Appender(ctx)
	t := now.UnixMilli()
	series := func(metric string, extra ...string) labels.Labels {
		b := labels.NewBuilder(labels.EmptyLabels())
		if change != nil {
			for k, v := range change.Attributes {
				b.Set(k, v)
			}
			b.Set("change_id", change.ID)
			b.Set("event_name", change.Name)
		} else if r.ChangeID != "" {
			b.Set("change_id", r.ChangeID)
		}
		for k, v := range r.Attributes {
			b.Set(k, v)
		}
		b.Set(labels.MetricName, metric)
		b.Set(attrSource, r.Source)
		b.Set(attrAnalysisID, r.ID)
		b.Set(attrVerdict, attrs[attrVerdict])
		for i := 0; i+1 < len(extra); i += 2 {
			b.Set(extra[i], extra[i+1])
		}
		return b.Labels()
	}
	var errs []error
	if r.Score != nil {
		_, err := app.Append(0, series(MetricAnalysisScore), t, *r.Score)
		errs = append(errs, err)
	}
	for _, m := range r.Metrics {
		if m.Ratio != nil && len(m.Labels) == 0 {
			_, err := app.Append(0, series(MetricAnalysisSignalRatio, "signal", m.Name), t, *m.Ratio)
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		_ = app.Rollback()
		return events.Event{}, fmt.Errorf("write the series of %s analysis %s: %w", r.Source, r.ID, err)
	}
	if err := app.Commit(); err != nil {
		return events.Event{}, fmt.Errorf("write the series of %s analysis %s: %w", r.Source, r.ID, err)
	}

	ev := events.Event{
		Name: EventAnalysis, State: events.StateStop, Time: now, Attributes: attrs,
		Text: boundedText(r.Text, r.Source, r.ID), Source: "levitated-" + r.Source,
		IdempotencyKey: key,
	}
	if r.Score != nil {
		v := *r.Score
		ev.Value = &v
	}
	out, err := s.deps.Events.Append(ctx, tid, []events.Event{ev})
	if err != nil {
		return events.Event{}, fmt.Errorf("record %s analysis %s: %w", r.Source, r.ID, err)
	}
	return out[0], nil
}

// analysedChange reads the change an analysis judged: nil when it names
// none or the store no longer has it.
func (s *Service) analysedChange(ctx context.Context, tid uint32, id string, now time.Time) (*Change, error) {
	if id == "" {
		return nil, nil
	}
	e, err := s.deps.Events.Get(ctx, tid, id)
	if errors.Is(err, events.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the change %s the analysis judged: %w", id, err)
	}
	start := e
	if e.Window != nil && e.State == events.StateStop {
		if start, err = s.deps.Events.Get(ctx, tid, e.Window.StartID); err != nil {
			if errors.Is(err, events.ErrNotFound) {
				return nil, nil
			}
			return nil, fmt.Errorf("read the start of window %s: %w", e.Window.StartID, err)
		}
	}
	if e.State == events.StateStart && e.Window == nil {
		return nil, nil
	}
	c, _ := ChangeOf(s.Config(), e, start, now) // a change without a service is linked all the same
	if c.ID == "" {
		return nil, nil
	}
	if c.Point {
		c.End = c.Start
	}
	return &c, nil
}

// analysisAttributes are the change_analysis event's attributes: the judged
// change's, the analysis's, then ours.
func analysisAttributes(r AnalysisRecord, c *Change) map[string]string {
	a := map[string]string{}
	if c != nil {
		maps.Copy(a, c.Attributes)
	}
	maps.Copy(a, r.Attributes)
	if c != nil {
		a[attrChangeID] = c.ID
		a[attrChangeName] = c.Name
		if c.Service != "" {
			a[attrService] = c.Service
		}
		a[attrChangeStart] = unixSeconds(c.Start)
		if c.Open {
			a[attrChangeOpen] = "true"
		} else {
			a[attrChangeEnd] = unixSeconds(c.End)
		}
	} else if r.ChangeID != "" {
		a[attrChangeID] = r.ChangeID
	}
	a[attrSource] = r.Source
	a[attrAnalysisID] = r.ID
	a[attrVerdict] = strings.ToLower(r.Verdict)
	if r.Score != nil {
		a[attrScore] = strconv.FormatFloat(*r.Score, 'g', -1, 64)
	}
	var failing, nodata []string
	for _, m := range r.Metrics {
		switch m.Classification {
		case "High", "Low", "Error", "NodataFailMetric":
			failing = append(failing, m.Name)
		case "Nodata":
			nodata = append(nodata, m.Name)
		}
	}
	if s := joinUnique(failing); s != "" {
		a[attrFailing] = s
	}
	if s := joinUnique(nodata); s != "" {
		a[attrNodata] = s
	}
	for k, t := range map[string]time.Time{attrAnalysisStart: r.Start, attrAnalysisEnd: r.End,
		attrBaselineStart: r.BaselineStart, attrBaselineEnd: r.BaselineEnd} {
		if !t.IsZero() {
			a[k] = unixSeconds(t)
		}
	}
	return a
}

func joinUnique(names []string) string {
	sort.Strings(names)
	out := names[:0]
	for i, n := range names {
		if i == 0 || n != names[i-1] {
			out = append(out, n)
		}
	}
	return strings.Join(out, ",")
}

// boundedText is s if an event's text can hold it, else a sentence saying
// it could not (a cut JSON answer would not parse).
func boundedText(s string, source, id string) string {
	if n := events.DefaultLimits().MaxTextBytes; len(s) > n {
		return fmt.Sprintf("The answer of %s analysis %s (%d bytes) is larger than an event's text (%d bytes); ask its source for it.", source, id, len(s), n)
	}
	return s
}
