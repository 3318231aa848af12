package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/server/servertest"
)

// TestQueryRangeStats: stats=all on range queries evaluated without
// Prometheus' engine (a rollup at the top, whose statistics are one
// shared, read-only value) and with it, asked concurrently: every answer
// has its statistics, and the same data (run it with -race).
func TestQueryRangeStats(t *testing.T) {
	srv := servertest.Start(t)
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-time.Hour)
	app := srv.DB().Appender(context.Background())
	var refs [2]promstorage.SeriesRef
	for i := range 241 {
		ts := start.Add(time.Duration(i) * 15 * time.Second).UnixMilli()
		for j, code := range []string{"200", "500"} {
			var err error
			refs[j], err = app.Append(refs[j], labels.FromStrings("__name__", "reqs_total", "code", code), ts, float64(i*(j+1)))
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())

	type answer struct {
		Status string `json:"status"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
			Stats  *struct {
				Timings map[string]float64 `json:"timings"`
				Samples map[string]any     `json:"samples"`
			} `json:"stats"`
		} `json:"data"`
	}
	queries := []string{`rate(reqs_total[5m])`, `sum(rate(reqs_total[5m]))`, `reqs_total / on (code) reqs_total`}
	const each = 8
	got := make([][]answer, len(queries))
	errs := make([][]error, len(queries))
	var wg sync.WaitGroup
	for qi, q := range queries {
		got[qi], errs[qi] = make([]answer, each), make([]error, each)
		for i := range each {
			wg.Go(func() {
				form := url.Values{"query": {q}, "start": {strconv.FormatInt(start.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)}, "step": {"60"}, "stats": {"all"}}
				resp, err := http.PostForm(srv.URL+"/api/v1/query_range", form)
				if err != nil {
					errs[qi][i] = err
					return
				}
				defer resp.Body.Close()
				errs[qi][i] = json.NewDecoder(resp.Body).Decode(&got[qi][i])
			})
		}
	}
	wg.Wait()
	for qi, q := range queries {
		for i := range each {
			require.NoError(t, errs[qi][i], q)
			a := got[qi][i]
			require.Equal(t, "success", a.Status, q)
			require.NotEmpty(t, a.Data.Result, q)
			require.NotNil(t, a.Data.Stats, "%s: stats=all answers with the statistics", q)
			require.Contains(t, a.Data.Stats.Timings, "evalTotalTime", q)
			require.NotNil(t, a.Data.Stats.Samples, q)
			require.Equal(t, got[qi][0].Data.Result, a.Data.Result, q)
		}
	}
}
