package kayenta_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"
)

// TestExecutionQueuedBeforeRestartRuns: an execution accepted (200) by a
// server whose workers never got to it runs after a restart.
func TestExecutionQueuedBeforeRestartRuns(t *testing.T) {
	dir := t.TempDir()
	end := time.Now().Truncate(time.Minute)
	e := openEnv(t, dir, envOptions{})
	canaryData(t, e.db, end, map[string]float64{"baseline": 0.01, "bad": 0.05})
	var created struct{ CanaryConfigID string }
	e.ok(http.MethodPost, "/canaryConfig", checkoutConfig, &created)
	var started struct{ CanaryExecutionID string }
	e.ok(http.MethodPost, "/canary/"+created.CanaryConfigID, argoRequest("baseline", "bad", end.Add(-time.Hour), end, 10, 95, 75), &started)
	var st map[string]any
	e.ok(http.MethodGet, "/canary/"+started.CanaryExecutionID, nil, &st)
	require.Equal(t, false, st["complete"])
	require.Equal(t, "not_started", st["status"])
	e.stop()

	e = openEnv(t, dir, envOptions{run: true})
	st = e.wait(started.CanaryExecutionID)
	require.Equal(t, "succeeded", st["status"])
	score := st["result"].(map[string]any)["judgeResult"].(map[string]any)["score"].(map[string]any)
	require.Equal(t, "Fail", score["classification"])
}

// TestExecutionInterruptedByShutdownResumes: an execution running when the
// server shuts down is neither lost nor failed; it runs again after the
// restart.
func TestExecutionInterruptedByShutdownResumes(t *testing.T) {
	dir := t.TempDir()
	end := time.Now().Truncate(time.Minute)
	querying := make(chan struct{})
	var once sync.Once
	e := openEnv(t, dir, envOptions{run: true, wrap: func(q promstorage.Queryable) promstorage.Queryable {
		return blockingQueryable{started: func() { once.Do(func() { close(querying) }) }}
	}})
	canaryData(t, e.db, end, map[string]float64{"baseline": 0.01, "healthy": 0.01})
	var created struct{ CanaryConfigID string }
	e.ok(http.MethodPost, "/canaryConfig", checkoutConfig, &created)
	var started struct{ CanaryExecutionID string }
	e.ok(http.MethodPost, "/canary/"+created.CanaryConfigID, argoRequest("baseline", "healthy", end.Add(-time.Hour), end, 10, 95, 75), &started)
	<-querying
	var st map[string]any
	e.ok(http.MethodGet, "/canary/"+started.CanaryExecutionID, nil, &st)
	require.Equal(t, "running", st["status"])
	e.stop() // cancels the query in flight

	e = openEnv(t, dir, envOptions{run: true})
	st = e.wait(started.CanaryExecutionID)
	require.Equal(t, "succeeded", st["status"], st["exception"])
	score := st["result"].(map[string]any)["judgeResult"].(map[string]any)["score"].(map[string]any)
	require.Equal(t, 100.0, score["score"])
}

// blockingQueryable's selects wait until their query is cancelled.
type blockingQueryable struct{ started func() }

func (b blockingQueryable) Querier(mint, maxt int64) (promstorage.Querier, error) {
	return blockingQuerier(b), nil
}

type blockingQuerier struct{ started func() }

func (b blockingQuerier) Select(ctx context.Context, _ bool, _ *promstorage.SelectHints, _ ...*labels.Matcher) promstorage.SeriesSet {
	b.started()
	<-ctx.Done()
	return promstorage.ErrSeriesSet(ctx.Err())
}

func (blockingQuerier) LabelValues(context.Context, string, *promstorage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (blockingQuerier) LabelNames(context.Context, *promstorage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (blockingQuerier) Close() error { return nil }
