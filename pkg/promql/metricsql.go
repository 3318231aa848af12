package promql

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/VictoriaMetrics/metricsql"
	"github.com/prometheus/prometheus/promql/parser"
)

// HasWithTemplates reports whether q starts with MetricsQL's WITH (...).
func HasWithTemplates(q string) bool {
	q = strings.TrimLeft(q, " \t\r\n")
	if len(q) < 4 || !strings.EqualFold(q[:4], "with") {
		return false
	}
	return strings.HasPrefix(strings.TrimLeft(q[4:], " \t\r\n"), "(")
}

// ExpandWithTemplates expands a query that starts with MetricsQL's WITH
// (...) templates (github.com/VictoriaMetrics/metricsql) into the PromQL
// that the engine then runs, e.g.
//
//	WITH (errs = rate(http_requests_total{code=~"5.."}[5m]), all = rate(http_requests_total[5m]))
//	sum(errs) by (service) / sum(all) by (service)
//
// becomes sum(rate(...)) by (service) / sum(rate(...)) by (service).
// Functions the Prometheus parser knows but MetricsQL does not (the
// event-window functions, info, ...) pass through unchanged. A MetricsQL-only
// function in the result is left for the Prometheus parser to reject by
// name. Queries without WITH are returned unchanged. A query beyond l is
// refused (*LimitError) before MetricsQL's parser reads it; the expansion
// then meets l again in the PromQL parser.
func ExpandWithTemplates(q string, l QueryLimits) (string, error) {
	if !HasWithTemplates(q) {
		return q, nil
	}
	if err := l.Check(q); err != nil {
		return "", err
	}
	protected, mqlOnly := protectFunctions(q)
	if len(mqlOnly) > 0 {
		return "", fmt.Errorf("function %q is MetricsQL-only: levitated runs the expanded query on the Prometheus engine, which does not have it", mqlOnly[0])
	}
	out, err := metricsql.ExpandWithExprs(protected)
	if err != nil {
		return "", fmt.Errorf("expand WITH templates: %s", restoreFunctions(err.Error()))
	}
	return restoreFunctions(out), nil
}

// passThrough is the MetricsQL function that carries a call of a function
// MetricsQL does not know through its parser, with the real name as the
// first argument: name(args) -> union("<protectPrefix>name", args).
const (
	passThrough   = "union"
	protectPrefix = "__levitated_promql_fn__"
)

var restoreRE = regexp.MustCompile(passThrough + `\("` + protectPrefix + `([A-Za-z_][A-Za-z0-9_]*)"(?:, )?`)

func restoreFunctions(s string) string {
	return restoreRE.ReplaceAllString(s, "$1(")
}

// protectFunctions rewrites the calls in q of functions in parser.Functions
// that MetricsQL does not support, outside string literals, and returns the
// MetricsQL functions called that Prometheus does not have.
func protectFunctions(q string) (string, []string) {
	var (
		b       strings.Builder
		mqlOnly []string
	)
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(q) && q[j] != c {
				if q[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			j = min(j+1, len(q))
			b.WriteString(q[i:j])
			i = j
		case c == '#': // comment to the end of the line
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			b.WriteString(q[i : i+j])
			i += j
		case isIdentStart(c):
			j := i + 1
			for j < len(q) && isIdentChar(q[j]) {
				j++
			}
			name := q[i:j]
			k := j
			for k < len(q) && (q[k] == ' ' || q[k] == '\t' || q[k] == '\n' || q[k] == '\r') {
				k++
			}
			call := k < len(q) && q[k] == '('
			if call && metricsQLOnly(name) {
				mqlOnly = append(mqlOnly, name)
			}
			if call && needsProtection(name) {
				b.WriteString(passThrough + `("` + protectPrefix + name + `"`)
				// A call with no arguments keeps its closing parenthesis.
				rest := strings.TrimLeft(q[k+1:], " \t\r\n")
				if !strings.HasPrefix(rest, ")") {
					b.WriteString(", ")
				}
				i = k + 1
				continue
			}
			b.WriteString(name)
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), mqlOnly
}

// promAggregations are PromQL's aggregation operators (not in
// parser.Functions).
var promAggregations = map[string]bool{
	"sum": true, "avg": true, "count": true, "min": true, "max": true, "group": true,
	"stddev": true, "stdvar": true, "topk": true, "bottomk": true, "count_values": true,
	"quantile": true, "limitk": true, "limit_ratio": true,
}

// metricsQLTemplates are the templates MetricsQL predefines (metricsql's
// getDefaultWithArgExprs); they expand to MetricsQL-only functions.
var metricsQLTemplates = map[string]bool{"ru": true, "ttf": true, "range_median": true, "alias": true}

func metricsQLOnly(name string) bool {
	lower := strings.ToLower(name)
	_, prom := parser.Functions[name]
	return (metricsql.IsSupportedFunction(lower) || metricsQLTemplates[lower]) && !prom && !promAggregations[lower]
}

func needsProtection(name string) bool {
	_, ok := parser.Functions[name]
	return ok && !metricsql.IsSupportedFunction(name)
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentChar(c byte) bool {
	return isIdentStart(c) || c >= '0' && c <= '9' || c == ':'
}
