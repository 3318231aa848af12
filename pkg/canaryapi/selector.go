package canaryapi

import (
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/levitated/levitated/pkg/events"
)

// eventSeries are the series computed from change events: the side's
// matchers are not added to their selectors, so that a query can join a
// metric with the window of its canary.
func eventSeries(vs *parser.VectorSelector) bool {
	name := vs.Name
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			name = m.Value
		}
	}
	return name == events.MetricChangeEvents || strings.HasPrefix(name, "change_event_")
}

// withMatchers returns query with ms added to every vector selector (those
// of change-event series excepted), as prom-label-proxy enforces a label.
func (s *Service) withMatchers(query string, ms []*labels.Matcher) (string, error) {
	if len(ms) == 0 {
		return query, nil
	}
	expr, err := s.parser.ParseExpr(query)
	if err != nil {
		return "", err
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok || eventSeries(vs) {
			return nil
		}
		for _, m := range ms {
			vs.LabelMatchers = append(vs.LabelMatchers, labels.MustNewMatcher(m.Type, m.Name, m.Value))
		}
		return nil
	})
	return expr.String(), nil
}
