package kayenta_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCanaryConfigCRUD(t *testing.T) {
	e := openEnv(t, t.TempDir(), envOptions{run: true})

	var created struct{ CanaryConfigID string }
	e.ok(http.MethodPost, "/canaryConfig", checkoutConfig, &created)
	require.NotEmpty(t, created.CanaryConfigID)

	var cfg map[string]any
	e.ok(http.MethodGet, "/canaryConfig/"+created.CanaryConfigID, nil, &cfg)
	require.Equal(t, "checkout-canary", cfg["name"])
	require.Equal(t, created.CanaryConfigID, cfg["id"])
	require.NotEmpty(t, cfg["createdTimestampIso"])
	require.Equal(t, cfg["createdTimestamp"], cfg["updatedTimestamp"])
	require.Len(t, cfg["metrics"], 4)

	// The list Argo Rollouts reads to find the id by name.
	var list []map[string]any
	e.ok(http.MethodGet, "/canaryConfig?application=checkout&configurationAccountName=x", nil, &list)
	require.Len(t, list, 1)
	require.Equal(t, created.CanaryConfigID, list[0]["id"])
	require.Equal(t, "checkout-canary", list[0]["name"])
	require.Equal(t, []any{"checkout"}, list[0]["applications"])
	e.ok(http.MethodGet, "/canaryConfig?application=other", nil, &list)
	require.Empty(t, list)
	e.ok(http.MethodGet, "/canaryConfig?application=other,checkout", nil, &list)
	require.Len(t, list, 1)

	// The same name in the same application is refused; in another, fine.
	code, body := e.do(http.MethodPost, "/canaryConfig", checkoutConfig)
	require.Equal(t, http.StatusBadRequest, code)
	require.JSONEq(t, `{"message":"name: Canary config with name 'checkout-canary' already exists in the scope of applications [checkout].","field":"name"}`, string(body))

	// Update keeps the id and the creation time.
	cfg["description"] = "updated"
	var updated struct{ CanaryConfigID string }
	e.ok(http.MethodPut, "/canaryConfig/"+created.CanaryConfigID, cfg, &updated)
	require.Equal(t, created.CanaryConfigID, updated.CanaryConfigID)
	var again map[string]any
	e.ok(http.MethodGet, "/canaryConfig/"+created.CanaryConfigID, nil, &again)
	require.Equal(t, "updated", again["description"])
	require.Equal(t, cfg["createdTimestamp"], again["createdTimestamp"])

	code, _ = e.do(http.MethodDelete, "/canaryConfig/"+created.CanaryConfigID, nil)
	require.Equal(t, http.StatusNoContent, code)
	code, body = e.do(http.MethodGet, "/canaryConfig/"+created.CanaryConfigID, nil)
	require.Equal(t, http.StatusNotFound, code)
	require.JSONEq(t, fmt.Sprintf(`{"message":"canaryConfigId: No canary config with id '%s'.","field":"canaryConfigId"}`, created.CanaryConfigID), string(body))
	code, _ = e.do(http.MethodDelete, "/canaryConfig/"+created.CanaryConfigID, nil)
	require.Equal(t, http.StatusNotFound, code)
	code, _ = e.do(http.MethodPut, "/canaryConfig/"+created.CanaryConfigID, cfg)
	require.Equal(t, http.StatusNotFound, code)
}

func TestJudgesAndCredentials(t *testing.T) {
	e := openEnv(t, t.TempDir(), envOptions{})
	code, body := e.do(http.MethodGet, "/judges", nil)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `[{"name":"NetflixACAJudge-v1.0","visible":true}]`, string(body))
	code, body = e.do(http.MethodGet, "/credentials", nil)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `[{"name":"levitated","type":"prometheus","supportedTypes":["METRICS_STORE","OBJECT_STORE","CONFIGURATION_STORE"],"locations":[],"recommendedLocations":[]}]`, string(body))
}

// TestCanaryExecutions runs a stored config as Argo Rollouts does for a
// healthy canary, one with 1.3 times the baseline's error ratio and one
// with 5 times, and checks Kayenta's status body.
func TestCanaryExecutions(t *testing.T) {
	e := openEnv(t, t.TempDir(), envOptions{run: true})
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-time.Hour)
	canaryData(t, e.db, end, map[string]float64{"baseline": 0.01, "healthy": 0.01, "worse": 0.013, "bad": 0.05})

	var created struct{ CanaryConfigID string }
	e.ok(http.MethodPost, "/canaryConfig", checkoutConfig, &created)

	for _, tc := range []struct {
		canary         string
		score          float64
		classification string
		errorRatio     string
		critical       bool
	}{
		{"healthy", 100, "Pass", "Pass", false},
		{"worse", 75, "Marginal", "High", false},
		{"bad", 0, "Fail", "High", true},
	} {
		t.Run(tc.canary, func(t *testing.T) {
			var started struct{ CanaryExecutionID string }
			path := "/canary/" + created.CanaryConfigID + "?application=checkout&metricsAccountName=prom&configurationAccountName=cfg&storageAccountName=store"
			e.ok(http.MethodPost, path, argoRequest("baseline", tc.canary, start, end, 10, 95, 75), &started)
			require.Len(t, started.CanaryExecutionID, 26)

			st := e.wait(started.CanaryExecutionID)
			require.Equal(t, "succeeded", st["status"], st["exception"])
			require.Equal(t, "checkout", st["application"])
			require.Equal(t, started.CanaryExecutionID, st["pipelineId"])
			require.Equal(t, created.CanaryConfigID, st["canaryConfigId"])
			require.Equal(t, "prom", st["metricsAccountName"])
			require.Equal(t, "store", st["storageAccountName"])
			require.Equal(t, "cfg", st["configurationAccountName"])
			require.Equal(t, started.CanaryExecutionID, st["metricSetPairListId"])
			for _, k := range []string{"buildTimeIso", "startTimeIso", "endTimeIso"} {
				require.NotEmpty(t, st[k], k)
			}
			stages := st["stageStatus"].(map[string]any)
			require.Len(t, stages, 1+4+4+2)
			for name, s := range stages {
				require.Equal(t, "succeeded", s, name)
			}
			req := st["canaryExecutionRequest"].(map[string]any)
			require.Equal(t, map[string]any{"pass": 95.0, "marginal": 75.0}, req["thresholds"])

			result := st["result"].(map[string]any)
			require.Equal(t, "PT1H", result["canaryDuration"])
			jr := result["judgeResult"].(map[string]any)
			require.Equal(t, "NetflixACAJudge-v1.0", jr["judgeName"])
			score := jr["score"].(map[string]any)
			require.Equal(t, tc.score, score["score"], score)
			require.Equal(t, tc.classification, score["classification"])

			results := jr["results"].([]any)
			require.Len(t, results, 4)
			byName := map[string]map[string]any{}
			for _, r := range results {
				m := r.(map[string]any)
				byName[m["name"].(string)] = m
			}
			er := byName["error-ratio"]
			require.Equal(t, tc.errorRatio, er["classification"], er)
			require.Equal(t, tc.critical, er["critical"])
			for _, n := range []string{"latency", "cpu", "memory"} {
				require.Equal(t, "Pass", byName[n]["classification"], byName[n])
			}
			// Per-metric statistics: 355 to 361 points an hour at 10 s (the
			// first minute of rate() has no value for the first steps).
			for _, side := range []string{"controlMetadata", "experimentMetadata"} {
				stats := er[side].(map[string]any)["stats"].(map[string]any)
				require.InDelta(t, 361, stats["count"], 6, side)
			}
			ctrl := er["controlMetadata"].(map[string]any)["stats"].(map[string]any)
			require.InDelta(t, 0.01, ctrl["mean"], 0.001)
			if tc.canary == "bad" {
				require.Equal(t, "The metric error-ratio was classified as High (Critical)", er["classificationReason"])
				require.Equal(t, "Canary Failed: The metric error-ratio was classified as High (Critical)", score["classificationReason"])
				require.InDelta(t, 5, er["resultMetadata"].(map[string]any)["ratio"], 0.3)
			}
			if tc.canary == "worse" {
				require.Equal(t, "error-ratio was classified as High", er["classificationReason"])
			}

			// The series the judge compared.
			var pairs []map[string]any
			e.ok(http.MethodGet, "/metricSetPairList/"+started.CanaryExecutionID, nil, &pairs)
			require.Len(t, pairs, 4)
			require.Equal(t, "error-ratio", pairs[0]["name"])
		})
	}

	// The executions of the application, newest first.
	var list []map[string]any
	e.ok(http.MethodGet, "/canary/executions?application=checkout&limit=2", nil, &list)
	require.Len(t, list, 2)
	require.Equal(t, "bad", scopeOf(list[0]))
	require.Equal(t, "worse", scopeOf(list[1]))
	e.ok(http.MethodGet, "/canary/executions?application=checkout&limit=2&page=2", nil, &list)
	require.Len(t, list, 1)
	require.Equal(t, "healthy", scopeOf(list[0]))
	e.ok(http.MethodGet, "/canary/executions?application=checkout&statuses=TERMINAL", nil, &list)
	require.Empty(t, list)
	e.ok(http.MethodGet, "/canary/executions?application=checkout&statuses=succeeded,TERMINAL", nil, &list)
	require.Len(t, list, 3)
	e.ok(http.MethodGet, "/canary/executions", nil, &list)
	require.Empty(t, list, "no ad hoc executions")
}

func scopeOf(st map[string]any) string {
	req := st["canaryExecutionRequest"].(map[string]any)
	return req["scopes"].(map[string]any)["default"].(map[string]any)["experimentScope"].(map[string]any)["scope"].(string)
}

// TestAdHocExecution posts the config with the request, as Spinnaker's
// "canary analysis" stage can.
func TestAdHocExecution(t *testing.T) {
	e := openEnv(t, t.TempDir(), envOptions{run: true})
	end := time.Now().Truncate(time.Minute)
	canaryData(t, e.db, end, map[string]float64{"baseline": 0.01, "bad": 0.05})
	body := fmt.Sprintf(`{"canaryConfig": %s, "executionRequest": %s}`, checkoutConfig, argoRequest("baseline", "bad", end.Add(-30*time.Minute), end, 30, 95, 75))
	var started struct{ CanaryExecutionID string }
	e.ok(http.MethodPost, "/canary", body, &started)
	st := e.wait(started.CanaryExecutionID)
	require.Equal(t, "succeeded", st["status"])
	require.Equal(t, "ad-hoc", st["application"])
	require.Equal(t, "ad-hoc", st["canaryConfigId"])
	require.NotContains(t, st, "configurationAccountName")
	score := st["result"].(map[string]any)["judgeResult"].(map[string]any)["score"].(map[string]any)
	require.Equal(t, 0.0, score["score"])
	require.Equal(t, "PT30M", st["result"].(map[string]any)["canaryDuration"])

	var list []map[string]any
	e.ok(http.MethodGet, "/canary/executions", nil, &list)
	require.Len(t, list, 1)
	require.Equal(t, started.CanaryExecutionID, list[0]["pipelineId"])
}

// TestExecutionFailure: a query the engine cannot run ends the execution
// TERMINAL with Kayenta's exception and the failed stage.
func TestExecutionFailure(t *testing.T) {
	e := openEnv(t, t.TempDir(), envOptions{run: true})
	end := time.Now().Truncate(time.Minute)
	canaryData(t, e.db, end, map[string]float64{"baseline": 0.01, "healthy": 0.01})
	var cfg map[string]any
	require.NoError(t, json.Unmarshal([]byte(checkoutConfig), &cfg))
	// label_replace gives two series the same labels: the engine refuses
	// the result when it evaluates it.
	cfg["metrics"].([]any)[1].(map[string]any)["query"] = map[string]any{
		"type": "prometheus", "customInlineTemplate": `PromQL:label_replace(http_requests_total{version="${scope}"}, "code", "x", "", "")`}
	body, err := json.Marshal(map[string]any{"canaryConfig": cfg, "executionRequest": json.RawMessage(argoRequest("baseline", "healthy", end.Add(-time.Hour), end, 10, 95, 75))})
	require.NoError(t, err)
	var started struct{ CanaryExecutionID string }
	e.ok(http.MethodPost, "/canary", string(body), &started)
	st := e.wait(started.CanaryExecutionID)
	require.Equal(t, "terminal", st["status"])
	require.NotContains(t, st, "result")
	exc := st["exception"].(map[string]any)
	require.Contains(t, exc["details"].(map[string]any)["error"], `query control of metric "latency"`)
	stages := st["stageStatus"].(map[string]any)
	require.Equal(t, "succeeded", stages["fetchControl0"])
	require.Equal(t, "succeeded", stages["fetchExperiment0"])
	require.Equal(t, "terminal", stages["fetchControl1"])
	require.Equal(t, "not_started", stages["judge"])
}
