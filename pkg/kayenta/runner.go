package kayenta

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/levitated/levitated/pkg/analysis"
	"github.com/levitated/levitated/pkg/rangequery"
	"github.com/levitated/levitated/pkg/tenant"
)

// Stage reference ids of Kayenta's canary pipeline (CanaryStageNames),
// reported in stageStatus.
const (
	stageSetup           = "setupContext"
	stageFetchControl    = "fetchControl"
	stageFetchExperiment = "fetchExperiment"
	stageMix             = "mixMetrics"
	stageJudge           = "judge"
)

// execute runs one queued execution to its end and stores the outcome. If
// ctx ends first, it leaves the execution queued for the next start.
func (s *Service) execute(ctx context.Context, j job) {
	log := s.opts.Logger.With("execution", j.id)
	e, err := s.getExecution(j.tid, j.id)
	if errors.Is(err, errNotFound) {
		log.Warn("queued canary execution has no record; dropping it")
		if err := s.ns.Delete(pendingKey(j.tid, j.id), true); err != nil {
			log.Error("drop queued canary execution", "err", err)
		}
		return
	}
	if err != nil {
		log.Error("read canary execution", "err", err)
		return
	}
	if complete(e.Status) {
		if err := s.finishExecution(j.tid, &e, nil); err != nil {
			log.Error("dequeue canary execution", "err", err)
		}
		return
	}

	started := s.opts.Now()
	e.Status = statusRunning
	if e.StartTime == 0 {
		e.StartTime = started.UnixMilli()
	}
	e.Attempts++
	if err := s.updateExecution(j.tid, &e); err != nil {
		log.Error("mark canary execution running", "err", err)
		return
	}

	ectx, cancel := context.WithTimeout(tenant.NewContext(ctx, e.Tenant), s.opts.ExecutionTimeout)
	defer cancel()
	src := &source{queries: s.queries, cfg: &e.Config, scopeLabel: s.opts.ScopeLabel}
	res, err := analysis.Analyze(ectx, src, analysis.AnalyzeRequest{
		Config:     e.Config,
		Scopes:     e.Request.analysisScopes(),
		Thresholds: e.Request.Thresholds,
	})
	if err != nil && ctx.Err() != nil {
		log.Info("canary execution interrupted by shutdown; it runs again after the restart")
		return
	}
	now := s.opts.Now()
	e.EndTime = now.UnixMilli()
	if err != nil {
		e.Status = statusTerminal
		e.FailedStage = failedStage(err)
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("the execution did not finish within %v (kayenta execution timeout): %w", s.opts.ExecutionTimeout, err)
		}
		e.Exception = newException(err, e.EndTime)
	} else {
		e.Status = statusSucceeded
		e.Result = &res.Result
		e.HasPairs = true
	}
	if err := s.recordOutcome(ctx, &e); err != nil {
		// The execution's own result stands; only its history is missing.
		s.metrics.recordErrors.Inc()
		log.Error("record canary execution as a change_analysis event", "err", err)
	}
	if err := s.finishExecution(j.tid, &e, res.MetricSetPairs); err != nil {
		log.Error("store canary result", "err", err)
		return
	}
	s.metrics.finished.WithLabelValues(lower(e.Status)).Inc()
	s.metrics.duration.Observe(now.Sub(started).Seconds())
}

// failedStage is the stage of Kayenta's pipeline that err, an error of
// analysis.Analyze, ended the execution in.
func failedStage(err error) string {
	var (
		qe *analysis.QueryError
		pe *analysis.PairError
	)
	switch {
	case errors.As(err, &qe) && qe.Side == analysis.Control:
		return stageFetchControl + strconv.Itoa(qe.Metric)
	case errors.As(err, &qe):
		return stageFetchExperiment + strconv.Itoa(qe.Metric)
	case errors.As(err, &pe):
		return stageMix
	case strings.HasPrefix(err.Error(), "judge:"):
		return stageJudge
	}
	return stageSetup // the config: no metrics, a scope missing
}

func newException(err error, at int64) *Exception {
	msg := err.Error()
	typ := "IllegalArgumentException"
	var qe *rangequery.Error
	if errors.As(err, &qe) {
		typ = "QueryException"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		typ = "TimeoutException"
	}
	return &Exception{
		ExceptionType: typ,
		Details:       ExceptionDetails{Error: msg, Errors: []string{msg}},
		Timestamp:     at,
	}
}

// stages lists the stage reference ids of an execution with n metrics in
// pipeline order.
func stages(n int) []string {
	out := []string{stageSetup}
	for i := range n {
		out = append(out, stageFetchControl+strconv.Itoa(i))
	}
	for i := range n {
		out = append(out, stageFetchExperiment+strconv.Itoa(i))
	}
	return append(out, stageMix, stageJudge)
}

// status renders e as Kayenta's CanaryExecutionStatusResponse
// (ExecutionMapper.fromExecution).
func (e *execution) status() StatusResponse {
	r := StatusResponse{
		Application:               e.Application,
		ParentPipelineExecutionID: e.ParentPipelineExecutionID,
		PipelineID:                e.ID,
		StageStatus:               map[string]string{},
		Complete:                  complete(e.Status),
		Status:                    lower(e.Status),
		Exception:                 e.Exception,
		Config:                    &e.Config,
		CanaryConfigID:            e.CanaryConfigID,
		CanaryExecutionRequest:    &e.Request,
		StorageAccountName:        e.StorageAccountName,
		MetricsAccountName:        e.MetricsAccountName,
		ConfigurationAccountName:  e.ConfigurationAccountName,
	}
	if e.HasPairs {
		r.MetricSetPairListID = e.ID
	}
	setTime := func(ms int64, millis **int64, iso *string) {
		if ms != 0 {
			v := ms
			*millis = &v
			*iso = javaInstant(time.UnixMilli(ms))
		}
	}
	setTime(e.BuildTime, &r.BuildTimeMillis, &r.BuildTimeIso)
	setTime(e.StartTime, &r.StartTimeMillis, &r.StartTimeIso)
	setTime(e.EndTime, &r.EndTimeMillis, &r.EndTimeIso)

	state := "not_started"
	switch e.Status {
	case statusSucceeded:
		state = "succeeded"
	case statusRunning:
		state = "running"
	}
	for _, st := range stages(len(e.Config.Metrics)) {
		switch {
		case e.Status == statusTerminal:
			r.StageStatus[st] = stageState(st, e.FailedStage)
		case e.Status == statusRunning && st == stageSetup:
			r.StageStatus[st] = "succeeded"
		default:
			r.StageStatus[st] = state
		}
	}
	if e.Status == statusSucceeded && e.Result != nil {
		cr := &CanaryResult{JudgeResult: *e.Result}
		if d, ok := e.Request.duration(); ok {
			cr.CanaryDuration = javaDuration(d)
		}
		r.Result = cr
	}
	return r
}

// stageState is the state of stage st of an execution that failed in
// stage failed: the stages it ran before are succeeded, the rest
// not_started.
func stageState(st, failed string) string {
	if st == failed {
		return "terminal"
	}
	order := func(stage string) (int, int) { // (metric, step) in the order Analyze runs them
		switch {
		case stage == stageSetup:
			return -1, 0
		case strings.HasPrefix(stage, stageFetchControl):
			i, _ := strconv.Atoi(strings.TrimPrefix(stage, stageFetchControl))
			return i, 0
		case strings.HasPrefix(stage, stageFetchExperiment):
			i, _ := strconv.Atoi(strings.TrimPrefix(stage, stageFetchExperiment))
			return i, 1
		case stage == stageMix:
			return math.MaxInt, 0
		}
		return math.MaxInt, 1
	}
	sm, ss := order(st)
	fm, fs := order(failed)
	if sm < fm || (sm == fm && ss < fs) {
		return "succeeded"
	}
	return "not_started"
}

func lower(status string) string {
	b := []byte(status)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
