package kayenta_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBadInput: every mistake gets a 4xx with Kayenta's {"message"} body
// naming the field, nothing is stored, and the server keeps answering.
func TestBadInput(t *testing.T) {
	e := openEnv(t, t.TempDir(), envOptions{run: true})
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-time.Hour)
	var created struct{ CanaryConfigID string }
	e.ok(http.MethodPost, "/canaryConfig", checkoutConfig, &created)
	good := argoRequest("baseline", "canary", start, end, 10, 95, 75)

	// config returns checkoutConfig changed by f.
	config := func(f func(cfg map[string]any)) map[string]any {
		var cfg map[string]any
		require.NoError(t, json.Unmarshal([]byte(checkoutConfig), &cfg))
		f(cfg)
		return cfg
	}
	metric := func(cfg map[string]any, i int) map[string]any { return cfg["metrics"].([]any)[i].(map[string]any) }
	adhoc := func(cfg any, req string) string {
		b, err := json.Marshal(map[string]any{"canaryConfig": cfg, "executionRequest": json.RawMessage(req)})
		require.NoError(t, err)
		return string(b)
	}
	request := func(f func(r map[string]any)) string {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(good), &r))
		f(r)
		b, err := json.Marshal(r)
		require.NoError(t, err)
		return string(b)
	}
	controlScope := func(r map[string]any) map[string]any {
		return r["scopes"].(map[string]any)["default"].(map[string]any)["controlScope"].(map[string]any)
	}

	for _, tc := range []struct {
		name, method, path string
		body               any
		code               int
		field, message     string
	}{
		{"unknown config id", "POST", "/canary/no-such-config", good, 404, "canaryConfigId", "No canary config with id 'no-such-config'."},
		{"unknown execution", "GET", "/canary/01ARZ3NDEKTSV4RRFFQ69G5FAV", nil, 404, "canaryExecutionId", "No canary execution with id '01ARZ3NDEKTSV4RRFFQ69G5FAV'."},
		{"unknown pair list", "GET", "/metricSetPairList/x", nil, 404, "metricSetPairListId", "No metric set pair list with id 'x'."},
		{"empty body", "POST", "/canary/" + created.CanaryConfigID, "", 400, "executionRequest", "the request body is empty"},
		{"not JSON", "POST", "/canary/" + created.CanaryConfigID, "{", 400, "executionRequest", "invalid JSON"},
		{"empty metric list", "POST", "/canary", adhoc(config(func(c map[string]any) { c["metrics"] = []any{} }), good), 400,
			"canaryConfig.metrics", "The canary config must specify at least one metric. Otherwise we're not analyzing anything. :)"},
		{"no config", "POST", "/canary", `{"executionRequest": {}}`, 400, "canaryConfig", "canaryConfig must be provided for ad-hoc requests"},
		{"PromQL syntax error", "POST", "/canary", adhoc(config(func(c map[string]any) {
			metric(c, 3)["query"] = map[string]any{"type": "prometheus", "customInlineTemplate": `PromQL:avg(process_memory_bytes{version="${scope}"}`}
		}), good), 400, "canaryConfig.metrics[3].query", `PromQL "avg(process_memory_bytes{version=\"baseline\"}" is not a valid range query: 1:45: parse error: unclosed left parenthesis`},
		{"unknown template variable", "POST", "/canary", adhoc(config(func(c map[string]any) {
			metric(c, 3)["query"] = map[string]any{"type": "prometheus", "customInlineTemplate": `PromQL:avg(x{v="${sope}"})`}
		}), good), 400, "canaryConfig.metrics[3].query.customInlineTemplate", "Cannot resolve variable 'sope'"},
		{"unsupported store", "POST", "/canaryConfig", config(func(c map[string]any) {
			metric(c, 0)["query"] = map[string]any{"type": "datadog", "metricName": "x"}
		}), 400, "metrics[0].query.type", `"datadog" is not supported`},
		{"thresholds out of range", "POST", "/canary/" + created.CanaryConfigID, argoRequest("baseline", "canary", start, end, 10, 195, 75), 400,
			"thresholds.pass", "195 is out of range: scores are from 0 to 100"},
		{"marginal above pass", "POST", "/canary/" + created.CanaryConfigID, argoRequest("baseline", "canary", start, end, 10, 75, 95), 400,
			"thresholds.marginal", "95 is above pass (75)"},
		{"negative marginal", "POST", "/canary/" + created.CanaryConfigID, argoRequest("baseline", "canary", start, end, 10, 75, -1), 400,
			"thresholds.marginal", "-1 is out of range"},
		{"no thresholds", "POST", "/canary/" + created.CanaryConfigID, request(func(r map[string]any) { delete(r, "thresholds") }), 400,
			"thresholds", "Execution request must contain thresholds"},
		{"threshold not a number", "POST", "/canary/" + created.CanaryConfigID, request(func(r map[string]any) { r["thresholds"] = map[string]any{"pass": "high", "marginal": 1} }), 400,
			"thresholds.pass", `"high" is not a number`},
		{"weights over 100", "POST", "/canaryConfig", config(func(c map[string]any) {
			c["name"] = "other"
			c["classifier"] = map[string]any{"groupWeights": map[string]any{"errors": 60, "latency": 60}}
		}), 400, "classifier.groupWeights", "the weights total 120; they may total at most 100"},
		{"weights over 100, ad hoc", "POST", "/canary", adhoc(config(func(c map[string]any) {
			c["classifier"] = map[string]any{"groupWeights": map[string]any{"errors": 101}}
		}), good), 400, "canaryConfig.classifier.groupWeights.errors", "weight 101 is out of range"},
		{"no classifier", "POST", "/canary", adhoc(config(func(c map[string]any) { delete(c, "classifier") }), good), 400, "canaryConfig.classifier", "is required"},
		{"missing scope", "POST", "/canary/" + created.CanaryConfigID, request(func(r map[string]any) { r["scopes"] = map[string]any{"other": r["scopes"].(map[string]any)["default"]} }), 400,
			"scopes", "Canary metrics require scopes which were not provided in the execution request: [default]"},
		{"no experiment scope", "POST", "/canary/" + created.CanaryConfigID, request(func(r map[string]any) {
			delete(r["scopes"].(map[string]any)["default"].(map[string]any), "experimentScope")
		}), 400, "scopes.default", "Canary scope for named scope default is missing experimentScope or controlScope keys"},
		{"no step", "POST", "/canary/" + created.CanaryConfigID, request(func(r map[string]any) { delete(controlScope(r), "step") }), 400,
			"scopes.default.controlScope.step", "is required"},
		{"zero step", "POST", "/canary/" + created.CanaryConfigID, request(func(r map[string]any) { controlScope(r)["step"] = 0 }), 400,
			"scopes.default.controlScope.step", "must be a positive number of seconds"},
		{"fractional step", "POST", "/canary/" + created.CanaryConfigID, request(func(r map[string]any) { controlScope(r)["step"] = 0.5 }), 400,
			"scopes.default.controlScope.step", "0.5 is not a whole number of seconds"},
		{"too many steps", "POST", "/canary/" + created.CanaryConfigID, argoRequest("baseline", "canary", end.Add(-24*time.Hour), end, 1, 95, 75), 400,
			"scopes.default.controlScope.step", "1 s gives 86400 points from start to end, more than 11000; use a larger step"},
		{"end before start", "POST", "/canary/" + created.CanaryConfigID, request(func(r map[string]any) { controlScope(r)["end"] = start.Add(-time.Minute).Format(time.RFC3339) }), 400,
			"scopes.default.controlScope.end", "is not after the start"},
		{"time without zone", "POST", "/canary/" + created.CanaryConfigID, request(func(r map[string]any) { controlScope(r)["start"] = "2024-01-01T00:00:00" }), 400,
			"scopes.default.controlScope.start", `"2024-01-01T00:00:00" is not an ISO-8601 instant`},
		{"no start", "POST", "/canary/" + created.CanaryConfigID, request(func(r map[string]any) { delete(controlScope(r), "start") }), 400,
			"scopes.default.controlScope.start", "is required"},
		{"bad analysis setting", "POST", "/canaryConfig", config(func(c map[string]any) {
			c["name"] = "other"
			metric(c, 0)["analysisConfigurations"] = map[string]any{"canary": map[string]any{"critical": "yes"}}
		}), 400, "metrics[0].analysisConfigurations.canary.critical", "want true or false, got a string"},
		{"unknown judge", "POST", "/canaryConfig", config(func(c map[string]any) {
			c["name"] = "other"
			c["judge"] = map[string]any{"name": "dredd-v1.0"}
		}), 400, "judge.name", "Unable to resolve canary judge 'dredd-v1.0'"},
		{"no name", "POST", "/canaryConfig", config(func(c map[string]any) { delete(c, "name") }), 400, "name", "Canary config must specify a name."},
		{"bad name", "POST", "/canaryConfig", config(func(c map[string]any) { c["name"] = "a b" }), 400, "name", "Canary config cannot be named 'a b'."},
		{"no application", "POST", "/canaryConfig", config(func(c map[string]any) { c["name"] = "x"; delete(c, "applications") }), 400, "applications", "at least one application"},
		{"duplicate metric", "POST", "/canaryConfig", config(func(c map[string]any) {
			c["name"] = "x"
			metric(c, 1)["name"] = "error-ratio"
		}), 400, "metrics[1].name", "Metric config name must be unique. 'error-ratio' is duplicated."},
		{"metrics of the wrong type", "POST", "/canaryConfig", `{"name": "x", "applications": ["a"], "metrics": {}}`, 400, "metrics", "want a list, got a JSON object"},
		{"no scope name", "POST", "/canary", adhoc(config(func(c map[string]any) { delete(metric(c, 2), "scopeName") }), good), 400,
			"canaryConfig.metrics[2].scopeName", "Canary scope for metric named 'cpu' is null."},
		{"bad limit", "GET", "/canary/executions?limit=-1", nil, 400, "limit", `"-1" is not a positive integer`},
		{"bad status", "GET", "/canary/executions?statuses=DONE", nil, 400, "statuses", `"DONE" is not an execution status`},
		{"too large", "POST", "/canaryConfig", `{"name":"` + strings.Repeat("a", 5<<20) + `"}`, 413, "", "the request body is larger than 4194304 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.do(tc.method, tc.path, tc.body)
			require.Equal(t, tc.code, code, string(body))
			var got struct{ Message, Field string }
			require.NoError(t, json.Unmarshal(body, &got), string(body))
			require.Equal(t, tc.field, got.Field, got.Message)
			if tc.field != "" {
				require.True(t, strings.HasPrefix(got.Message, tc.field+": "), got.Message)
			}
			require.Contains(t, got.Message, tc.message)
		})
	}

	// Nothing was stored: one config, no executions.
	var list []map[string]any
	e.ok(http.MethodGet, "/canaryConfig", nil, &list)
	require.Len(t, list, 1)
	e.ok(http.MethodGet, "/canary/executions", nil, &list)
	require.Empty(t, list)
	e.ok(http.MethodGet, "/canary/executions?application=kayenta-levitated", nil, &list)
	require.Empty(t, list)
}

// TestScopeWithNoData: a scope that matches nothing is not an error; its
// metrics are Nodata, as Kayenta documents, and with half or more of them
// Nodata the canary fails.
func TestScopeWithNoData(t *testing.T) {
	e := openEnv(t, t.TempDir(), envOptions{run: true})
	end := time.Now().Truncate(time.Minute)
	canaryData(t, e.db, end, map[string]float64{"baseline": 0.01})
	var created struct{ CanaryConfigID string }
	e.ok(http.MethodPost, "/canaryConfig", checkoutConfig, &created)
	var started struct{ CanaryExecutionID string }
	e.ok(http.MethodPost, "/canary/"+created.CanaryConfigID, argoRequest("baseline", "no-such-version", end.Add(-time.Hour), end, 10, 95, 75), &started)
	st := e.wait(started.CanaryExecutionID)
	require.Equal(t, "succeeded", st["status"])
	jr := st["result"].(map[string]any)["judgeResult"].(map[string]any)
	for _, r := range jr["results"].([]any) {
		m := r.(map[string]any)
		require.Equal(t, "Nodata", m["classification"], m["name"])
		require.Equal(t, fmt.Sprintf("Missing data for %s", m["name"]), m["classificationReason"])
		require.Equal(t, 0.0, m["experimentMetadata"].(map[string]any)["stats"].(map[string]any)["count"])
	}
	// The critical error ratio without data fails the canary first.
	score := jr["score"].(map[string]any)
	require.Equal(t, 0.0, score["score"])
	require.Equal(t, "Canary Failed: Missing data for error-ratio", score["classificationReason"])
}
