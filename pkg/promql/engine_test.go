package promql

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"
)

func newEngine(t *testing.T, opts Options) *promql.Engine {
	t.Helper()
	ng, err := New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, ng.Close()) })
	return ng
}

// TestBuiltinPromQLTests runs Prometheus' own PromQL test files through the
// engine New builds, over Prometheus' test storage: it shows the engine
// options and parser features are the ones the files need. (Running them
// over levitated's store is pkg/storage's test.)
func TestBuiltinPromQLTests(t *testing.T) {
	opts := DefaultOptions()
	opts.Timeout = 100 * time.Second
	opts.UseStartTimestamps = true // start_timestamps.test needs it, as promqltest's own engine has it
	opts.Registerer = prometheus.NewRegistry()
	ng := newEngine(t, opts)
	promqltest.RunBuiltinTests(t, ng)
}

func TestParserAcceptsExperimentalSyntax(t *testing.T) {
	for _, q := range []string{
		`limitk(2, up)`,                   // experimental function
		`{"my.metric", "a.b"="c"}`,        // quoted UTF-8 names
		`my.metric`,                       // unquoted UTF-8 name
		`up + fill(0) (process_open_fds)`, // binop fill modifier
	} {
		_, err := NewParser().ParseExpr(q)
		require.NoError(t, err, q)
	}
}

func TestMaxSamplesError(t *testing.T) {
	ng := newEngine(t, Options{MaxSamples: 2})
	st := teststorage.New(t)
	app := st.Appender(context.Background())
	for i := range 5 {
		_, err := app.Append(0, labels.FromStrings("__name__", "m", "i", string(rune('a'+i))), 0, float64(i))
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())

	q, err := ng.NewInstantQuery(context.Background(), st, nil, "m", time.UnixMilli(0))
	require.NoError(t, err)
	defer q.Close()
	res := q.Exec(context.Background())
	var tooMany promql.ErrTooManySamples
	require.ErrorAs(t, res.Err, &tooMany)
}

func TestDefaults(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	require.Equal(t, DefaultOptions(), o)
	require.Error(t, Options{Timeout: -1, MaxConcurrency: -1}.Validate())
	_, err := New(Options{MaxSamples: -1})
	require.ErrorContains(t, err, "max samples -1 is negative")
}

func TestConcurrencyLimitWaitsForSlot(t *testing.T) {
	c := newConcurrencyLimit(1)
	require.Equal(t, 1, c.GetMaxConcurrent())
	i, err := c.Insert(context.Background(), "a")
	require.NoError(t, err)

	// The only slot is taken: a second query waits until its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Insert(ctx, "b")
		done <- err
	}()
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	// Once the slot is freed, a waiting query gets it.
	got := make(chan int, 1)
	go func() {
		j, err := c.Insert(context.Background(), "c")
		require.NoError(t, err)
		got <- j
	}()
	c.Delete(i)
	require.Equal(t, i, <-got)
}

// TestQueueWaitsForSlot shows the limit applies to the engine: while one
// query holds the only slot, the next waits for it until its context ends
// (Prometheus' engine, without the query-cost feature, returns the context's
// error, which the HTTP API reports as it does in Prometheus).
func TestQueueWaitsForSlot(t *testing.T) {
	ng := newEngine(t, Options{MaxConcurrency: 1})
	st := teststorage.New(t)

	// The first query holds the slot while its querier blocks.
	inQuerier, release := make(chan struct{}), make(chan struct{})
	blocking := storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		close(inQuerier)
		<-release
		return st.Querier(mint, maxt)
	})
	q1, err := ng.NewInstantQuery(context.Background(), blocking, nil, "m", time.UnixMilli(0))
	require.NoError(t, err)
	first := make(chan *promql.Result, 1)
	go func() { first <- q1.Exec(context.Background()) }()
	<-inQuerier

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = ng.NewInstantQuery(ctx, st, nil, "m", time.UnixMilli(0))
	require.ErrorIs(t, err, context.DeadlineExceeded)

	close(release)
	require.NoError(t, (<-first).Err)
	q1.Close()

	// With the slot free again, queries run.
	q2, err := ng.NewInstantQuery(context.Background(), st, nil, "m", time.UnixMilli(0))
	require.NoError(t, err)
	require.NoError(t, q2.Exec(context.Background()).Err)
	q2.Close()
}
