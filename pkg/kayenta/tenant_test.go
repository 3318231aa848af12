package kayenta_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/tenant"
)

// TestTenantsAreSeparate: configs, executions and the data an execution
// judges belong to the tenant of the request, across a restart too.
func TestTenantsAreSeparate(t *testing.T) {
	dir := t.TempDir()
	e := openEnv(t, dir, envOptions{})
	end := time.Now().Truncate(time.Minute)
	// Tenant "blue" has a bad canary; the default tenant has the same series, healthy.
	canaryData(t, e.db, end, map[string]float64{"baseline": 0.01, "canary": 0.01})
	ctx := tenant.NewContext(context.Background(), "blue")
	app := e.db.AppenderV2(ctx)
	for ts := end.Add(-65 * time.Minute); !ts.After(end); ts = ts.Add(10 * time.Second) {
		for _, v := range []struct {
			version string
			errors  float64
		}{{"baseline", 0.01}, {"canary", 0.5}} {
			n := float64(ts.Sub(end.Add(-65*time.Minute)) / (10 * time.Second))
			for code, share := range map[string]float64{"200": 1 - v.errors, "500": v.errors} {
				ls := labels.FromStrings("__name__", "http_requests_total", "code", code, "job", "checkout", "version", v.version)
				_, err := app.Append(0, ls, 0, ts.UnixMilli(), n*500*share*(1+0.001*float64(int(n)%7)), nil, nil, promstorage.AOptions{})
				require.NoError(t, err)
			}
		}
	}
	require.NoError(t, app.Commit())

	as := func(name, method, path, body string) (int, string) {
		req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-Test-Tenant", name)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := as("blue", http.MethodPost, "/canaryConfig", checkoutConfig)
	require.Equal(t, http.StatusOK, code, body)
	id := body[strings.Index(body, `":"`)+3 : strings.LastIndex(body, `"`)]

	code, body = as("green", http.MethodGet, "/canaryConfig", "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "[]", body)
	code, _ = as("green", http.MethodGet, "/canaryConfig/"+id, "")
	require.Equal(t, http.StatusNotFound, code)
	code, _ = as("green", http.MethodPost, "/canary/"+id, argoRequest("baseline", "canary", end.Add(-time.Hour), end, 10, 95, 75))
	require.Equal(t, http.StatusNotFound, code)

	code, body = as("blue", http.MethodPost, "/canary/"+id, argoRequest("baseline", "canary", end.Add(-time.Hour), end, 10, 95, 75))
	require.Equal(t, http.StatusOK, code, body)
	exec := body[strings.Index(body, `":"`)+3 : strings.LastIndex(body, `"`)]
	code, _ = as("green", http.MethodGet, "/canary/"+exec, "")
	require.Equal(t, http.StatusNotFound, code)
	e.stop()

	// After the restart the execution runs on blue's data: only the error
	// ratio is there, and it is 50 times the baseline's.
	e = openEnv(t, dir, envOptions{run: true})
	for range 3000 {
		code, body = as("blue", http.MethodGet, "/canary/"+exec, "")
		require.Equal(t, http.StatusOK, code, body)
		if strings.Contains(body, `"complete":true`) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Contains(t, body, `"status":"succeeded"`)
	require.Contains(t, body, `"classificationReason":"The metric error-ratio was classified as High (Critical)"`)
	require.Contains(t, body, `"classificationReason":"Missing data for latency"`, "blue has no latency series")
}
