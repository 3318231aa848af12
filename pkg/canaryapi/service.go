// Package canaryapi is levitated's native canary analysis API: gRPC
// levitated.v1.AnalysisService and its REST face, POST /api/v1/analysis.
// A request names the baseline's and the canary's series by label
// matchers, lists PromQL metrics with a direction, criticality and weight,
// and gives a time range or a change-event window; the answer, given
// synchronously, is the score, the verdict and, per metric, the
// classification with a sentence that explains it.
//
// An analysis is analysis.Analyze, the one judge pipeline (which the
// Kayenta-compatible API runs too), over this package's analysis.Source:
// each metric's query with the side's matchers added, run on levitated's
// engine (pkg/rangequery) on the step's grid. The judge runs with
// analysis.NativeOptions: Kayenta's NetflixACAJudge without the flaws its
// users report (docs/analysis.md).
// Series of the two sides are paired with the labels that tell them apart
// ignored, and an unpaired series is an error rather than a silent NaN.
package canaryapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/analysis"
	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/rangequery"
	"github.com/levitated/levitated/pkg/tenant"
)

// EventReader reads change events (*eventstore.Store).
type EventReader interface {
	Get(ctx context.Context, tenant uint32, id string) (events.Event, error)
	List(ctx context.Context, tenant uint32, q events.Query) ([]events.Event, string, error)
}

// TenantIDs maps a tenant name to its numeric id (pkg/tenant.IDs;
// *storage.DB).
type TenantIDs interface {
	TenantID(ctx context.Context, name string) (uint32, error)
}

// Options configure a Service. The zero value of a field means its default.
type Options struct {
	// QueryConcurrency is how many of one analysis's queries run at once.
	// Default 4.
	QueryConcurrency int
	// Timeout bounds one analysis. Default 2m.
	Timeout time.Duration
	// MaxBodyBytes bounds REST request bodies. Default 1 MiB.
	MaxBodyBytes int64
	// Now is the clock. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger // may be nil
	// Recorder, if set, records every analysis answered through the API
	// and the webhook (not those of Go callers of Analyze without one).
	Recorder Recorder
}

func (o *Options) ensureDefaults() {
	if o.QueryConcurrency <= 0 {
		o.QueryConcurrency = 4
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Service implements levitated.v1.AnalysisService.
type Service struct {
	levitatedv1.UnimplementedAnalysisServiceServer
	queries *rangequery.Runner
	events  EventReader
	tenants TenantIDs
	parser  parser.Parser
	opts    Options
}

// New returns the service. It runs queries with q, reads event windows from
// ev, and parses metric queries with p (levitated's PromQL parser).
func New(q *rangequery.Runner, ev EventReader, tenants TenantIDs, p parser.Parser, opts Options) *Service {
	opts.ensureDefaults()
	return &Service{queries: q, events: ev, tenants: tenants, parser: p, opts: opts}
}

// Handler is the REST face: POST /api/v1/analysis through grpc-gateway,
// strict about unknown fields, with bodies bounded by MaxBodyBytes.
func (s *Service) Handler(ctx context.Context) (http.Handler, error) {
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, requestJSON{&runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}),
		// Idempotency-Key names the analysis; the answer names it and its
		// record in Levitated-Analysis-Id and Levitated-Analysis-Event-Id.
		runtime.WithIncomingHeaderMatcher(func(k string) (string, bool) {
			if strings.EqualFold(k, "Idempotency-Key") {
				return mdIdempotencyKey, true
			}
			return runtime.DefaultHeaderMatcher(k)
		}),
		runtime.WithOutgoingHeaderMatcher(func(k string) (string, bool) {
			switch k {
			case mdAnalysisID:
				return "Levitated-Analysis-Id", true
			case mdEventID:
				return "Levitated-Analysis-Event-Id", true
			}
			return runtime.MetadataHeaderPrefix + k, true
		}))
	if err := levitatedv1.RegisterAnalysisServiceHandlerServer(ctx, mux, s); err != nil {
		return nil, fmt.Errorf("register analysis gateway: %w", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
		mux.ServeHTTP(w, r)
	}), nil
}

// analyze is one native analysis: the request validated into a plan, the
// caller's tenant and the change-event window resolved, the step chosen,
// the plan judged (analysis.Analyze) and answered.
func (s *Service) analyze(ctx context.Context, req *levitatedv1.AnalyzeRequest) (*levitatedv1.AnalyzeResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	now := s.opts.Now()
	p, err := s.validate(req, now)
	if err != nil {
		return nil, err
	}
	tid, err := tenant.ID(ctx, s.tenants)
	if err != nil {
		return nil, err
	}
	var window *levitatedv1.ResolvedWindow
	if p.window != nil {
		if window, err = s.resolveWindow(ctx, tid, p, now); err != nil {
			return nil, err
		}
	}
	step, err := chooseStep(p)
	if err != nil {
		return nil, err
	}
	bStart, bEnd := p.start.Add(-p.baselineOffset), p.end.Add(-p.baselineOffset)
	res, src, err := s.judge(ctx, p, step, bStart, bEnd)
	if err != nil {
		return nil, err
	}
	return answer(p, res, src, step, bStart, bEnd, window), nil
}

// judge runs the plan's metrics through analysis.Analyze, over a source
// whose queries are built first, so that a mistake is reported before
// anything runs, and maps the pipeline's errors to the request's fields.
func (s *Service) judge(ctx context.Context, p *plan, step time.Duration, bStart, bEnd time.Time) (analysis.CanaryJudgeResult, *source, error) {
	src := &source{queries: s.queries, step: step, exprs: make(map[string][2]string, len(p.metrics)), warnings: map[string][2][]string{}}
	cfg := analysis.CanaryConfig{Classifier: &analysis.CanaryClassifierConfig{GroupWeights: map[string]float64{}}}
	for i, m := range p.metrics {
		var exprs [2]string // baseline (control), canary (experiment)
		for j, ms := range [][]*labels.Matcher{p.baseline, p.canary} {
			var err error
			if exprs[j], err = s.withMatchers(m.query, ms); err != nil {
				return analysis.CanaryJudgeResult{}, nil, fieldErr(fmt.Sprintf("metrics[%d].query", i), "PromQL does not parse: %v", err)
			}
		}
		src.exprs[m.name] = exprs
		cfg.Metrics = append(cfg.Metrics, analysis.CanaryMetricConfig{Name: m.name, Groups: []string{m.name}, AnalysisConfigurations: m.analysis, ScopeName: scopeName})
		if m.weight > 0 {
			cfg.Classifier.GroupWeights[m.name] = m.weight
		}
	}
	scope := func(side string, start, end time.Time) analysis.CanaryScope {
		return analysis.CanaryScope{Scope: side, Start: start, End: end, Step: int64(step / time.Second)}
	}
	a, err := analysis.Analyze(ctx, src, analysis.AnalyzeRequest{
		Config:      cfg,
		Scopes:      map[string]analysis.CanaryScopePair{scopeName: {ControlScope: scope(sideBaseline, bStart, bEnd), ExperimentScope: scope(sideCanary, p.start, p.end)}},
		Thresholds:  p.thresholds,
		Mix:         analysis.MixOptions{IgnoreTags: p.ignoreLabels, RejectUnpaired: true},
		Judge:       p.judge,
		Concurrency: s.opts.QueryConcurrency,
	})
	if err != nil {
		return analysis.CanaryJudgeResult{}, nil, pipelineError(err)
	}
	return a.Result, src, nil
}

// pipelineError names the request's field in an error of
// analysis.Analyze: a query that failed, or series that do not pair.
func pipelineError(err error) error {
	var (
		qe *analysis.QueryError
		pe *analysis.PairError
	)
	switch {
	case errors.As(err, &qe):
		return queryError(fmt.Sprintf("metrics[%d].query", qe.Metric), sideOf(qe.Side), qe.Err)
	case errors.As(err, &pe):
		return fieldErr(fmt.Sprintf("metrics[%d].query", pe.Metric),
			"the baseline's and the canary's series do not pair: %v; aggregate away the labels that differ (sum by (…)), or name them in ignore_labels", pe.Err)
	}
	return err
}

// answer is the response to a judged plan: the score and verdict, the
// times analysed, and per metric its classification, the sentence that
// explains it and the queries that ran.
func answer(p *plan, res analysis.CanaryJudgeResult, src *source, step time.Duration, bStart, bEnd time.Time, window *levitatedv1.ResolvedWindow) *levitatedv1.AnalyzeResponse {
	out := &levitatedv1.AnalyzeResponse{
		Score:         float64(res.Score.Score),
		Verdict:       res.Score.Classification,
		Reason:        res.Score.ClassificationReason,
		Thresholds:    &levitatedv1.Thresholds{Pass: &p.thresholds.Pass, Marginal: &p.thresholds.Marginal},
		Start:         timestamppb.New(p.start),
		End:           timestamppb.New(p.end),
		BaselineStart: timestamppb.New(bStart),
		BaselineEnd:   timestamppb.New(bEnd),
		Step:          step.String(),
		Window:        window,
		// The queries' warnings, each once: the verdict is on the data
		// that answered (a --query.store endpoint that did not is one).
		Warnings: src.allWarnings(p.metrics),
	}
	weights := effectiveWeights(p.metrics)
	confidence := p.judge.ConfidenceLevel
	if confidence == 0 {
		confidence = analysis.ConfidenceLevel
	}
	index := map[string]int{}
	for i, m := range p.metrics {
		index[m.name] = i
	}
	for _, r := range res.Results {
		i := index[r.Name]
		a, _ := analysis.ParseMetricAnalysis(p.metrics[i].analysis) // validated
		mr := &levitatedv1.MetricResult{
			Name:           r.Name,
			Labels:         r.Tags,
			Classification: r.Classification,
			Explanation:    explain(r, a, confidence),
			Critical:       r.Critical,
			Weight:         weights[i],
			Baseline:       stats(r.ControlMetadata.Stats),
			Canary:         stats(r.ExperimentMetadata.Stats),
			BaselineQuery:  src.exprs[r.Name][0],
			CanaryQuery:    src.exprs[r.Name][1],
		}
		noData := r.Details != nil && r.Details.ShortCut == "nodata"
		if r.ResultMetadata != nil && !noData && !math.IsNaN(float64(r.ResultMetadata.Ratio)) && !math.IsInf(float64(r.ResultMetadata.Ratio), 0) {
			v := float64(r.ResultMetadata.Ratio)
			mr.Ratio = &v
		}
		if d := r.Details; d != nil && d.ShortCut == "" {
			est, lo, hi, band := float64(d.Estimate), float64(d.LowerConfidence), float64(d.UpperConfidence), float64(d.UpperBound)
			mr.Shift, mr.ShiftLower, mr.ShiftUpper, mr.ToleranceBand = finite(est), finite(lo), finite(hi), finite(band)
		}
		out.Metrics = append(out.Metrics, mr)
	}
	return out
}

// chooseStep is the request's step, or 10s, or coarser to stay within
// maxPoints points per series.
func chooseStep(p *plan) (time.Duration, error) {
	span := p.end.Sub(p.start)
	if p.step > 0 {
		if n := int64(span / p.step); n > maxPoints {
			return 0, fieldErr("step", "%s gives %d points per series from start to end, more than %d; use a larger step", p.step, n, maxPoints)
		}
		if span < 2*p.step {
			return 0, fieldErr("step", "%s leaves fewer than 2 points in the %s analysed; use a smaller step", p.step, span)
		}
		return p.step, nil
	}
	step := defaultStep
	if n := span / step; n > maxPoints {
		step = ((span/maxPoints + time.Second - 1) / time.Second) * time.Second
	}
	if span < 2*step {
		return 0, fieldErr(timeField(p), "covers %s, less than two steps of %s; analyse a longer time", span, step)
	}
	return step, nil
}

func timeField(p *plan) string {
	switch {
	case p.window != nil:
		return "window"
	case p.lookback > 0:
		return "lookback"
	}
	return "start"
}

func effectiveWeights(ms []metricPlan) []float64 {
	var sum float64
	unweighted := 0
	for _, m := range ms {
		sum += m.weight
		if m.weight == 0 {
			unweighted++
		}
	}
	out := make([]float64, len(ms))
	for i, m := range ms {
		out[i] = m.weight
		if m.weight == 0 {
			out[i] = (100 - sum) / float64(unweighted)
		}
	}
	return out
}

func stats(s analysis.MetricStatistics) *levitatedv1.SeriesStats {
	return &levitatedv1.SeriesStats{Count: int32(s.Count), Mean: float64(s.Mean), Min: float64(s.Min), Max: float64(s.Max), Stddev: float64(s.Std)}
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// queryError maps an engine error to the status the client should see.
func queryError(field, side string, err error) error {
	var (
		timeout  promql.ErrQueryTimeout
		canceled promql.ErrQueryCanceled
		tooMany  promql.ErrTooManySamples
		storage  promql.ErrStorage
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &timeout):
		return status.Errorf(codes.DeadlineExceeded, "%s: the %s query timed out: %v", field, side, err)
	case errors.Is(err, context.Canceled), errors.As(err, &canceled):
		return status.Errorf(codes.Canceled, "%s: the %s query was canceled: %v", field, side, err)
	case errors.As(err, &tooMany):
		return status.Errorf(codes.ResourceExhausted, "%s: the %s query loads too many samples (the engine's max samples): %v", field, side, err)
	case errors.As(err, &storage):
		return status.Errorf(codes.Internal, "%s: the %s query could not read the store: %v", field, side, err)
	}
	return fieldErr(field, "the %s query failed: %v", side, err)
}

// toStatus makes every error a gRPC status: errors that carry one keep it,
// context errors get theirs, the rest are Internal.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	var se interface{ GRPCStatus() *status.Status }
	switch {
	case errors.As(err, &se):
		return se.GRPCStatus().Err()
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
