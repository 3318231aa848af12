package kayenta

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/analysis"
)

// TestBuildQueryKayentaSpec ports kayenta-prometheus
// PrometheusMetricsServiceSpec.groovy, "Can dry-run query generation", row
// by row.
func TestBuildQueryKayentaSpec(t *testing.T) {
	templates := map[string]string{
		"someTemplate":    "some-label=${scope}",
		"anotherTemplate": "my-server-group=${scope}",
	}
	for i, tc := range []struct {
		labelBindings        []string
		customFilterTemplate string
		customInlineTemplate string
		resourceType         string
		scope                string
		extendedScopeParams  map[string]string
		want                 string
	}{
		// Paved-road composition.
		{[]string{"a=b"}, "", "", "gce_instance", "some-server-group", nil, `avg(some-metric-name{a=b,instance=~"some-server-group-.{4}",zone=~".+/zones/us-central1-.{1}"})`},
		{[]string{"a=b"}, "", "", "aws_ec2_instance", "some-server-group", nil, `avg(some-metric-name{a=b,asg_groupName="some-server-group",zone=~"us-central1.{1}"})`},
		// Custom filters and custom filter templates.
		{[]string{"a=b"}, "someTemplate", "", "gce_instance", "some-app-canary", nil, "avg(some-metric-name{some-label=some-app-canary,a=b})"},
		{[]string{"a=b"}, "someTemplate", "customFilter=something,andSomething=else", "gce_instance", "", nil, "avg(some-metric-name{customFilter=something,andSomething=else,a=b})"},
		{[]string{"a=b"}, "", "customFilter=something,andSomething=else", "gce_instance", "", nil, "avg(some-metric-name{customFilter=something,andSomething=else,a=b})"},
		{[]string{"a=b"}, "", "customFilter=something,andSomething=else", "aws_ec2_instance", "", nil, "avg(some-metric-name{customFilter=something,andSomething=else,a=b})"},
		{[]string{"a=b"}, "", "customFilter=something,andSomething=else", "anything_else", "", nil, "avg(some-metric-name{customFilter=something,andSomething=else,a=b})"},
		{[]string{"a=b"}, "anotherTemplate", "", "", "some-baseline", nil, "avg(some-metric-name{my-server-group=some-baseline,a=b})"},
		{[]string{"a=b"}, "anotherTemplate", "", "", "some-canary", nil, "avg(some-metric-name{my-server-group=some-canary,a=b})"},
		// Fully specified PromQL, with template expansion.
		{nil, "", `PromQL:histogram_quantile(0.5, prometheus_http_response_size_bytes_bucket{instance="localhost:9090",handler="/graph"})`, "", "", nil,
			`histogram_quantile(0.5, prometheus_http_response_size_bytes_bucket{instance="localhost:9090",handler="/graph"})`},
		{nil, "", `PromQL:histogram_quantile(0.5, prometheus_http_response_size_bytes_bucket{instance="localhost:9090",handler="${scope}"})`, "", "/graph", nil,
			`histogram_quantile(0.5, prometheus_http_response_size_bytes_bucket{instance="localhost:9090",handler="/graph"})`},
		{nil, "", `PromQL:histogram_quantile(${quantile}, prometheus_http_response_size_bytes_bucket{instance="localhost:9090",handler="${scope}"})`, "", "/graph", map[string]string{"quantile": "0.99"},
			`histogram_quantile(0.99, prometheus_http_response_size_bytes_bucket{instance="localhost:9090",handler="/graph"})`},
		// levitated's own: group by, escapes, defaults, Orca's escaped templates.
		{nil, "", `job="${scope}"`, "", "checkout", nil, `avg(some-metric-name{job="checkout"})`},
		{nil, "", `PromQL:sum(up{job="$${scope}", zone="${zone:-eu}"})`, "", "x", nil, `sum(up{job="${scope}", zone="eu"})`},
		{nil, "", `PromQL:up{job="$\{scope}"}`, "", "x", nil, `up{job="x"}`},
	} {
		q := prometheusQuery{Type: "prometheus", ResourceType: tc.resourceType, MetricName: "some-metric-name", LabelBindings: tc.labelBindings,
			CustomFilterTemplate: tc.customFilterTemplate, CustomInlineTemplate: tc.customInlineTemplate}
		cfg := &analysis.CanaryConfig{Templates: templates}
		got, err := buildQuery(cfg, q, analysis.CanaryScope{Scope: tc.scope, Location: "us-central1", ExtendedScopeParams: tc.extendedScopeParams}, "instance")
		require.NoError(t, err, "row %d", i)
		require.Equal(t, tc.want, got, "row %d", i)
	}
}

func TestBuildQueryGroupBy(t *testing.T) {
	q := prometheusQuery{Type: "prometheus", MetricName: "m", GroupByFields: []string{"code", "method"}, CustomInlineTemplate: `job="${scope}"`}
	got, err := buildQuery(&analysis.CanaryConfig{}, q, analysis.CanaryScope{Scope: "api"}, "instance")
	require.NoError(t, err)
	require.Equal(t, `avg(m{job="api"}) by (code,method)`, got)
}

func TestBuildQueryErrors(t *testing.T) {
	for _, tc := range []struct {
		q       prometheusQuery
		scope   analysis.CanaryScope
		field   string
		message string
	}{
		{prometheusQuery{MetricName: "m"}, analysis.CanaryScope{}, "query", "Either a resource type or a custom filter is required."},
		{prometheusQuery{MetricName: "m", ResourceType: "k8s_pod"}, analysis.CanaryScope{}, "query.resourceType", "There is no explicit support for resourceType 'k8s_pod'."},
		{prometheusQuery{MetricName: "m", ResourceType: "gce_instance"}, analysis.CanaryScope{}, "location", "Location (i.e. region) is required when resourceType is 'gce_instance'."},
		{prometheusQuery{CustomInlineTemplate: `job="${scope}"`}, analysis.CanaryScope{Scope: "a"}, "query.metricName", "Metric Name is required when query type is Default."},
		{prometheusQuery{CustomInlineTemplate: `PromQL:up{job="${nope}"}`}, analysis.CanaryScope{Scope: "a"}, "query.customInlineTemplate",
			`Problem evaluating custom filter template: PromQL:up{job="${nope}"}: Cannot resolve variable 'nope' (enableSubstitutionInVariables=false).`},
		{prometheusQuery{CustomFilterTemplate: "missing"}, analysis.CanaryScope{}, "query.customFilterTemplate", "Custom filter template 'missing' was not found."},
		{prometheusQuery{CustomInlineTemplate: `PromQL:${a}`}, analysis.CanaryScope{ExtendedScopeParams: map[string]string{"a": "${b}", "b": "${a}"}}, "query.customInlineTemplate",
			"Problem evaluating custom filter template: PromQL:${a}: Infinite loop in property interpolation of ${a}: a->b->a"},
	} {
		_, err := buildQuery(&analysis.CanaryConfig{}, tc.q, tc.scope, "instance")
		var e *Error
		require.ErrorAs(t, err, &e, "%+v", tc.q)
		require.Equal(t, tc.field, e.Field)
		require.Contains(t, e.Message, tc.message)
	}
}

func TestParseQuery(t *testing.T) {
	for _, tc := range []struct{ raw, field, message string }{
		{``, "query", "is required"},
		{`{"metricName": "m"}`, "query.type", `is required; levitated answers "prometheus" queries`},
		{`{"type": "datadog", "metricName": "m"}`, "query.type", `"datadog" is not supported`},
		{`{"type": "prometheus", "metricName": 3}`, "query.metricName", "want a string, got a JSON number"},
		{`{"type": "prometheus", "customFilter": "a=b"}`, "query.customFilter", "deprecated"},
		{`{"type": "prometheus", "customFilterTemplate": "t"}`, "query.customFilterTemplate", "no templates were defined"},
		{`{"type": "prometheus"}`, "query.metricName", "Metric Name is required"},
	} {
		_, err := parseQuery(json.RawMessage(tc.raw), nil)
		var e *Error
		require.ErrorAs(t, err, &e, tc.raw)
		require.Equal(t, tc.field, e.Field, tc.raw)
		require.Contains(t, e.Message, tc.message, tc.raw)
	}
	q, err := parseQuery(json.RawMessage(`{"type": "prometheus", "serviceType": "prometheus", "metricName": "m", "somethingNew": 1}`), nil)
	require.NoError(t, err)
	require.Equal(t, "m", q.MetricName)
}

func TestJavaFormats(t *testing.T) {
	for in, want := range map[string]string{
		`"2024-05-01T12:00:00Z"`:           "2024-05-01T12:00:00Z",
		`"2024-05-01T14:00:00.5+02:00"`:    "2024-05-01T12:00:00.500Z",
		`"2024-05-01T12:00:00.000001Z"`:    "2024-05-01T12:00:00.000001Z",
		`"2024-05-01T12:00:00.000000001Z"`: "2024-05-01T12:00:00.000000001Z",
		`1714564800`:                       "2024-05-01T12:00:00Z",
		`1714564800.25`:                    "2024-05-01T12:00:00.250Z",
	} {
		got, err := parseInstant([]byte(in))
		require.NoError(t, err, in)
		require.Equal(t, want, javaInstant(got), in)
	}
	for _, bad := range []string{`"2024-05-01T12:00:00"`, `"yesterday"`, `true`, `null`, ``} {
		_, err := parseInstant([]byte(bad))
		require.Error(t, err, bad)
	}
	require.Equal(t, "PT1H", javaDuration(3600e9))
	require.Equal(t, "PT1H30M", javaDuration(5400e9))
	require.Equal(t, "PT0.5S", javaDuration(5e8))
	require.Equal(t, "PT2M3S", javaDuration(123e9))
	require.Equal(t, "PT0S", javaDuration(0))
}

func TestULIDsSortByTime(t *testing.T) {
	s := &Service{opts: DefaultOptions()}
	prev := ""
	for range 1000 {
		id := s.newID()
		require.Len(t, id, 26)
		require.Greater(t, id, prev)
		prev = id
	}
}
