package promql

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/teststorage"
	"github.com/stretchr/testify/require"
)

func TestQueryDepth(t *testing.T) {
	for _, tc := range []struct {
		q     string
		depth int
	}{
		{`up`, 0},
		{`(up)`, 1},
		{`((((up))))`, 4},
		{`sum by (job) (rate(http_requests_total{code=~"5..", path!="/a(b"}[5m]))`, 4},
		{`a + b`, 1},
		{`a + b + c + d`, 3},
		{`-(-(-1))`, 5},
		{`- - - 1`, 3},
		{`a and b or c unless d`, 3},
		{`a AND b`, 1},
		{`a atan2 b > 1`, 2},
		{`f(a+b+c, d+e)`, 3},             // the comma starts a new argument
		{`1e-5 + 2E+3`, 1},               // exponents are not operators
		{`x{a="((((((("}`, 1},            // strings are skipped
		{"x # ((((((\n + y", 1},          // comments too
		{`x{a=~"b", c!~"d", e!="f"}`, 1}, // matchers are not operators
		{`rate(x[5m:1m])`, 3},
		{`a == b != c <= d >= e < f > g`, 6},
		{`)))`, 0}, // unbalanced: the parser reports it
	} {
		d := QueryDepth(tc.q, 0)
		require.Equal(t, tc.depth, d, tc.q)
	}
}

func TestQueryDepthBoundsTheTree(t *testing.T) {
	// QueryDepth is an upper bound of the syntax tree's depth.
	for _, q := range []string{
		`sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) / on(job) group_left sum by (job) (rate(http_requests_total[5m]))`,
		`a + b * c - d / e ^ f ^ g`,
		`-(-(-(a)))`,
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) > 0.5 and on() vector(1)`,
		`max_over_time((a + b)[1h:1m] offset 5m)`,
	} {
		expr, err := NewParser().ParseExpr(q)
		require.NoError(t, err, q)
		d := QueryDepth(q, 0)
		require.GreaterOrEqual(t, d, treeDepth(expr)-1, q)
	}
}

func treeDepth(n parser.Node) int {
	deepest := 0
	for _, c := range parser.Children(n) {
		deepest = max(deepest, treeDepth(c))
	}
	return deepest + 1
}

func TestParserRefusesBeyondLimits(t *testing.T) {
	p := Options{MaxQueryLength: 100, MaxQueryDepth: 10}.Parser()
	_, err := p.ParseExpr(strings.Repeat("(", 11) + "1" + strings.Repeat(")", 11))
	requireLimitError(t, err, "nests more than 10 levels deep", FlagMaxQueryDepth)
	_, err = p.ParseExpr(strings.Repeat("x+", 11) + "1")
	requireLimitError(t, err, "nests more than 10 levels deep", FlagMaxQueryDepth)
	_, err = p.ParseExpr(`x{a="` + strings.Repeat("a", 100) + `"}`)
	requireLimitError(t, err, "query is 107 bytes long, more than the limit of 100 bytes", FlagMaxQueryLength)
	_, err = p.ParseMetricSelector(`{a="` + strings.Repeat("a", 100) + `"}`)
	requireLimitError(t, err, "more than the limit of 100 bytes", FlagMaxQueryLength)
	_, err = p.ParseMetricSelectors([]string{`up`, `{a="` + strings.Repeat("a", 100) + `"}`})
	requireLimitError(t, err, "more than the limit of 100 bytes", FlagMaxQueryLength)

	// Within the limits, the parser answers as Prometheus' does.
	_, err = p.ParseExpr(strings.Repeat("(", 10) + "1" + strings.Repeat(")", 10))
	require.NoError(t, err)
	_, err = p.ParseExpr(`sum(`)
	var pe parser.ParseErrors
	require.ErrorAs(t, err, &pe)
	var le *LimitError
	require.False(t, errors.As(err, &le))

	// The default parser has the default limits.
	_, err = NewParser().ParseExpr(strings.Repeat("(", 1000) + "1" + strings.Repeat(")", 1000))
	requireLimitError(t, err, "more than 500 levels", FlagMaxQueryDepth)
	_, err = NewParser().ParseExpr(`x{a="` + strings.Repeat("a", 1<<20) + `"}`)
	requireLimitError(t, err, "more than the limit of 65536 bytes", FlagMaxQueryLength)
}

func requireLimitError(t *testing.T, err error, msg, flag string) {
	t.Helper()
	var le *LimitError
	require.ErrorAs(t, err, &le)
	require.ErrorContains(t, err, msg)
	require.ErrorContains(t, err, flag)
}

// TestEngineRefusesBeyondLimits: the engine's parser (and so every query
// the API, the ruler and the judge run) has the limits.
func TestEngineRefusesBeyondLimits(t *testing.T) {
	ng := newEngine(t, Options{MaxQueryDepth: 10})
	st := teststorage.New(t)
	_, err := ng.NewInstantQuery(context.Background(), st, nil, strings.Repeat("-", 11)+"1", time.Unix(0, 0))
	requireLimitError(t, err, "nests more than 10 levels deep", FlagMaxQueryDepth)
}

func TestExpandWithTemplatesChecksLimits(t *testing.T) {
	l := QueryLimits{MaxLength: 1000, MaxDepth: 5}
	_, err := ExpandWithTemplates(`WITH (x = `+strings.Repeat("(", 6)+"1"+strings.Repeat(")", 6)+`) x`, l)
	var le *LimitError
	require.ErrorAs(t, err, &le)
	require.ErrorContains(t, err, FlagMaxQueryDepth)
	out, err := ExpandWithTemplates(`WITH (x = up) x + 1`, l)
	require.NoError(t, err)
	require.Equal(t, `up + 1`, out)
}

// TestSubqueryBound: a subquery evaluated at more steps than max samples
// fails at Exec with an error naming the flag, before it is evaluated;
// one within it runs.
func TestSubqueryBound(t *testing.T) {
	opts := DefaultOptions()
	opts.Registerer = prometheus.NewRegistry()
	ng := BoundSubqueries(newEngine(t, opts), opts.MaxSamples)
	st := teststorage.New(t)
	ctx := context.Background()
	now := time.Unix(1e6, 0)

	for _, q := range []string{
		`sum_over_time(vector(1)[1d:1ms])`,
		`max_over_time(sum_over_time(vector(1)[1h:1ms])[1d:1h])`, // nested: the inner subquery spans 1d+1h
	} {
		qry, err := ng.NewInstantQuery(ctx, st, nil, q, now)
		require.NoError(t, err, q)
		res := qry.Exec(ctx)
		var se *SubqueryError
		require.ErrorAs(t, res.Err, &se, q)
		require.ErrorContains(t, res.Err, FlagMaxSamples)
		require.ErrorContains(t, res.Err, "50000000 samples")
		qry.Close()
	}

	// A range query counts its own range: [10m:1ms] is 600,001 steps,
	// over 30 days of range query far more.
	qry, err := ng.NewRangeQuery(ctx, st, nil, `sum_over_time(vector(1)[10m:1ms])`, now.Add(-30*24*time.Hour), now, time.Hour)
	require.NoError(t, err)
	var se *SubqueryError
	require.ErrorAs(t, qry.Exec(ctx).Err, &se)
	qry.Close()

	qry, err = ng.NewInstantQuery(ctx, st, nil, `sum_over_time(vector(1)[1h:1s])`, now)
	require.NoError(t, err)
	res := qry.Exec(ctx)
	require.NoError(t, res.Err)
	v, err := res.Vector()
	require.NoError(t, err)
	require.Len(t, v, 1)
	require.Equal(t, 3600.0, v[0].F)
	qry.Close()
}
