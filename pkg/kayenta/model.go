package kayenta

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/levitated/levitated/pkg/analysis"
)

// The types in this file are Kayenta's request and response bodies
// (kayenta-core canary/CanaryExecutionRequest.java, CanaryScope.java,
// CanaryExecutionStatusResponse.java, results/CanaryResult.java), as
// Argo Rollouts' Kayenta provider and Spinnaker send and read them.

// instant is a java.time.Instant: read from an RFC 3339 string or a number
// of Unix seconds, written as Instant.toString writes it.
type instant time.Time

func (t instant) MarshalJSON() ([]byte, error) {
	return json.Marshal(javaInstant(time.Time(t)))
}

func (t *instant) UnmarshalJSON(b []byte) error {
	v, err := parseInstant(b)
	if err != nil {
		return err
	}
	*t = instant(v)
	return nil
}

// parseInstant reads what Jackson's InstantDeserializer reads: an ISO-8601
// instant ("2024-05-01T12:00:00Z", any offset, any fraction) or a number of
// seconds since the epoch, fractions allowed.
func parseInstant(b []byte) (time.Time, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return time.Time{}, fmt.Errorf("is required")
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return time.Time{}, err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not an ISO-8601 instant such as 2024-05-01T12:00:00Z", s)
		}
		return t.UTC(), nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e11 {
		return time.Time{}, fmt.Errorf("%s is neither an ISO-8601 instant nor Unix seconds", b)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
}

// javaInstant formats t as java.time.Instant.toString: UTC, seconds always,
// a fraction of 3, 6 or 9 digits only when there is one.
func javaInstant(t time.Time) string {
	t = t.UTC()
	s := t.Format("2006-01-02T15:04:05")
	ns := t.Nanosecond()
	switch {
	case ns == 0:
	case ns%1_000_000 == 0:
		s += fmt.Sprintf(".%03d", ns/1_000_000)
	case ns%1000 == 0:
		s += fmt.Sprintf(".%06d", ns/1000)
	default:
		s += fmt.Sprintf(".%09d", ns)
	}
	return s + "Z"
}

// javaDuration formats d as java.time.Duration.toString: PT1H30M, PT0.5S.
func javaDuration(d time.Duration) string {
	if d == 0 {
		return "PT0S"
	}
	var b strings.Builder
	b.WriteString("PT")
	neg := d < 0
	if neg {
		d = -d
	}
	sign := ""
	if neg {
		sign = "-"
	}
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%s%dH", sign, h)
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%s%dM", sign, m)
		d -= m * time.Minute
	}
	if d > 0 {
		s := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
		fmt.Fprintf(&b, "%s%sS", sign, s)
	}
	return b.String()
}

// scope is a validated CanaryScope.
type scope struct {
	Scope               string            `json:"scope"`
	Location            string            `json:"location"`
	Start               instant           `json:"start"`
	End                 instant           `json:"end"`
	Step                int64             `json:"step"`
	ExtendedScopeParams map[string]string `json:"extendedScopeParams"`
}

func (s scope) analysis() analysis.CanaryScope {
	return analysis.CanaryScope{
		Scope:               s.Scope,
		Location:            s.Location,
		Start:               time.Time(s.Start),
		End:                 time.Time(s.End),
		Step:                s.Step,
		ExtendedScopeParams: s.ExtendedScopeParams,
	}
}

type scopePair struct {
	ControlScope    scope `json:"controlScope"`
	ExperimentScope scope `json:"experimentScope"`
}

// executionRequest is a validated CanaryExecutionRequest, as stored and as
// the status response shows it.
type executionRequest struct {
	Scopes     map[string]scopePair                      `json:"scopes"`
	Thresholds analysis.CanaryClassifierThresholdsConfig `json:"thresholds"`
	Metadata   json.RawMessage                           `json:"metadata,omitempty"`
	SiteLocal  json.RawMessage                           `json:"siteLocal,omitempty"`
}

// duration is CanaryExecutionRequest.calculateDuration: the one duration of
// all scopes, or false if they differ.
func (r executionRequest) duration() (time.Duration, bool) {
	var d time.Duration
	n := 0
	for _, p := range r.Scopes {
		for _, s := range []scope{p.ControlScope, p.ExperimentScope} {
			sd := time.Time(s.End).Sub(time.Time(s.Start))
			if n > 0 && sd != d {
				return 0, false
			}
			d = sd
			n++
		}
	}
	return d, n > 0
}

func (r executionRequest) analysisScopes() map[string]analysis.CanaryScopePair {
	out := make(map[string]analysis.CanaryScopePair, len(r.Scopes))
	for name, p := range r.Scopes {
		out[name] = analysis.CanaryScopePair{ControlScope: p.ControlScope.analysis(), ExperimentScope: p.ExperimentScope.analysis()}
	}
	return out
}

// The wire forms keep what the client sent raw, so that validation can
// name the field of every mistake.
type wireExecutionRequest struct {
	Scopes     map[string]*wireScopePair `json:"scopes"`
	Thresholds *wireThresholds           `json:"thresholds"`
	Metadata   json.RawMessage           `json:"metadata"`
	SiteLocal  json.RawMessage           `json:"siteLocal"`
}

type wireScopePair struct {
	ControlScope    *wireScope `json:"controlScope"`
	ExperimentScope *wireScope `json:"experimentScope"`
}

type wireScope struct {
	Scope               string            `json:"scope"`
	Location            string            `json:"location"`
	Start               json.RawMessage   `json:"start"`
	End                 json.RawMessage   `json:"end"`
	Step                json.RawMessage   `json:"step"`
	ExtendedScopeParams map[string]string `json:"extendedScopeParams"`
}

type wireThresholds struct {
	Pass     json.RawMessage `json:"pass"`
	Marginal json.RawMessage `json:"marginal"`
}

// validate checks the request against the scopes the config's metrics
// need, as ExecutionMapper.buildExecution does, and beyond it: times, steps
// and thresholds Kayenta would fail on later (or never).
func (w *wireExecutionRequest) validate(cfg *analysis.CanaryConfig) (executionRequest, error) {
	var out executionRequest
	if w.Thresholds == nil {
		return out, badRequest("thresholds", "Execution request must contain thresholds")
	}
	th, err := w.Thresholds.validate()
	if err != nil {
		return out, withPrefix("thresholds", err)
	}
	out.Thresholds = th

	required := map[string]bool{}
	for _, m := range cfg.Metrics {
		if m.ScopeName != "" {
			required[m.ScopeName] = true
		}
	}
	if len(required) > 0 && len(w.Scopes) == 0 {
		return out, badRequest("scopes", "Canary metrics require scopes, but no scopes were provided in the execution request.")
	}
	var missing []string
	for _, name := range sortedKeys(required) {
		if _, ok := w.Scopes[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return out, badRequest("scopes", "Canary metrics require scopes which were not provided in the execution request: [%s]", strings.Join(missing, ", "))
	}
	out.Scopes = make(map[string]scopePair, len(w.Scopes))
	for _, name := range sortedKeys(w.Scopes) {
		p := w.Scopes[name]
		field := "scopes." + name
		if p == nil || p.ControlScope == nil || p.ExperimentScope == nil {
			return out, badRequest(field, "Canary scope for named scope %s is missing experimentScope or controlScope keys", name)
		}
		c, err := p.ControlScope.validate()
		if err != nil {
			return out, withPrefix(field+".controlScope", err)
		}
		e, err := p.ExperimentScope.validate()
		if err != nil {
			return out, withPrefix(field+".experimentScope", err)
		}
		out.Scopes[name] = scopePair{ControlScope: c, ExperimentScope: e}
	}
	out.Metadata, out.SiteLocal = nullToNil(w.Metadata), nullToNil(w.SiteLocal)
	return out, nil
}

func nullToNil(b json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(b)) == 0 || string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	return b
}

// maxScopeSteps bounds the points per series of one scope, as Prometheus'
// query_range does (11,000 points).
const maxScopeSteps = 11000

func (w *wireScope) validate() (scope, error) {
	start, err := parseInstant(w.Start)
	if err != nil {
		return scope{}, badRequest("start", "%v", err)
	}
	end, err := parseInstant(w.End)
	if err != nil {
		return scope{}, badRequest("end", "%v", err)
	}
	if !end.After(start) {
		return scope{}, badRequest("end", "%s is not after the start %s", javaInstant(end), javaInstant(start))
	}
	step, err := parseStep(w.Step)
	if err != nil {
		return scope{}, badRequest("step", "%v", err)
	}
	if n := end.Sub(start) / (time.Duration(step) * time.Second); n > maxScopeSteps {
		return scope{}, badRequest("step", "%d s gives %d points from start to end, more than %d; use a larger step", step, n, maxScopeSteps)
	}
	params := w.ExtendedScopeParams
	if params == nil {
		params = map[string]string{}
	}
	return scope{Scope: w.Scope, Location: w.Location, Start: instant(start), End: instant(end), Step: step, ExtendedScopeParams: params}, nil
}

// parseStep reads a step in seconds: a positive integer, as a number or a
// string (Jackson coerces both into Kayenta's Long).
func parseStep(b json.RawMessage) (int64, error) {
	s := strings.TrimSpace(string(b))
	if s == "" || s == "null" {
		return 0, fmt.Errorf("is required: the query resolution in seconds")
	}
	s = strings.Trim(s, `"`)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || f > math.MaxInt32 {
		return 0, fmt.Errorf("%s is not a whole number of seconds", b)
	}
	if f <= 0 {
		return 0, fmt.Errorf("must be a positive number of seconds, got %s", s)
	}
	return int64(f), nil
}

func (w *wireThresholds) validate() (analysis.CanaryClassifierThresholdsConfig, error) {
	var out analysis.CanaryClassifierThresholdsConfig
	pass, err := parseThreshold(w.Pass)
	if err != nil {
		return out, badRequest("pass", "%v", err)
	}
	marginal, err := parseThreshold(w.Marginal)
	if err != nil {
		return out, badRequest("marginal", "%v", err)
	}
	if marginal > pass {
		return out, badRequest("marginal", "%v is above pass (%v); a score between them would be both", marginal, pass)
	}
	return analysis.CanaryClassifierThresholdsConfig{Pass: pass, Marginal: marginal}, nil
}

func parseThreshold(b json.RawMessage) (float64, error) {
	s := strings.TrimSpace(string(b))
	if s == "" || s == "null" {
		return 0, fmt.Errorf("is required: a score from 0 to 100")
	}
	f, err := strconv.ParseFloat(strings.Trim(s, `"`), 64)
	if err != nil {
		return 0, fmt.Errorf("%s is not a number", s)
	}
	if !(f >= 0 && f <= 100) {
		return 0, fmt.Errorf("%s is out of range: scores are from 0 to 100", s)
	}
	return f, nil
}

// adhocRequest is the body of POST /canary (CanaryAdhocExecutionRequest).
type adhocRequest struct {
	CanaryConfig     *analysis.CanaryConfig `json:"canaryConfig"`
	ExecutionRequest *wireExecutionRequest  `json:"executionRequest"`
}

// executionResponse is CanaryExecutionResponse.
type executionResponse struct {
	CanaryExecutionID string `json:"canaryExecutionId"`
}

// configUpdateResponse is CanaryConfigUpdateResponse.
type configUpdateResponse struct {
	CanaryConfigID string `json:"canaryConfigId"`
}

// configSummary is what GET /canaryConfig lists per config, as Kayenta's
// storage services index it.
type configSummary struct {
	ID                  string   `json:"id"`
	Name                string   `json:"name"`
	UpdatedTimestamp    int64    `json:"updatedTimestamp"`
	UpdatedTimestampIso string   `json:"updatedTimestampIso"`
	Applications        []string `json:"applications"`
}

// StatusResponse is CanaryExecutionStatusResponse, what GET
// /canary/{canaryExecutionId} answers. Argo Rollouts reads complete and
// result.judgeResult.score.score.
type StatusResponse struct {
	Application               string                 `json:"application,omitempty"`
	ParentPipelineExecutionID string                 `json:"parentPipelineExecutionId,omitempty"`
	PipelineID                string                 `json:"pipelineId"`
	StageStatus               map[string]string      `json:"stageStatus"`
	Complete                  bool                   `json:"complete"`
	Status                    string                 `json:"status"`
	Exception                 *Exception             `json:"exception,omitempty"`
	Result                    *CanaryResult          `json:"result,omitempty"`
	Config                    *analysis.CanaryConfig `json:"config,omitempty"`
	CanaryConfigID            string                 `json:"canaryConfigId,omitempty"`
	CanaryExecutionRequest    *executionRequest      `json:"canaryExecutionRequest,omitempty"`
	MetricSetPairListID       string                 `json:"metricSetPairListId,omitempty"`
	BuildTimeMillis           *int64                 `json:"buildTimeMillis,omitempty"`
	BuildTimeIso              string                 `json:"buildTimeIso,omitempty"`
	StartTimeMillis           *int64                 `json:"startTimeMillis,omitempty"`
	StartTimeIso              string                 `json:"startTimeIso,omitempty"`
	EndTimeMillis             *int64                 `json:"endTimeMillis,omitempty"`
	EndTimeIso                string                 `json:"endTimeIso,omitempty"`
	StorageAccountName        string                 `json:"storageAccountName,omitempty"`
	MetricsAccountName        string                 `json:"metricsAccountName,omitempty"`
	ConfigurationAccountName  string                 `json:"configurationAccountName,omitempty"`
}

// CanaryResult is the result of a succeeded execution.
type CanaryResult struct {
	JudgeResult    analysis.CanaryJudgeResult `json:"judgeResult"`
	CanaryDuration string                     `json:"canaryDuration,omitempty"` // ISO-8601, Duration.toString
}

// Exception is the "exception" of a failed execution, shaped like the one
// Orca puts in a stage context (ExceptionHandler.Response).
type Exception struct {
	ExceptionType string           `json:"exceptionType"`
	Operation     string           `json:"operation,omitempty"`
	Details       ExceptionDetails `json:"details"`
	ShouldRetry   bool             `json:"shouldRetry"`
	Timestamp     int64            `json:"timestamp"`
}

// ExceptionDetails carries the message.
type ExceptionDetails struct {
	Error  string   `json:"error"`
	Errors []string `json:"errors"`
}

// judge is what GET /judges lists (a CanaryJudge serialized by Jackson).
type judge struct {
	Name    string `json:"name"`
	Visible bool   `json:"visible"`
}

// Credentials is one account of GET /credentials (AccountCredentials).
type Credentials struct {
	Name                 string   `json:"name"`
	Type                 string   `json:"type"`
	SupportedTypes       []string `json:"supportedTypes"`
	Locations            []string `json:"locations"`
	RecommendedLocations []string `json:"recommendedLocations"`
}

// Kayenta's account types (AccountCredentials.Type).
const (
	typeMetricsStore       = "METRICS_STORE"
	typeObjectStore        = "OBJECT_STORE"
	typeConfigurationStore = "CONFIGURATION_STORE"
)
