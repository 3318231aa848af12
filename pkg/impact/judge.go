package impact

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/events"
)

// Analyzer is levitated's native canary analysis (*canaryapi.Service): the
// one judge every verdict here comes from. It reads the tenant from ctx.
type Analyzer interface {
	Analyze(ctx context.Context, req *levitatedv1.AnalyzeRequest) (*levitatedv1.AnalyzeResponse, error)
}

// Verdicts of a judgement.
const (
	VerdictPass         = "pass"
	VerdictMarginal     = "marginal"
	VerdictFail         = "fail"
	VerdictInconclusive = "inconclusive"
)

// Comparisons a judgement makes.
const (
	// ComparisonBeforeAfter is the change against the same length of time
	// before it, on all of the service's series.
	ComparisonBeforeAfter = "before_after"
	// ComparisonCanaryBaseline is the canary's series against the
	// baseline's over the change, where the service is split.
	ComparisonCanaryBaseline = "canary_baseline"
)

// Change is one change to judge: a window, or a point event.
type Change struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Attributes map[string]string `json:"attributes"`
	Service    string            `json:"service"`
	// Start and End bound the change: the window, or, for a point event,
	// its time and PointWindow after it. End is the judgement's time for
	// an open window.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Point bool      `json:"point,omitempty"`
	Open  bool      `json:"open,omitempty"`
}

// ChangeOf makes the change that e is part of: the window a start opened or
// a stop closed (start is then the start event, which carries the window's
// attributes), or a point event. now ends an open window.
func ChangeOf(cfg *Config, e, start events.Event, now time.Time) (Change, bool) {
	c := Change{ID: e.ID, Name: e.Name, Attributes: e.Attributes}
	switch {
	case e.State == events.StateStop && e.Window == nil: // a point event
		c.Point, c.Start, c.End = true, e.Time, e.Time.Add(cfg.PointWindow)
	case e.Window != nil:
		c.ID, c.Attributes, c.Start = e.Window.StartID, start.Attributes, e.Window.Start
		if e.State == events.StateStart {
			c.Attributes = e.Attributes
		}
		c.End, c.Open = e.Window.End, e.Window.Open()
		if c.Open {
			c.End = now
		}
	default:
		return Change{}, false
	}
	c.Service, _ = cfg.ServiceOf(c.Attributes)
	return c, c.Service != ""
}

// Judgement is the verdict on one change, as GET /api/v1/events/{id}/impact
// answers it and the change_impact event's text records it.
type Judgement struct {
	Change Change `json:"change"`
	// Verdict is pass, marginal, fail or inconclusive.
	Verdict string `json:"verdict"`
	// Score is the lowest score of the comparisons; absent when
	// inconclusive.
	Score *float64 `json:"score,omitempty"`
	// Failing names the signals classified High, Low or Error.
	Failing []string `json:"failing_signals"`
	// Explanation is what decided, in sentences.
	Explanation []string     `json:"explanation"`
	Comparisons []Comparison `json:"comparisons"`
	// Warnings are the analyses' query warnings, each once: an endpoint
	// of --query.store that did not answer (the verdict is then on the
	// data that answered), or PromQL's own.
	Warnings []string  `json:"warnings,omitempty"`
	JudgedAt time.Time `json:"judged_at"`
	// EventID is the change_impact event that records the judgement.
	EventID string `json:"event_id,omitempty"`
	// Phase, on a recorded judgement, is "initial", or "final" for the
	// judgement again at the end of the grace (Config.Grace) that late
	// data changed.
	Phase string `json:"phase,omitempty"`
	// Supersedes, on a final judgement, is the change_impact event of the
	// initial one.
	Supersedes string `json:"supersedes,omitempty"`
}

// Comparison is one analysis of a judgement.
type Comparison struct {
	Kind          string         `json:"kind"`
	Verdict       string         `json:"verdict"`
	Score         float64        `json:"score"`
	Start         time.Time      `json:"start"`
	End           time.Time      `json:"end"`
	BaselineStart time.Time      `json:"baseline_start"`
	BaselineEnd   time.Time      `json:"baseline_end"`
	Baseline      string         `json:"baseline,omitempty"`
	Canary        string         `json:"canary,omitempty"`
	Signals       []SignalResult `json:"signals"`
}

// SignalResult is one signal (one series of it) in one comparison.
type SignalResult struct {
	Signal         string            `json:"signal"`
	Labels         map[string]string `json:"labels,omitempty"`
	Classification string            `json:"classification"`
	// Judged is false for a signal left out for too little data.
	Judged        bool     `json:"judged"`
	Critical      bool     `json:"critical"`
	Explanation   string   `json:"explanation"`
	Ratio         *float64 `json:"ratio,omitempty"`
	BaselineCount int      `json:"baseline_count"`
	CanaryCount   int      `json:"canary_count"`
	BaselineMean  *float64 `json:"baseline_mean,omitempty"`
	CanaryMean    *float64 `json:"canary_mean,omitempty"`
	Shift         *float64 `json:"shift,omitempty"`
	ShiftLower    *float64 `json:"shift_lower,omitempty"`
	ShiftUpper    *float64 `json:"shift_upper,omitempty"`
	ToleranceBand *float64 `json:"tolerance_band,omitempty"`
	Query         string   `json:"query,omitempty"`
}

// Judge judges changes with an Analyzer.
type Judge struct {
	Analyzer Analyzer
}

// PermanentError is a judgement that cannot succeed however often it is
// retried (a split whose series do not pair, a change too short to
// analyse): the change is recorded as inconclusive with the reason.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Judge judges c with cfg's signals for its service, keeping only the
// signals named in only (all when empty). ctx carries the tenant.
func (j *Judge) Judge(ctx context.Context, cfg *Config, c Change, only []string, now time.Time) (Judgement, error) {
	jd := Judgement{Change: c, JudgedAt: now.UTC(), Failing: []string{}, Comparisons: []Comparison{}}
	signals, split := cfg.For(c.Service)
	if len(only) > 0 {
		var keep []Signal
		for _, s := range signals {
			for _, o := range only {
				if s.Name == o {
					keep = append(keep, s)
				}
			}
		}
		if len(keep) < len(only) {
			return jd, &events.FieldError{Field: "signals", Rule: fmt.Sprintf("names a signal that the configuration of service %q does not have (it has %s)", c.Service, signalNames(signals))}
		}
		signals = keep
	}
	vars := map[string]string{"service": c.Service, "event_name": c.Name}
	maps.Copy(vars, c.Attributes)
	vars["service"] = c.Service

	// The queries, templated; a signal whose template needs an attribute
	// the change lacks is left out with a sentence.
	type planned struct {
		sig   Signal
		query string
	}
	var plan []planned
	for _, s := range signals {
		q, err := expand(s.Query, vars)
		if err != nil {
			jd.Explanation = append(jd.Explanation, fmt.Sprintf("%s: not judged: %v.", s.Name, err))
			continue
		}
		plan = append(plan, planned{s, q})
	}
	if d := c.End.Sub(c.Start); len(plan) > 0 && d < 20*time.Second {
		return jd, &PermanentError{fmt.Errorf("the change lasted %s; at least 20s (two steps of 10s) are needed to judge it", d)}
	}
	// The points judged lie on a grid of the step from the Unix epoch: the
	// change's start and end go down to it (the step's value at a point
	// already reads the step before it), and the baseline is the same
	// number of steps before. So the two sides of a signal are one
	// evaluation (Engine), and the judgements of neighbouring changes, and
	// a judgement again, meet the results cache on the same grid.
	step := stepFor(c.End.Sub(c.Start))
	start, end := alignDown(c.Start, step), alignDown(c.End, step)
	span := end.Sub(start)

	type comparison struct {
		kind             string
		baseline, canary string
	}
	comps := []comparison{{kind: ComparisonBeforeAfter}}
	if split != nil {
		b, errB := expand(split.Baseline, vars)
		cn, errC := expand(split.Canary, vars)
		if errB == nil && errC == nil {
			comps = append(comps, comparison{ComparisonCanaryBaseline,
				fmt.Sprintf(`{%s=%q}`, split.Label, b), fmt.Sprintf(`{%s=%q}`, split.Label, cn)})
		} else {
			jd.Explanation = append(jd.Explanation, fmt.Sprintf("canary against baseline: not judged: %v.", firstErr(errB, errC)))
		}
	}
	for _, cmp := range comps {
		if len(plan) == 0 {
			break
		}
		req := &levitatedv1.AnalyzeRequest{
			Start:      start.UTC().Format(time.RFC3339Nano),
			End:        end.UTC().Format(time.RFC3339Nano),
			Step:       strconv.FormatFloat(step.Seconds(), 'f', -1, 64),
			Baseline:   cmp.baseline,
			Canary:     cmp.canary,
			Thresholds: &levitatedv1.Thresholds{Pass: &cfg.Pass, Marginal: &cfg.Marginal},
		}
		from := start
		if cmp.kind == ComparisonBeforeAfter {
			req.BaselineOffset = strconv.FormatFloat(span.Seconds(), 'f', -1, 64)
			from = start.Add(-span)
		}
		ctx := withSpan(ctx, from, end, step)
		if cfg.Traffic != nil {
			if tq, err := expand(cfg.Traffic.Query, vars); err == nil {
				ok, sentence, warnings, err := j.enoughTraffic(ctx, req, tq, cfg.Traffic.MinRequests)
				if err != nil {
					return jd, analyzeError(cmp.kind, err)
				}
				jd.warn(warnings)
				if !ok {
					jd.Comparisons = append(jd.Comparisons, Comparison{Kind: cmp.kind, Verdict: VerdictInconclusive,
						Baseline: cmp.baseline, Canary: cmp.canary, Signals: []SignalResult{}})
					jd.Explanation = append(jd.Explanation, fmt.Sprintf("%s: not judged: %s", comparisonLabel(cmp.kind), sentence))
					continue
				}
			}
		}
		minSamples := map[string]int{}
		for _, p := range plan {
			req.Metrics = append(req.Metrics, &levitatedv1.AnalysisMetric{Name: p.sig.Name, Query: p.query, Direction: p.sig.Direction, Critical: p.sig.Critical,
				AllowedIncrease: ratio(p.sig.AllowedIncrease), AllowedDecrease: ratio(p.sig.AllowedDecrease),
				CriticalIncrease: ratio(p.sig.CriticalIncrease), CriticalDecrease: ratio(p.sig.CriticalDecrease)})
			minSamples[p.sig.Name] = p.sig.MinSamples
		}
		resp, err := j.Analyzer.Analyze(ctx, req)
		if err != nil {
			return jd, analyzeError(cmp.kind, err)
		}
		jd.warn(resp.GetWarnings())
		// Signals with too little data on either side are left out, and
		// the rest judged again without them: the judge would count them
		// as Nodata (and half of them Nodata fails the canary).
		enough := map[string]bool{}
		for _, m := range resp.GetMetrics() {
			if int(m.GetBaseline().GetCount()) >= minSamples[m.GetName()] && int(m.GetCanary().GetCount()) >= minSamples[m.GetName()] {
				enough[m.GetName()] = true
			}
		}
		first := resp
		if len(enough) > 0 && len(enough) < len(req.Metrics) {
			sub := proto.CloneOf(req)
			sub.Metrics = nil
			for _, m := range req.Metrics {
				if enough[m.GetName()] {
					sub.Metrics = append(sub.Metrics, m)
				}
			}
			if resp, err = j.Analyzer.Analyze(ctx, sub); err != nil {
				return jd, analyzeError(cmp.kind, err)
			}
			jd.warn(resp.GetWarnings())
		}
		out := Comparison{Kind: cmp.kind, Baseline: cmp.baseline, Canary: cmp.canary,
			Start: first.GetStart().AsTime(), End: first.GetEnd().AsTime(),
			BaselineStart: first.GetBaselineStart().AsTime(), BaselineEnd: first.GetBaselineEnd().AsTime()}
		if len(enough) > 0 {
			out.Verdict, out.Score = strings.ToLower(resp.GetVerdict()), resp.GetScore()
			for _, m := range resp.GetMetrics() {
				out.Signals = append(out.Signals, signalResult(m, true))
			}
		} else {
			out.Verdict = VerdictInconclusive
		}
		for _, m := range first.GetMetrics() {
			if !enough[m.GetName()] {
				r := signalResult(m, false)
				r.Explanation = notJudged(r.BaselineCount, r.CanaryCount, minSamples[m.GetName()])
				out.Signals = append(out.Signals, r)
			}
		}
		if cmp.kind == ComparisonCanaryBaseline && len(enough) == 0 {
			// The service is not split (or not during this change): only
			// the before/after comparison counts.
			jd.Explanation = append(jd.Explanation, fmt.Sprintf("canary against baseline: no signal has enough data for %s and %s; not judged.", cmp.canary, cmp.baseline))
		}
		jd.Comparisons = append(jd.Comparisons, out)
	}
	combine(&jd, cfg)
	return jd, nil
}

// warn adds the warnings not given yet.
func (jd *Judgement) warn(ws []string) {
	for _, w := range ws {
		if !slices.Contains(jd.Warnings, w) {
			jd.Warnings = append(jd.Warnings, w)
		}
	}
}

// combine sets the verdict: the lowest score of the comparisons that had
// data, classified by the thresholds; inconclusive with none. Warnings
// are said last: the verdict stands on the data that answered.
func combine(jd *Judgement, cfg *Config) {
	defer func() {
		if len(jd.Warnings) > 0 {
			jd.Explanation = append(jd.Explanation, fmt.Sprintf("The queries warned, so this is judged on the data that answered: %s.", strings.Join(jd.Warnings, "; ")))
		}
	}()
	var score *float64
	for _, c := range jd.Comparisons {
		if c.Verdict == VerdictInconclusive {
			continue
		}
		if score == nil || c.Score < *score {
			s := c.Score
			score = &s
		}
		label := comparisonLabel(c.Kind)
		if c.Kind == ComparisonBeforeAfter {
			label += " (the canary is the time after the change, the baseline the same length before it)"
		}
		var bad []string
		for _, s := range c.Signals {
			if s.Judged && s.Classification != "Pass" {
				bad = append(bad, fmt.Sprintf("%s %s: %s", s.Signal, s.Classification, s.Explanation))
				if !slices.Contains(jd.Failing, s.Signal) {
					jd.Failing = append(jd.Failing, s.Signal)
				}
			}
		}
		if len(bad) == 0 {
			jd.Explanation = append(jd.Explanation, fmt.Sprintf("%s: %s, score %g; every judged signal passes.", label, c.Verdict, c.Score))
		} else {
			jd.Explanation = append(jd.Explanation, fmt.Sprintf("%s: %s, score %g. %s", label, c.Verdict, c.Score, strings.Join(bad, " ")))
		}
	}
	if score == nil {
		jd.Verdict = VerdictInconclusive
		jd.Explanation = append(jd.Explanation, "inconclusive: no signal had enough data on both sides (is the service receiving traffic, and are its metrics written?).")
		return
	}
	jd.Score = score
	switch {
	case *score >= cfg.Pass:
		jd.Verdict = VerdictPass
	case *score >= cfg.Marginal:
		jd.Verdict = VerdictMarginal
	default:
		jd.Verdict = VerdictFail
	}
}

// Steps: 10s, or coarser to keep a side within the analysis's 11,000
// points (canaryapi's default step and maxPoints).
const (
	judgeStep      = 10 * time.Second
	judgeMaxPoints = 11000
)

// stepFor is the step of a change lasting d, in whole seconds.
func stepFor(d time.Duration) time.Duration {
	if d/judgeStep <= judgeMaxPoints {
		return judgeStep
	}
	return (d/judgeMaxPoints + time.Second - 1) / time.Second * time.Second
}

// alignDown is t down to a multiple of step since the Unix epoch.
func alignDown(t time.Time, step time.Duration) time.Time {
	ms, sm := t.UnixMilli(), step.Milliseconds()
	return time.UnixMilli(ms - ((ms%sm)+sm)%sm).UTC()
}

// ratio is nil for an unset (0) effect size.
func ratio(v float64) *float64 {
	if v == 0 {
		return nil
	}
	return &v
}

func comparisonLabel(kind string) string {
	if kind == ComparisonBeforeAfter {
		return "after against before"
	}
	return "canary against baseline"
}

// enoughTraffic asks the judge for the traffic of both sides of req (the
// request rate, summed over the points: requests) and reports whether each
// side has at least minRequests, with a sentence when not.
func (j *Judge) enoughTraffic(ctx context.Context, req *levitatedv1.AnalyzeRequest, query string, minRequests float64) (ok bool, sentence string, warnings []string, err error) {
	tr := proto.CloneOf(req)
	tr.Metrics = []*levitatedv1.AnalysisMetric{{Name: "traffic", Query: query, Direction: "either"}}
	resp, err := j.Analyzer.Analyze(ctx, tr)
	if err != nil {
		return false, "", nil, err
	}
	warnings = resp.GetWarnings()
	step, err := time.ParseDuration(resp.GetStep())
	if err != nil {
		return false, "", warnings, fmt.Errorf("traffic: the analysis answered step %q: %w", resp.GetStep(), err)
	}
	var base, canary float64
	for _, m := range resp.GetMetrics() {
		base += m.GetBaseline().GetMean() * float64(m.GetBaseline().GetCount()) * step.Seconds()
		canary += m.GetCanary().GetMean() * float64(m.GetCanary().GetCount()) * step.Seconds()
	}
	if math.IsNaN(base) {
		base = 0
	}
	if math.IsNaN(canary) {
		canary = 0
	}
	if base >= minRequests && canary >= minRequests {
		return true, "", warnings, nil
	}
	return false, fmt.Sprintf("about %.0f requests on the canary's side and %.0f on the baseline's, fewer than the %g needed on each (traffic.min_requests).", canary, base, minRequests), warnings, nil
}

// notJudged explains a signal left out of a comparison for too few points.
// The analysis' own sentence for it is not kept: it says what the
// signal's classification does to the canary (a critical signal without
// data fails it), which a signal left out does not do.
func notJudged(baseline, canary, need int) string {
	s := fmt.Sprintf("Not judged: %d baseline and %d canary points, fewer than the %d needed", baseline, canary, need)
	if baseline == 0 && canary == 0 {
		s += " (neither query returned a sample)"
	}
	return s + "; left out of this comparison."
}

func signalResult(m *levitatedv1.MetricResult, judged bool) SignalResult {
	r := SignalResult{
		Signal: m.GetName(), Labels: m.GetLabels(), Classification: m.GetClassification(), Judged: judged,
		Critical: m.GetCritical(), Explanation: m.GetExplanation(), Ratio: m.Ratio,
		BaselineCount: int(m.GetBaseline().GetCount()), CanaryCount: int(m.GetCanary().GetCount()),
		Shift: m.Shift, ShiftLower: m.ShiftLower, ShiftUpper: m.ShiftUpper, ToleranceBand: m.ToleranceBand,
		Query: m.GetCanaryQuery(),
	}
	if r.BaselineCount > 0 {
		r.BaselineMean = finite(m.GetBaseline().GetMean())
	}
	if r.CanaryCount > 0 {
		r.CanaryMean = finite(m.GetCanary().GetMean())
	}
	if !judged {
		// Left out: neither classified nor a critical failure.
		r.Classification, r.Critical = "Nodata", false
	}
	return r
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// analyzeError keeps a refused request (InvalidArgument,
// FailedPrecondition) as a PermanentError; anything else may pass later.
func analyzeError(kind string, err error) error {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition:
		return &PermanentError{fmt.Errorf("%s: %s", kind, status.Convert(err).Message())}
	}
	return fmt.Errorf("analyse %s: %w", kind, err)
}

// Inconclusive is the judgement of a change that cannot be judged.
func Inconclusive(c Change, now time.Time, reason error) Judgement {
	return Judgement{Change: c, Verdict: VerdictInconclusive, JudgedAt: now.UTC(), Failing: []string{}, Comparisons: []Comparison{},
		Explanation: []string{"inconclusive: " + reason.Error() + "."}}
}

func signalNames(ss []Signal) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
