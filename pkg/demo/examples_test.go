package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/levitated/levitated/deploy"
)

// exampleQuery is one PromQL query found in the deploy examples.
type exampleQuery struct {
	where string // file and place
	query string
	// instant: evaluated at one time (Argo Rollouts, Flagger, Kayenta,
	// stat and table panels); otherwise as a range (Grafana graphs).
	instant bool
}

// grafanaVars substitutes the dashboard's variables as Grafana does for the
// demo's service, all versions, a 1 h range and a 15 s interval.
var grafanaVars = strings.NewReplacer(
	"$service", service, "$version", ".+", "${datasource}", "levitated",
	"$__rate_interval", "1m", "$__range", "1h", "$__interval", "15s",
)

func dashboardQueries(t *testing.T, file string) []exampleQuery {
	t.Helper()
	b, err := fs.ReadFile(deploy.Examples, file)
	require.NoError(t, err)
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr    string `json:"expr"`
				Instant bool   `json:"instant"`
			} `json:"targets"`
		} `json:"panels"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	var qs []exampleQuery
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			qs = append(qs, exampleQuery{fmt.Sprintf("%s: panel %q target %d", file, p.Title, i), grafanaVars.Replace(tg.Expr), tg.Instant})
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			qs = append(qs, exampleQuery{fmt.Sprintf("%s: annotation %q", file, a.Name), grafanaVars.Replace(a.Expr), false})
		}
	}
	for _, v := range d.Templating.List {
		q, ok := v.Query.(map[string]any)
		if !ok {
			continue
		}
		// label_values(selector, label): the series the variable lists.
		s, _ := q["query"].(string)
		require.True(t, strings.HasPrefix(s, "label_values("), "variable %s: %s", v.Name, s)
		sel := strings.TrimPrefix(s, "label_values(")
		sel = sel[:strings.LastIndex(sel, ",")]
		qs = append(qs, exampleQuery{fmt.Sprintf("%s: variable %q", file, v.Name), "count(" + grafanaVars.Replace(sel) + ")", true})
	}
	return qs
}

// templateQueries are the queries of the Argo Rollouts AnalysisTemplates
// (Prometheus queries, and the metric queries of Web provider bodies) and
// of the Kayenta canary config, with the demo's arguments.
func templateQueries(t *testing.T) []exampleQuery {
	t.Helper()
	args := map[string]string{"service": service, "stable-hash": stableHash, "canary-hash": canaryHash}
	files, err := fs.Glob(deploy.Examples, "argo-rollouts/*.yaml")
	require.NoError(t, err)
	var qs []exampleQuery
	for _, f := range files {
		b, err := fs.ReadFile(deploy.Examples, f)
		require.NoError(t, err)
		if !strings.Contains(string(b), "kind: AnalysisTemplate") {
			continue
		}
		tpl, err := loadTemplate(f, args)
		require.NoError(t, err)
		for _, m := range tpl.Spec.Metrics {
			if p := m.Provider.Prometheus; p != nil {
				qs = append(qs, exampleQuery{f + ": " + m.Name, p.Query, true})
			}
			if w := m.Provider.Web; w != nil && strings.HasSuffix(w.URL, "/api/v1/analysis") { // the gate's body has no queries
				ms, _ := w.JSONBody["metrics"].([]any)
				require.NotEmpty(t, ms, f)
				for _, x := range ms {
					mm := x.(map[string]any)
					qs = append(qs, exampleQuery{fmt.Sprintf("%s: %s, judge metric %s", f, m.Name, mm["name"]), mm["query"].(string), true})
				}
			}
		}
		// The Kayenta canary config in a ConfigMap beside the template.
		for _, doc := range strings.Split(string(b), "\n---\n") {
			var cm struct {
				Kind string            `yaml:"kind"`
				Data map[string]string `yaml:"data"`
			}
			require.NoError(t, yaml.Unmarshal([]byte(doc), &cm))
			if cm.Kind != "ConfigMap" {
				continue
			}
			for name, data := range cm.Data {
				var cfg struct {
					Metrics []struct {
						Name  string `json:"name"`
						Query struct {
							CustomInlineTemplate string `json:"customInlineTemplate"`
						} `json:"query"`
					} `json:"metrics"`
				}
				require.NoError(t, json.Unmarshal([]byte(data), &cfg), "%s: %s", f, name)
				for _, m := range cfg.Metrics {
					q, ok := strings.CutPrefix(m.Query.CustomInlineTemplate, "PromQL:")
					require.True(t, ok, "%s: %s: %s", f, name, m.Name)
					for _, scope := range []string{stableHash, canaryHash} {
						qs = append(qs, exampleQuery{fmt.Sprintf("%s: %s metric %s scope %s", f, name, m.Name, scope), strings.ReplaceAll(q, "${scope}", scope), true})
					}
				}
			}
		}
	}
	return qs
}

// flaggerQueries are the MetricTemplate's query and the webhook's judge
// metric queries, for the demo's service in its namespace.
func flaggerQueries(t *testing.T) []exampleQuery {
	t.Helper()
	files, err := fs.Glob(deploy.Examples, "flagger/*.yaml")
	require.NoError(t, err)
	vars := strings.NewReplacer("{{ namespace }}", namespace, "{{ target }}", service, "{{ interval }}", "1m")
	var qs []exampleQuery
	for _, f := range files {
		b, err := fs.ReadFile(deploy.Examples, f)
		require.NoError(t, err)
		for _, doc := range strings.Split(string(b), "\n---\n") {
			var obj struct {
				Kind string `yaml:"kind"`
				Spec struct {
					Query    string `yaml:"query"`
					Analysis struct {
						Webhooks []struct {
							Name     string            `yaml:"name"`
							Metadata map[string]string `yaml:"metadata"`
						} `yaml:"webhooks"`
					} `yaml:"analysis"`
				} `yaml:"spec"`
			}
			require.NoError(t, yaml.Unmarshal([]byte(doc), &obj), f)
			if obj.Spec.Query != "" {
				qs = append(qs, exampleQuery{f + ": " + obj.Kind, vars.Replace(obj.Spec.Query), true})
			}
			for _, h := range obj.Spec.Analysis.Webhooks {
				if h.Metadata["request"] == "" {
					continue
				}
				var req struct {
					Metrics []struct{ Name, Query string } `json:"metrics"`
				}
				require.NoError(t, json.Unmarshal([]byte(h.Metadata["request"]), &req), "%s: webhook %s", f, h.Name)
				for _, m := range req.Metrics {
					qs = append(qs, exampleQuery{fmt.Sprintf("%s: webhook %s metric %s", f, h.Name, m.Name), m.Query, true})
				}
			}
		}
	}
	return qs
}

// TestExampleQueriesReturnData runs every PromQL query of the deploy
// examples (the Grafana dashboard's panels, annotations and variables, the
// Argo Rollouts templates and Kayenta config, Flagger's MetricTemplate and
// webhook) against the demo's levitated, at the end of the healthy run's
// 80 % stage: each must parse with levitated's engine (a 400 otherwise) and
// return data. The judge requests of the Web templates also run whole.
func TestExampleQueriesReturnData(t *testing.T) {
	var qs []exampleQuery
	dashboards, err := fs.Glob(deploy.Examples, "grafana/dashboards/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, dashboards)
	for _, d := range dashboards {
		qs = append(qs, dashboardQueries(t, d)...)
	}
	qs = append(qs, templateQueries(t)...)
	qs = append(qs, flaggerQueries(t)...)
	require.Greater(t, len(qs), 25, "the examples' queries were found")

	checked := false
	_, err = Run(context.Background(), Options{Scenarios: Scenarios[:1], Seed: 1,
		AfterStage: func(ctx context.Context, u string, _ Scenario, s Stage) error {
			if s.Weight != 80 {
				return nil
			}
			c := &client{base: u, http: http.DefaultClient}
			at := s.End.Add(-30 * time.Second) // inside the stage window
			for _, q := range qs {
				t.Run(strings.NewReplacer("/", "_", " ", "_").Replace(q.where), func(t *testing.T) {
					if q.instant {
						v, err := c.query(ctx, q.query, at)
						require.NoError(t, err, q.query)
						require.NotEmpty(t, v, "no data: %s", q.query)
						return
					}
					m, err := c.queryRange(ctx, q.query, s.End.Add(-30*time.Minute), s.End, 15*time.Second)
					require.NoError(t, err, q.query)
					require.NotEmpty(t, m, "no data: %s", q.query)
				})
			}
			// The judge requests of the Web provider templates, whole: every
			// metric has data on both sides.
			for _, f := range []string{"argo-rollouts/analysis-web.yaml", judgeTemplatePath} {
				tpl, err := loadTemplate(f, map[string]string{"service": service, "stable-hash": stableHash, "canary-hash": canaryHash})
				require.NoError(t, err)
				body, err := json.Marshal(tpl.Spec.Metrics[0].Provider.Web.JSONBody)
				require.NoError(t, err)
				a, err := c.analyze(ctx, body)
				require.NoError(t, err, f)
				require.NotEmpty(t, a.Metrics, f)
				for _, m := range a.Metrics {
					require.NotContains(t, m.Classification, "Nodata", "%s: %s: %s", path.Base(f), m.Name, m.Explanation)
				}
			}
			checked = true
			return nil
		}})
	require.NoError(t, err)
	require.True(t, checked)
}

// TestExampleQueryParseErrorsAreReported makes sure the check above can
// fail: a query that does not parse is an error, one without data is empty.
func TestExampleQueryParseErrorsAreReported(t *testing.T) {
	_, err := Run(context.Background(), Options{Scenarios: Scenarios[1:], Seed: 1,
		AfterStage: func(ctx context.Context, u string, _ Scenario, s Stage) error {
			c := &client{base: u, http: http.DefaultClient}
			_, err := c.query(ctx, `sum(rate(http_requests_total[1m])`, s.End)
			require.ErrorContains(t, err, "400 Bad Request")
			v, err := c.query(ctx, `increase_since(http_requests_total[1h], change_event_active{event_name="no-such-event"})`, s.End)
			require.NoError(t, err)
			require.Empty(t, v)
			_, err = c.query(ctx, "x"+url.QueryEscape("{"), s.End)
			require.Error(t, err)
			return nil
		}})
	require.NoError(t, err)
}
