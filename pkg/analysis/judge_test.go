package analysis

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// A canary config as Kayenta's UI (deck-kayenta) saves it.
const kayentaConfigJSON = `{
  "createdTimestamp": 1700000000000,
  "updatedTimestamp": 1700000000000,
  "createdTimestampIso": "2023-11-14T22:13:20Z",
  "updatedTimestampIso": "2023-11-14T22:13:20Z",
  "name": "checkout",
  "id": "4b0f1d0e-5e0b-4c9a-9e0b-1f2d3c4b5a69",
  "description": "checkout service canary",
  "configVersion": "1",
  "applications": ["checkout"],
  "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
  "metrics": [
    {
      "name": "errors",
      "query": {"type": "prometheus", "serviceType": "prometheus",
                "customInlineTemplate": "PromQL:sum(rate(http_requests_total{code=~\"5..\",pod=~\"${scope}-.*\"}[1m]))"},
      "groups": ["availability"],
      "analysisConfigurations": {"canary": {"direction": "increase", "nanStrategy": "replace", "critical": true,
                                            "effectSize": {"allowedIncrease": 1.1, "criticalIncrease": 2}}},
      "scopeName": "default"
    },
    {
      "name": "latency",
      "query": {"type": "prometheus", "serviceType": "prometheus", "metricName": "request_duration_seconds"},
      "groups": ["performance"],
      "analysisConfigurations": {"canary": {"direction": "increase", "outliers": {"strategy": "remove", "outlierFactor": 3},
                                            "mustHaveData": true}},
      "scopeName": "default"
    },
    {
      "name": "cpu",
      "query": {"type": "prometheus", "serviceType": "prometheus", "metricName": "cpu_seconds_total"},
      "groups": ["performance"],
      "analysisConfigurations": {"canary": {"muted": true}},
      "scopeName": "default"
    }
  ],
  "templates": {},
  "classifier": {"groupWeights": {"availability": 60, "performance": 40},
                 "scoreThresholds": {"pass": 95, "marginal": 75}}
}`

func TestKayentaConfigUnmarshal(t *testing.T) {
	var cfg CanaryConfig
	require.NoError(t, json.Unmarshal([]byte(kayentaConfigJSON), &cfg))
	require.Equal(t, "checkout", cfg.Name)
	require.Equal(t, "NetflixACAJudge-v1.0", cfg.Judge.Name)
	require.Len(t, cfg.Metrics, 3)
	require.Equal(t, map[string]float64{"availability": 60, "performance": 40}, cfg.Classifier.GroupWeights)
	require.Equal(t, &CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}, cfg.Classifier.ScoreThresholds)
	require.JSONEq(t, `{"type": "prometheus", "serviceType": "prometheus", "metricName": "request_duration_seconds"}`, string(cfg.Metrics[1].Query))

	a, err := ParseMetricAnalysis(cfg.Metrics[0].AnalysisConfigurations)
	require.NoError(t, err)
	want := DefaultMetricAnalysis()
	want.Direction, want.NaNStrategy, want.Critical = DirectionIncrease, NaNReplace, true
	want.AllowedIncrease, want.CriticalIncrease = 1.1, 2
	require.Equal(t, want, a)

	a, err = ParseMetricAnalysis(cfg.Metrics[1].AnalysisConfigurations)
	require.NoError(t, err)
	want = DefaultMetricAnalysis()
	want.Direction, want.OutlierStrategy, want.OutlierFactor, want.MustHaveData = DirectionIncrease, OutliersRemove, 3, true
	require.Equal(t, want, a)

	// A round trip keeps Kayenta's field names and values.
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	var back CanaryConfig
	require.NoError(t, json.Unmarshal(b, &back))
	b2, err := json.Marshal(back)
	require.NoError(t, err)
	require.JSONEq(t, string(b), string(b2))
	var orig, again map[string]any
	require.NoError(t, json.Unmarshal([]byte(kayentaConfigJSON), &orig))
	require.NoError(t, json.Unmarshal(b, &again))
	require.Equal(t, orig, again)
}

func TestParseMetricAnalysis(t *testing.T) {
	for _, tc := range []struct {
		name    string
		json    string
		want    func(*MetricAnalysis)
		wantErr string
	}{
		{name: "empty", json: `{}`, want: func(*MetricAnalysis) {}},
		{name: "no canary key", json: `{"other": {"direction": "increase"}}`, want: func(*MetricAnalysis) {}},
		{name: "cles neutral effect", json: `{"canary": {"effectSize": {"measure": "cles"}}}`, want: func(a *MetricAnalysis) {
			a.EffectSize = CLES
			a.AllowedIncrease, a.AllowedDecrease, a.CriticalIncrease, a.CriticalDecrease = 0.5, 0.5, 0.5, 0.5
		}},
		{name: "unknown names take defaults, as in Kayenta",
			json: `{"canary": {"direction": "Increase", "nanStrategy": "drop", "outliers": {"strategy": "yes"}, "effectSize": {"measure": "cohen"}}}`,
			want: func(*MetricAnalysis) {}},
		{name: "a number where a name is expected is an unknown name", json: `{"canary": {"direction": 1}}`, want: func(*MetricAnalysis) {}},
		{name: "a list on the path collects, as MapUtils does", json: `{"canary": [{"direction": "increase"}]}`, want: func(*MetricAnalysis) {}},
		{name: "null flag and number are false and 0 (Scala unboxing)", json: `{"canary": {"critical": null, "effectSize": {"allowedIncrease": null}}}`,
			want: func(a *MetricAnalysis) { a.AllowedIncrease = 0 }},
		{name: "integer number", json: `{"canary": {"outliers": {"outlierFactor": 2}}}`, want: func(a *MetricAnalysis) { a.OutlierFactor = 2 }},
		{name: "decrease", json: `{"canary": {"direction": "decrease", "muted": true}}`, want: func(a *MetricAnalysis) {
			a.Direction, a.Muted = DirectionDecrease, true
		}},
		{name: "string flag", json: `{"canary": {"critical": "true"}}`, wantErr: "analysisConfigurations.canary.critical: want true or false, got a string"},
		{name: "string number", json: `{"canary": {"effectSize": {"allowedIncrease": "1.2"}}}`,
			wantErr: "analysisConfigurations.canary.effectSize.allowedIncrease: want a number, got a string"},
		{name: "null name", json: `{"canary": {"direction": null}}`, wantErr: "analysisConfigurations.canary.direction: want a string, got null"},
		{name: "list flag", json: `{"canary": [{"critical": true}]}`, wantErr: "analysisConfigurations.canary.critical: want true or false, got a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(tc.json), &m))
			got, err := ParseMetricAnalysis(m)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			want := DefaultMetricAnalysis()
			tc.want(&want)
			require.Equal(t, want, got)
		})
	}
}

func series3(c, e Series) map[string]Series { return map[string]Series{Control: c, Experiment: e} }

func TestJudgeResultJSON(t *testing.T) {
	var cfg CanaryConfig
	require.NoError(t, json.Unmarshal([]byte(kayentaConfigJSON), &cfg))
	pairs := []MetricSetPair{
		{Name: "errors", ID: "p1", Tags: map[string]string{"code": "5xx"},
			Values: series3(Series{0, 0, 0, math.NaN(), 0}, Series{0, 0, 0, 0, 0})},
		{Name: "latency", ID: "p2", Values: series3(Series{}, Series{0.2, 0.3})},
		{Name: "cpu", ID: "p3", Values: series3(Series{1, 1.1, 0.9, 1, 1.05}, Series{3, 3.1, 2.9, 3, 3.05})},
	}
	res, err := Judge(cfg, *cfg.Classifier.ScoreThresholds, pairs, Options{})
	require.NoError(t, err)

	// The statistics are what Commons Math 3.6.1's StatUtils gives on OpenJDK
	// 17 for the same arrays, digit for digit.
	b, err := json.Marshal(res)
	require.NoError(t, err)
	require.JSONEq(t, `{
	  "judgeName": "NetflixACAJudge-v1.0",
	  "results": [
	    {"name": "errors", "tags": {"code": "5xx"}, "id": "p1", "classification": "Pass",
	     "classificationReason": "The Canary and Baseline data are identical", "groups": ["availability"],
	     "experimentMetadata": {"stats": {"min": 0, "max": 0, "mean": 0, "std": 0, "count": 5}},
	     "controlMetadata": {"stats": {"min": 0, "max": 0, "mean": 0, "std": 0, "count": 5}},
	     "resultMetadata": {"ratio": 1}, "critical": false, "muted": false},
	    {"name": "latency", "id": "p2", "classification": "NodataFailMetric",
	     "classificationReason": "Missing data for latency", "groups": ["performance"],
	     "experimentMetadata": {"stats": {"min": 0.2, "max": 0.3, "mean": 0.25, "std": 0.07071067811865474, "count": 2}},
	     "controlMetadata": {"stats": {"min": 0, "max": 0, "mean": 0, "std": 0, "count": 0}},
	     "resultMetadata": {"ratio": 1}, "critical": false, "muted": false},
	    {"name": "cpu", "id": "p3", "classification": "High", "classificationReason": "cpu was classified as High",
	     "groups": ["performance"],
	     "experimentMetadata": {"stats": {"min": 2.9, "max": 3.1, "mean": 3.01, "std": 0.07416198487095667, "count": 5}},
	     "controlMetadata": {"stats": {"min": 0.9, "max": 1.1, "mean": 1.01, "std": 0.07416198487095665, "count": 5}},
	     "resultMetadata": {"ratio": 2.98019801980198}, "critical": false, "muted": true}
	  ],
	  "groupScores": [
	    {"name": "availability", "score": 100, "classification": "", "classificationReason": ""},
	    {"name": "performance", "score": 0, "classification": "", "classificationReason": ""}
	  ],
	  "score": {"score": 60, "classification": "Fail", "classificationReason": ""}
	}`, string(b))
}

func TestJudgeNaNRatioAndErrorClassification(t *testing.T) {
	cfg := CanaryConfig{
		Metrics:    []CanaryMetricConfig{{Name: "zero", Groups: []string{"g"}}, {Name: "tied", Groups: []string{"g"}}},
		Classifier: &CanaryClassifierConfig{GroupWeights: map[string]float64{}},
	}
	pairs := []MetricSetPair{
		{Name: "zero", ID: "a", Values: series3(Series{0, 0, 0, 0}, Series{5, 6, 7, 8})},
		// Both sides constant and so close to zero that Kayenta's noise (value
		// × 1e-5) underflows: every observation ties, the interval cannot be
		// computed, and Kayenta reports Error (spinnaker/kayenta#301).
		{Name: "tied", ID: "b", Values: series3(Series{2e-320, 2e-320}, Series{1e-320, 1e-320})},
	}
	res, err := Judge(cfg, CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}, pairs, Options{})
	require.NoError(t, err)
	require.Equal(t, ClassificationHigh, res.Results[0].Classification)
	require.True(t, math.IsNaN(float64(res.Results[0].ResultMetadata.Ratio)))
	require.Equal(t, ClassificationError, res.Results[1].Classification)
	require.Equal(t, "Metric Classification Failed", res.Results[1].ClassificationReason)
	require.Nil(t, res.Results[1].ResultMetadata)

	b, err := json.Marshal(res.Results)
	require.NoError(t, err)
	var generic []map[string]any
	require.NoError(t, json.Unmarshal(b, &generic))
	require.Equal(t, map[string]any{"ratio": "NaN"}, generic[0]["resultMetadata"])
	require.NotContains(t, generic[1], "resultMetadata")
	require.NotContains(t, generic[0], "Details")
}

func TestJudgeErrors(t *testing.T) {
	th := CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}
	cfg := func(conf string) CanaryConfig {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(conf), &m))
		return CanaryConfig{Metrics: []CanaryMetricConfig{{Name: "m", AnalysisConfigurations: m}}, Classifier: &CanaryClassifierConfig{}}
	}
	ok := []MetricSetPair{{Name: "m", Values: series3(Series{1, 2}, Series{3, 4})}}
	for _, tc := range []struct {
		name    string
		cfg     CanaryConfig
		th      CanaryClassifierThresholdsConfig
		pairs   []MetricSetPair
		wantErr string
	}{
		{"no metric config", cfg(`{}`), th, []MetricSetPair{{Name: "other", Values: series3(nil, nil)}},
			`metric set pair 0 ("other"): could not find metric config for other`},
		{"no experiment values", cfg(`{}`), th, []MetricSetPair{{Name: "m", Values: map[string]Series{Control: {1}}}},
			`metric set pair 0 ("m"): values.experiment is missing`},
		{"no control values", cfg(`{}`), th, []MetricSetPair{{Name: "m", Values: map[string]Series{Experiment: {1}}}},
			`metric set pair 0 ("m"): values.control is missing`},
		{"bad analysis configuration", cfg(`{"canary": {"mustHaveData": 1}}`), th, ok,
			`metric set pair 0 ("m"): metric config "m": analysisConfigurations.canary.mustHaveData: want true or false, got float64`},
		{"outlier factor", cfg(`{"canary": {"outliers": {"strategy": "remove", "outlierFactor": 0}}}`), th, ok,
			`metric set pair 0 ("m"): canary.outliers.outlierFactor must be greater than zero, got 0`},
		{"no classifier", CanaryConfig{Metrics: []CanaryMetricConfig{{Name: "m"}}}, th, ok, "canary config: classifier is missing"},
		{"NaN pass", cfg(`{}`), CanaryClassifierThresholdsConfig{Pass: math.NaN(), Marginal: 1}, ok,
			"score thresholds: pass must be a finite number, got NaN"},
		{"infinite marginal", cfg(`{}`), CanaryClassifierThresholdsConfig{Pass: 1, Marginal: math.Inf(-1)}, ok,
			"score thresholds: marginal must be a finite number, got -Inf"},
	} {
		_, err := Judge(tc.cfg, tc.th, tc.pairs, Options{})
		require.EqualError(t, err, tc.wantErr, tc.name)
	}
	// Outlier factor is only checked when outliers are removed, as in Kayenta.
	_, err := Judge(cfg(`{"canary": {"outliers": {"outlierFactor": -1}}}`), th, ok, Options{})
	require.NoError(t, err)
}

func TestThresholdsUnmarshal(t *testing.T) {
	var th CanaryClassifierThresholdsConfig
	require.NoError(t, json.Unmarshal([]byte(`{"pass": 90, "marginal": 50.5}`), &th))
	require.Equal(t, CanaryClassifierThresholdsConfig{Pass: 90, Marginal: 50.5}, th)
	require.EqualError(t, json.Unmarshal([]byte(`{"marginal": 50}`), &th), "score thresholds: pass is required")
	require.EqualError(t, json.Unmarshal([]byte(`{"pass": 50}`), &th), "score thresholds: marginal is required")
}

func TestSeriesJSON(t *testing.T) {
	var s Series
	require.NoError(t, json.Unmarshal([]byte(`[1, "NaN", null, 2.5e3, "Infinity", "-Infinity"]`), &s))
	require.Len(t, s, 6)
	require.Equal(t, 1.0, s[0])
	require.True(t, math.IsNaN(s[1]))
	require.True(t, math.IsNaN(s[2]))
	require.Equal(t, 2500.0, s[3])
	require.True(t, math.IsInf(s[4], 1))
	require.True(t, math.IsInf(s[5], -1))
	b, err := json.Marshal(s)
	require.NoError(t, err)
	require.Equal(t, `[1,"NaN","NaN",2500,"Infinity","-Infinity"]`, string(b))
	require.ErrorContains(t, json.Unmarshal([]byte(`[1, "x"]`), &s), `value 1: want a number, "NaN", "Infinity" or "-Infinity", got "x"`)
	require.Error(t, json.Unmarshal([]byte(`{"a": 1}`), &s))
}

func TestRoundHalfUp2(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{
		{0.125, 0.13}, {33.333333333333336, 33.33}, {66.66666666666667, 66.67}, {100, 100}, {99.995, 100},
		{0.005, 0.01}, {0.0049999, 0}, {1.005, 1.01}, // 1.005 prints as "1.005", so BigDecimal rounds it up
		{-0.125, -0.13}, {-0.001, math.Copysign(0, -1)}, {1e-5, 0}, {12345678.125, 12345678.13},
	} {
		got := roundHalfUp2(tc.in)
		require.Equal(t, tc.want, got, "%v", tc.in)
		require.Equal(t, math.Signbit(tc.want), math.Signbit(got), "%v", tc.in)
	}
	require.True(t, math.IsNaN(roundHalfUp2(math.NaN())))
	require.True(t, math.IsInf(roundHalfUp2(math.Inf(1)), 1))
}

func TestNoiseSeedIsReproducible(t *testing.T) {
	cfg := CanaryConfig{Metrics: []CanaryMetricConfig{{Name: "c", Groups: []string{"g"}}}, Classifier: &CanaryClassifierConfig{}}
	pairs := []MetricSetPair{{Name: "c", Values: series3(Series{1, 1, 1, 1, 1}, Series{1.5, 1.5, 1.5, 1.5, 1.5})}}
	th := CanaryClassifierThresholdsConfig{Pass: 95, Marginal: 75}
	a, err := Judge(cfg, th, pairs, Options{})
	require.NoError(t, err)
	b, err := Judge(cfg, th, pairs, Options{})
	require.NoError(t, err)
	c, err := Judge(cfg, th, pairs, Options{NoiseSeed: 42})
	require.NoError(t, err)
	require.True(t, a.Results[0].Details.NoiseAdded)
	require.Equal(t, a.Results[0].Details, b.Results[0].Details)
	require.NotEqual(t, a.Results[0].Details.Estimate, c.Results[0].Details.Estimate)
	require.Equal(t, ClassificationHigh, a.Results[0].Classification)
	require.Equal(t, ClassificationHigh, c.Results[0].Classification)
}
