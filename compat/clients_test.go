package compat

import (
	"context"
	"testing"
	"time"

	argoprom "github.com/argoproj/argo-rollouts/metricproviders/prometheus"
	argov1alpha1 "github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	flaggerv1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	flagger "github.com/fluxcd/flagger/pkg/metrics/providers"
	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	log "github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
)

// TestClientGolang drives levitated with Prometheus' own Go API client.
func TestClientGolang(t *testing.T) {
	u, ts := startWithRollout(t)
	c, err := api.NewClient(api.Config{Address: u})
	require.NoError(t, err)
	p := promv1.NewAPI(c)
	ctx := context.Background()

	v, warn, err := p.Query(ctx, successRate, ts)
	require.NoError(t, err)
	require.Empty(t, warn)
	require.Equal(t, model.Vector{{Metric: model.Metric{}, Value: 0.99, Timestamp: model.TimeFromUnixNano(ts.UnixNano())}}, v)

	m, _, err := p.QueryRange(ctx, `http_requests_total{code="500"}`, promv1.Range{Start: ts, End: ts.Add(30 * time.Second), Step: 15 * time.Second})
	require.NoError(t, err)
	mat := m.(model.Matrix)
	require.Len(t, mat, 1)
	require.Equal(t, []model.SamplePair{
		{Timestamp: model.TimeFromUnixNano(ts.UnixNano()), Value: 10},
		{Timestamp: model.TimeFromUnixNano(ts.Add(15 * time.Second).UnixNano()), Value: 10},
		{Timestamp: model.TimeFromUnixNano(ts.Add(30 * time.Second).UnixNano()), Value: 10},
	}, mat[0].Values)

	series, _, err := p.Series(ctx, []string{`{job="checkout"}`}, ts.Add(-time.Minute), ts.Add(time.Minute))
	require.NoError(t, err)
	require.Len(t, series, 2)
	require.Equal(t, model.LabelValue("200"), series[0]["code"])

	names, _, err := p.LabelNames(ctx, nil, time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Equal(t, []string{"__name__", "code", "job", "version"}, names)
	vals, _, err := p.LabelValues(ctx, "__name__", nil, time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Equal(t, model.LabelValues{"http_requests_total"}, vals)

	md, err := p.Metadata(ctx, "", "")
	require.NoError(t, err)
	require.Equal(t, map[string][]promv1.Metadata{"http_requests_total": {{Type: "counter", Help: "Requests.", Unit: ""}}}, md)

	ex, err := p.QueryExemplars(ctx, `http_requests_total{code="500"}`, ts.Add(-time.Minute), ts.Add(time.Minute))
	require.NoError(t, err)
	require.Len(t, ex, 1)
	require.Equal(t, []promv1.Exemplar{{Labels: model.LabelSet{"trace_id": "t-500"}, Value: 10, Timestamp: model.TimeFromUnixNano(ts.UnixNano())}}, ex[0].Exemplars)

	bi, err := p.Buildinfo(ctx)
	require.NoError(t, err)
	require.Equal(t, "3.16.0", bi.Version)
	_, err = p.Runtimeinfo(ctx)
	require.NoError(t, err)
	_, err = p.Flags(ctx)
	require.NoError(t, err)
	tsdb, err := p.TSDB(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, int(tsdb.HeadStats.NumSeries))

	// Errors arrive typed as the client expects them from Prometheus.
	_, _, err = p.Query(ctx, "sum(", ts)
	var perr *promv1.Error
	require.ErrorAs(t, err, &perr)
	require.Equal(t, promv1.ErrBadData, perr.Type)
}

// TestArgoRollouts runs Argo Rollouts' own Prometheus metric provider, as
// an AnalysisRun step does, to Successful and to Failed.
func TestArgoRollouts(t *testing.T) {
	u, _ := startWithRollout(t)
	for _, tc := range []struct {
		condition string
		phase     argov1alpha1.AnalysisPhase
	}{
		{"result[0] >= 0.95", argov1alpha1.AnalysisPhaseSuccessful},
		{"result[0] >= 0.999", argov1alpha1.AnalysisPhaseFailed},
	} {
		metric := argov1alpha1.Metric{
			Name:             "success-rate",
			SuccessCondition: tc.condition,
			Provider: argov1alpha1.MetricProvider{Prometheus: &argov1alpha1.PrometheusMetric{
				Address: u, Query: successRate,
			}},
		}
		promAPI, err := argoprom.NewPrometheusAPI(metric)
		require.NoError(t, err)
		provider, err := argoprom.NewPrometheusProvider(promAPI, *log.NewEntry(log.New()), metric)
		require.NoError(t, err)
		m := provider.Run(&argov1alpha1.AnalysisRun{}, metric)
		require.Equal(t, tc.phase, m.Phase, m.Message)
		require.Equal(t, "[0.99]", m.Value)
	}
}

// TestFlagger runs Flagger's Prometheus provider: IsOnline and RunQuery.
func TestFlagger(t *testing.T) {
	u, _ := startWithRollout(t)
	p, err := flagger.NewPrometheusProvider(flaggerv1.MetricTemplateProvider{Type: "prometheus", Address: u}, nil)
	require.NoError(t, err)
	ok, err := p.IsOnline()
	require.NoError(t, err)
	require.True(t, ok)
	v, err := p.RunQuery(successRate)
	require.NoError(t, err)
	require.InDelta(t, 0.99, v, 0)
	_, err = p.RunQuery(`sum(no_such_metric)`)
	require.ErrorIs(t, err, flagger.ErrNoValuesFound)
}
