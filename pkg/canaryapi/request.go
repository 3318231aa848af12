package canaryapi

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/analysis"
	"github.com/levitated/levitated/pkg/events"
)

// Limits of a request.
const (
	maxMetrics     = 100
	maxPoints      = 11000 // per series, as Prometheus' query_range
	defaultStep    = 10 * time.Second
	defaultPass    = 95
	defaultMargin  = 75
	maxNameLength  = 128
	maxQueryLength = 64 << 10
)

// plan is a validated request.
type plan struct {
	baseline, canary []*labels.Matcher
	metrics          []metricPlan
	// start, end: the canary's times; resolved from the window at run time
	// when window is set.
	start, end     time.Time
	lookback       time.Duration
	window         *levitatedv1.EventWindow
	windowMatchers []*labels.Matcher
	step           time.Duration // 0: choose from the range
	baselineOffset time.Duration
	thresholds     analysis.CanaryClassifierThresholdsConfig
	ignoreLabels   []string
	judge          analysis.Options
}

type metricPlan struct {
	name     string
	query    string
	weight   float64 // 0: unweighted
	analysis map[string]any
	critical bool
}

func fieldErr(field, format string, args ...any) error {
	return &events.FieldError{Field: field, Rule: fmt.Sprintf(format, args...)}
}

// validate checks every field of req and names the first that is wrong.
func (s *Service) validate(req *levitatedv1.AnalyzeRequest, now time.Time) (*plan, error) {
	p := &plan{judge: analysis.NativeOptions()}
	var err error
	if p.baseline, err = parseSelector("baseline", req.GetBaseline()); err != nil {
		return nil, err
	}
	if p.canary, err = parseSelector("canary", req.GetCanary()); err != nil {
		return nil, err
	}

	if d := req.GetBaselineOffset(); d != "" {
		if p.baselineOffset, err = parseDuration("baseline_offset", d); err != nil {
			return nil, err
		}
	}
	if p.baselineOffset == 0 && selectorString(p.baseline) == selectorString(p.canary) {
		return nil, fieldErr("canary", "selects the same series as the baseline (%s); give the canary's and the baseline's label matchers, or a baseline_offset", selectorString(p.canary))
	}

	if err := s.validateMetrics(p, req.GetMetrics()); err != nil {
		return nil, err
	}
	if err := validateTimes(p, req, now); err != nil {
		return nil, err
	}
	if st := req.GetStep(); st != "" {
		if p.step, err = parseDuration("step", st); err != nil {
			return nil, err
		}
		if p.step < time.Second {
			return nil, fieldErr("step", "%s is less than 1s", st)
		}
	}

	p.thresholds = analysis.CanaryClassifierThresholdsConfig{Pass: defaultPass, Marginal: defaultMargin}
	if th := req.GetThresholds(); th != nil {
		if th.Pass != nil {
			p.thresholds.Pass = th.GetPass()
		}
		if th.Marginal != nil {
			p.thresholds.Marginal = th.GetMarginal()
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"thresholds.pass", p.thresholds.Pass}, {"thresholds.marginal", p.thresholds.Marginal}} {
		if !(f.v >= 0 && f.v <= 100) {
			return nil, fieldErr(f.name, "%v is out of range: scores are from 0 to 100", f.v)
		}
	}
	if p.thresholds.Marginal > p.thresholds.Pass {
		return nil, fieldErr("thresholds.marginal", "%v is above pass (%v); a score between them would be both", p.thresholds.Marginal, p.thresholds.Pass)
	}

	for i, l := range req.GetIgnoreLabels() {
		if !model.LabelName(l).IsValidLegacy() || l == labels.MetricName {
			return nil, fieldErr(fmt.Sprintf("ignore_labels[%d]", i), "%q is not a label name", l)
		}
	}
	p.ignoreLabels = req.GetIgnoreLabels()
	if len(p.ignoreLabels) == 0 {
		p.ignoreLabels = matcherNames(p.baseline, p.canary)
	}

	if req.ConfidenceLevel != nil {
		c := req.GetConfidenceLevel()
		if !(c >= 0.5 && c < 1) {
			return nil, fieldErr("confidence_level", "%v is out of range: use a level from 0.5 up to (not including) 1, such as 0.95", c)
		}
		p.judge.ConfidenceLevel = c
	}
	if req.Tolerance != nil {
		t := req.GetTolerance()
		if !(t > 0 && t <= 10) {
			return nil, fieldErr("tolerance", "%v is out of range: use a fraction above 0 and at most 10, such as 0.25", t)
		}
		p.judge.Tolerance = t
	}
	return p, nil
}

func (s *Service) validateMetrics(p *plan, metrics []*levitatedv1.AnalysisMetric) error {
	if len(metrics) == 0 {
		return fieldErr("metrics", "is empty: give at least one metric to judge")
	}
	if len(metrics) > maxMetrics {
		return fieldErr("metrics", "has %d metrics, more than %d", len(metrics), maxMetrics)
	}
	seen := map[string]bool{}
	var weightSum float64
	weighted := 0
	for i, m := range metrics {
		f := fmt.Sprintf("metrics[%d]", i)
		switch {
		case m.GetName() == "":
			return fieldErr(f+".name", "is required")
		case len(m.GetName()) > maxNameLength:
			return fieldErr(f+".name", "is longer than %d bytes", maxNameLength)
		case seen[m.GetName()]:
			return fieldErr(f+".name", "%q is used by another metric; names must be unique", m.GetName())
		case strings.TrimSpace(m.GetQuery()) == "":
			return fieldErr(f+".query", "is required: a PromQL expression")
		case len(m.GetQuery()) > maxQueryLength:
			return fieldErr(f+".query", "is longer than %d bytes", maxQueryLength)
		}
		seen[m.GetName()] = true
		if _, err := s.parser.ParseExpr(m.GetQuery()); err != nil {
			return fieldErr(f+".query", "PromQL does not parse: %v", err)
		}
		canary := map[string]any{"nanStrategy": "remove"}
		switch d := m.GetDirection(); d {
		case "", "either", "increase", "decrease":
			if d != "" {
				canary["direction"] = d
			}
		default:
			return fieldErr(f+".direction", "%q is not a direction: use \"increase\", \"decrease\" or \"either\"", d)
		}
		effect := map[string]any{}
		for _, e := range []struct {
			key   string
			set   bool
			value float64
		}{
			{"allowedIncrease", m.AllowedIncrease != nil, m.GetAllowedIncrease()},
			{"allowedDecrease", m.AllowedDecrease != nil, m.GetAllowedDecrease()},
			{"criticalIncrease", m.CriticalIncrease != nil, m.GetCriticalIncrease()},
			{"criticalDecrease", m.CriticalDecrease != nil, m.GetCriticalDecrease()},
		} {
			if !e.set {
				continue
			}
			if !(e.value > 0) || math.IsInf(e.value, 0) {
				return fieldErr(f+"."+snake(e.key), "%v is not a ratio above 0", e.value)
			}
			effect[e.key] = e.value
		}
		if len(effect) > 0 {
			canary["effectSize"] = effect
		}
		canary["critical"] = m.GetCritical()
		canary["mustHaveData"] = m.GetMustHaveData()
		if m.GetRemoveOutliers() {
			canary["outliers"] = map[string]any{"strategy": "remove"}
		}
		mp := metricPlan{name: m.GetName(), query: m.GetQuery(), analysis: map[string]any{"canary": canary}, critical: m.GetCritical()}
		if m.Weight != nil {
			w := m.GetWeight()
			if !(w > 0 && w <= 100) {
				return fieldErr(f+".weight", "%v is out of range: a weight is a share of the score above 0 and at most 100", w)
			}
			mp.weight = w
			weightSum += w
			weighted++
		}
		p.metrics = append(p.metrics, mp)
	}
	switch {
	case weightSum > 100+1e-9:
		return fieldErr("metrics", "the weights total %v, more than 100", weightSum)
	case weighted == len(metrics) && math.Abs(weightSum-100) > 1e-9:
		return fieldErr("metrics", "every metric has a weight and they total %v; they must total 100 (or leave some metrics unweighted to share the rest)", weightSum)
	case weighted < len(metrics) && weightSum >= 100-1e-9:
		return fieldErr("metrics", "the weights total %v, leaving nothing for the %d unweighted metrics", weightSum, len(metrics)-weighted)
	}
	return nil
}

func snake(s string) string {
	var b strings.Builder
	for _, r := range s {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func validateTimes(p *plan, req *levitatedv1.AnalyzeRequest, now time.Time) error {
	hasRange := req.GetStart() != "" || req.GetLookback() != ""
	switch {
	case req.GetWindow() != nil && (hasRange || req.GetEnd() != ""):
		return fieldErr("window", "give either a window or start/end/lookback, not both")
	case req.GetStart() != "" && req.GetLookback() != "":
		return fieldErr("lookback", "give either start or lookback, not both")
	case req.GetWindow() == nil && !hasRange:
		return fieldErr("start", "is required: give start (and end), lookback, or window")
	}
	if w := req.GetWindow(); w != nil {
		if w.GetEvent() == "" && w.GetEventId() == "" {
			return fieldErr("window.event", "is required: the name of the change event, such as \"canary-step\"")
		}
		ms, err := events.ParseMatchers("window.match", w.GetMatch())
		if err != nil {
			return err
		}
		p.window, p.windowMatchers = w, ms
		return nil
	}
	p.end = now
	if e := req.GetEnd(); e != "" {
		t, err := parseTime("end", e)
		if err != nil {
			return err
		}
		p.end = t
	}
	if l := req.GetLookback(); l != "" {
		d, err := parseDuration("lookback", l)
		if err != nil {
			return err
		}
		p.start = p.end.Add(-d)
		p.lookback = d
	} else {
		t, err := parseTime("start", req.GetStart())
		if err != nil {
			return err
		}
		p.start = t
	}
	if !p.end.After(p.start) {
		return fieldErr("end", "%s is not after the start %s", p.end.Format(time.RFC3339), p.start.Format(time.RFC3339))
	}
	return nil
}

// parseTime reads RFC 3339 or Unix seconds, as Prometheus' API does.
func parseTime(field, s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e11 {
			return time.Time{}, fieldErr(field, "%q is out of range", s)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fieldErr(field, "%q is neither RFC 3339 (2024-05-01T12:00:00Z) nor Unix seconds", s)
	}
	return t.UTC(), nil
}

// parseDuration reads a Prometheus duration ("30m", "1h30m") or seconds.
func parseDuration(field, s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if !(f > 0) || f > 1e9 {
			return 0, fieldErr(field, "%q is not a positive duration", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := model.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fieldErr(field, "%q is not a positive duration such as 30m or 1h30m", s)
	}
	return time.Duration(d), nil
}

// parseSelector reads label matchers, with or without braces.
func parseSelector(field, s string) ([]*labels.Matcher, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "{}" {
		return nil, nil
	}
	ms, err := events.ParseMatchers(field, []string{s})
	if err != nil {
		var fe *events.FieldError
		if errors.As(err, &fe) {
			return nil, fieldErr(field, "%s", fe.Rule)
		}
		return nil, err
	}
	for _, m := range ms {
		if m.Name == labels.MetricName {
			return nil, fieldErr(field, "matches __name__; select the side by its labels, and the metric in each query")
		}
	}
	return ms, nil
}

func selectorString(ms []*labels.Matcher) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		parts = append(parts, m.String())
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// matcherNames are the distinct label names of the matchers, in order.
func matcherNames(sets ...[]*labels.Matcher) []string {
	var out []string
	seen := map[string]bool{}
	for _, ms := range sets {
		for _, m := range ms {
			if !seen[m.Name] {
				seen[m.Name] = true
				out = append(out, m.Name)
			}
		}
	}
	return out
}
