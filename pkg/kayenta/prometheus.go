package kayenta

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/levitated/levitated/pkg/analysis"
	"github.com/levitated/levitated/pkg/rangequery"
)

// This file ports kayenta-prometheus: the metric query config
// (PrometheusCanaryMetricSetQueryConfig), the query builder
// (PrometheusMetricsService.buildQuery, QueryConfigUtils.expandCustomFilter)
// and the conversion of a query_range answer into metric sets
// (PrometheusResponseConverter, PrometheusMetricsService.queryMetrics).
// Queries run on levitated's own engine instead of over HTTP.

// ServiceType is the only metrics store type levitated answers.
const ServiceType = "prometheus"

// prometheusQuery is PrometheusCanaryMetricSetQueryConfig.
type prometheusQuery struct {
	Type                 string   `json:"type"`
	ServiceType          string   `json:"serviceType"`
	ResourceType         string   `json:"resourceType"`
	MetricName           string   `json:"metricName"`
	LabelBindings        []string `json:"labelBindings"`
	GroupByFields        []string `json:"groupByFields"`
	CustomFilter         *string  `json:"customFilter"`
	CustomInlineTemplate string   `json:"customInlineTemplate"`
	CustomFilterTemplate string   `json:"customFilterTemplate"`
}

// parseQuery reads a metric's query config; errors are about the field
// "query".
func parseQuery(raw json.RawMessage, templates map[string]string) (prometheusQuery, error) {
	var q prometheusQuery
	if len(raw) == 0 || string(raw) == "null" {
		return q, badRequest("query", "is required: {\"type\": \"prometheus\", …}")
	}
	if err := decodeJSON(raw, &q, "query"); err != nil {
		return q, withPrefix("query", stripField("query", err))
	}
	switch {
	case q.Type == "":
		return q, badRequest("query.type", "is required; levitated answers %q queries", ServiceType)
	case q.Type != ServiceType:
		return q, badRequest("query.type", "%q is not supported; levitated answers %q queries (PromQL on its own store)", q.Type, ServiceType)
	case q.CustomFilter != nil:
		return q, badRequest("query.customFilter", "CanaryMetricSetQueryConfig.customFilter is deprecated, use CanaryMetricSetQueryConfig.customInlineTemplate instead.")
	case q.CustomInlineTemplate == "" && q.CustomFilterTemplate != "":
		if len(templates) == 0 {
			return q, badRequest("query.customFilterTemplate", "Custom filter template '%s' was referenced, but no templates were defined.", q.CustomFilterTemplate)
		}
		if _, ok := templates[q.CustomFilterTemplate]; !ok {
			return q, badRequest("query.customFilterTemplate", "Custom filter template '%s' was not found.", q.CustomFilterTemplate)
		}
	case q.CustomInlineTemplate == "" && q.MetricName == "":
		return q, badRequest("query.metricName", "Metric Name is required when query type is Default.")
	}
	return q, nil
}

// stripField drops a leading "what." from the field of err, so that the
// caller can prefix the full path.
func stripField(what string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		f := strings.TrimPrefix(strings.TrimPrefix(e.Field, what), ".")
		return &Error{Status: e.Status, Field: f, Message: e.Message}
	}
	return err
}

// buildQuery is PrometheusMetricsService.buildQuery: the PromQL of a metric
// for a scope. scopeLabel is Kayenta's prometheus.scopeLabel (for the
// gce_instance resource type).
func buildQuery(cfg *analysis.CanaryConfig, q prometheusQuery, s analysis.CanaryScope, scopeLabel string) (string, error) {
	resourceType := q.ResourceType
	if strings.TrimSpace(resourceType) == "" {
		resourceType = s.ExtendedScopeParams["resourceType"]
	}
	customFilter, err := expandCustomFilter(cfg, q, s)
	if err != nil {
		return "", err
	}
	if expr, ok := strings.CutPrefix(customFilter, "PromQL:"); ok {
		return expr, nil
	}
	if q.MetricName == "" {
		return "", badRequest("query.metricName", "Metric Name is required when query type is Default.")
	}
	var b strings.Builder
	b.WriteString(q.MetricName)

	filters := slices.Clone(q.LabelBindings)
	switch {
	case customFilter != "":
		filters = append(javaSplit(customFilter, ","), filters...)
	case resourceType == "gce_instance":
		if s.Location == "" {
			return "", badRequest("location", "Location (i.e. region) is required when resourceType is 'gce_instance'.")
		}
		if s.Scope != "" {
			filters = append(filters, scopeLabel+`=~"`+s.Scope+`-.{4}"`)
		}
		zone := ".+/"
		if p := s.ExtendedScopeParams["project"]; p != "" {
			zone += "projects/" + p + "/"
		}
		filters = append(filters, `zone=~"`+zone+"zones/"+s.Location+`-.{1}"`)
	case resourceType == "aws_ec2_instance":
		if s.Location == "" {
			return "", badRequest("location", "Location (i.e. region) is required when resourceType is 'aws_ec2_instance'.")
		}
		if s.Scope != "" {
			filters = append(filters, `asg_groupName="`+s.Scope+`"`)
		}
		filters = append(filters, `zone=~"`+s.Location+`.{1}"`)
	case resourceType != "":
		return "", badRequest("query.resourceType", "There is no explicit support for resourceType '%s'. You may build whatever query makes sense for your environment via label bindings and custom filter templates.", resourceType)
	default:
		return "", badRequest("query", "Either a resource type or a custom filter is required.")
	}
	if len(filters) > 0 {
		b.WriteString("{" + strings.Join(filters, ",") + "}")
	}
	out := "avg(" + b.String() + ")"
	if len(q.GroupByFields) > 0 {
		out += " by (" + strings.Join(q.GroupByFields, ",") + ")"
	}
	return out, nil
}

// expandCustomFilter is QueryConfigUtils.expandCustomFilter with the
// Prometheus scope's attributes (project, resourceType, scope, location).
func expandCustomFilter(cfg *analysis.CanaryConfig, q prometheusQuery, s analysis.CanaryScope) (string, error) {
	var tpl, field string
	switch {
	case q.CustomInlineTemplate != "":
		tpl, field = q.CustomInlineTemplate, "query.customInlineTemplate"
	case q.CustomFilterTemplate != "":
		t, ok := cfg.Templates[q.CustomFilterTemplate]
		if !ok {
			return "", badRequest("query.customFilterTemplate", "Custom filter template '%s' was not found.", q.CustomFilterTemplate)
		}
		tpl, field = t, "templates."+q.CustomFilterTemplate
	default:
		return "", nil
	}
	tpl = strings.ReplaceAll(tpl, `$\{`, "${") // QueryConfigUtils.unescapeTemplate
	vars := map[string]string{}
	put := func(k, v string) {
		if v != "" {
			vars[k] = v
		}
	}
	put("project", s.ExtendedScopeParams["project"])
	put("resourceType", s.ExtendedScopeParams["resourceType"])
	put("scope", s.Scope)
	put("location", s.Location)
	put("resourceType", q.ResourceType)
	for k, v := range s.ExtendedScopeParams {
		vars[k] = v
	}
	out, err := expandTemplate(tpl, vars)
	if err != nil {
		return "", badRequest(field, "Problem evaluating custom filter template: %s: %v", tpl, err)
	}
	return out, nil
}

// javaSplit is Java's String.split with a literal separator: trailing
// empty strings are dropped.
func javaSplit(s, sep string) []string {
	parts := strings.Split(s, sep)
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return parts
}

// metricSets is PrometheusResponseConverter plus queryMetrics: one metric
// set per series, its values the samples it has (Prometheus leaves out
// empty steps, and so does Kayenta, closing the gaps), its start the first
// sample, its step the distance of the first two, its end start + n·step;
// or, for no series, one untagged placeholder with the scope's times and
// no values.
func metricSets(name, query string, series []rangequery.Series, s analysis.CanaryScope) []analysis.MetricSet {
	attrs := map[string]string{"query": query}
	if len(series) == 0 {
		return []analysis.MetricSet{{
			Name:            name,
			Tags:            map[string]string{},
			StartTimeMillis: s.Start.UnixMilli(),
			StartTimeIso:    javaInstant(s.Start),
			EndTimeMillis:   s.End.UnixMilli(),
			EndTimeIso:      javaInstant(s.End),
			StepMillis:      s.Step * 1000,
			Values:          analysis.Series{},
			Attributes:      attrs,
		}}
	}
	out := make([]analysis.MetricSet, 0, len(series))
	for _, ser := range series {
		tags := ser.Labels.Map()
		delete(tags, labels.MetricName)
		start := ser.Times[0]
		var stepSecs int64
		if len(ser.Times) > 1 {
			stepSecs = (ser.Times[1] - start) / 1000
		}
		end := start + int64(len(ser.Values))*stepSecs*1000
		out = append(out, analysis.MetricSet{
			Name:            name,
			Tags:            tags,
			StartTimeMillis: start,
			StartTimeIso:    javaInstant(time.UnixMilli(start)),
			EndTimeMillis:   end,
			EndTimeIso:      javaInstant(time.UnixMilli(end)),
			StepMillis:      stepSecs * 1000,
			Values:          analysis.Series(ser.Values),
			Attributes:      attrs,
		})
	}
	return out
}

// source is the analysis.Source of one execution: Kayenta's Prometheus
// metrics service for the metrics of cfg.
type source struct {
	queries    *rangequery.Runner
	cfg        *analysis.CanaryConfig
	scopeLabel string
}

func (s *source) QueryMetric(ctx context.Context, metric analysis.CanaryMetricConfig, sc analysis.CanaryScope) ([]analysis.MetricSet, error) {
	q, err := parseQuery(metric.Query, s.cfg.Templates)
	if err != nil {
		return nil, err
	}
	expr, err := buildQuery(s.cfg, q, sc, s.scopeLabel)
	if err != nil {
		return nil, err
	}
	// Kayenta's metric sets have no place for warnings.
	series, _, err := s.queries.Range(ctx, expr, sc.Start, sc.End, time.Duration(sc.Step)*time.Second)
	if err != nil {
		return nil, err
	}
	return metricSets(metric.Name, expr, series, sc), nil
}

// Compile-time check.
var _ analysis.Source = (*source)(nil)

// parserErrorMessage shortens a PromQL parse error to its message.
func parserErrorMessage(err error) string {
	var pe parser.ParseErrors
	if errors.As(err, &pe) && len(pe) > 0 {
		return pe[0].Error()
	}
	return err.Error()
}
