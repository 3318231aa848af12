package canaryapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFlaggerWebhook posts Flagger's webhook payload: 200 for a canary that
// passes, 412 with the reason for one that does not, 400 for a bad request.
func TestFlaggerWebhook(t *testing.T) {
	e := newEnv(t)
	end := time.Now().Truncate(time.Minute).Add(-time.Minute)
	e.data(end, map[string]float64{"stable": 0.01, "healthy": 0.01, "worse": 0.013, "bad": 0.05})
	hook := func(name string, metadata map[string]string) (int, string) {
		b, err := json.Marshal(map[string]any{"name": name, "namespace": "shop", "phase": "Progressing", "checksum": "abc", "metadata": metadata})
		require.NoError(t, err)
		resp, err := http.Post(e.url+"/api/v1/analysis:webhook", "application/json", strings.NewReader(string(b)))
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	request := fmt.Sprintf(`{"baseline": "version=\"stable\"", "canary": "version=\"${name}\"", "lookback": "30m", "end": %q,
	  "metrics": [{"name": "error-ratio", "query": %q, "direction": "increase", "critical": true, "critical_increase": 2, "weight": 50},
	              {"name": "latency", "query": "avg(request_duration_seconds)", "weight": 50}],
	  "thresholds": {"pass": 95, "marginal": 50}}`, end.Format(time.RFC3339), errorRatioQuery)

	code, body := hook("healthy", map[string]string{"request": request})
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"verdict":"Pass"`)

	code, body = hook("bad", map[string]string{"request": request})
	require.Equal(t, http.StatusPreconditionFailed, code)
	require.True(t, strings.HasPrefix(body, "canary analysis: Fail, score 0 (pass 95, marginal 50); Canary Failed: The metric error-ratio was classified as High (Critical); error-ratio: High. Canary mean 0.05"), body)

	code, body = hook("worse", map[string]string{"request": request})
	require.Equal(t, http.StatusPreconditionFailed, code, body)
	require.Contains(t, body, "canary analysis: Marginal, score 50")
	code, body = hook("worse", map[string]string{"request": request, "pass_on": "Marginal"})
	require.Equal(t, http.StatusOK, code, body)

	code, body = hook("bad", nil)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "metadata.request: is required: the analysis request as JSON (POST /api/v1/analysis body)\n", body)
	code, body = hook("bad", map[string]string{"request": `{"baseline": "a=\"b\"", "canary": "a=\"c\"", "lookback": "30m"}`})
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "metadata.request: metrics: is empty: give at least one metric to judge\n", body)
	code, body = hook("bad", map[string]string{"request": `{"nope": 1}`})
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, `unknown field "nope"`)
}
