package resultscache

import (
	"fmt"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// plan is what the cache needs to know of a query it may cache.
type plan struct {
	// pinned: the query reads data that is not at a fixed distance from
	// each step (an @ modifier with a timestamp, an event-window
	// function), so a write anywhere in what an evaluation read
	// invalidates every step of it.
	pinned bool
	// readsEvents: the query may read change events (an event-window
	// function, or a selector that may match an event series), so any
	// event written or deleted in the tenant invalidates it.
	readsEvents bool
}

// analyze decides whether the range query expr may be evaluated in pieces
// of steps and cached, and returns why not if it may not. A range query may
// be cached when the value at each step is a function of the stored data
// and that step alone, as it is in Prometheus' engine, except for:
//   - @ start() and @ end(), which depend on the query's range;
//   - duration expressions ([step()], range(), offset 1m+1m...), which may
//     depend on the range;
//   - subqueries, whose inner steps the cache does not model;
//   - label_replace and label_join that write __name__, and info(), which
//     reads series the engine selects by itself.
func (c *Cache) analyze(expr parser.Expr) (plan, string) {
	var p plan
	why := ""
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if why != "" {
			return fmt.Errorf("stop")
		}
		switch n := n.(type) {
		case *parser.DurationExpr:
			why = "duration expression"
		case *parser.SubqueryExpr:
			why = "subquery"
		case *parser.VectorSelector:
			if n.StartOrEnd != 0 {
				why = "@ start() or @ end()"
				return nil
			}
			if n.OriginalOffsetExpr != nil {
				why = "duration expression"
				return nil
			}
			if n.Timestamp != nil {
				p.pinned = true
			}
			if c.mayMatchEvents(n.LabelMatchers) {
				p.readsEvents = true
			}
		case *parser.MatrixSelector:
			if n.RangeExpr != nil {
				why = "duration expression"
			}
		case *parser.Call:
			switch n.Func.Name {
			case "info":
				why = "info()"
				return nil
			case "label_replace", "label_join":
				if len(n.Args) > 1 {
					if s, ok := n.Args[1].(*parser.StringLiteral); !ok || s.Val == labels.MetricName {
						why = n.Func.Name + " writing __name__"
						return nil
					}
				}
			}
			if c.eventFuncs[n.Func.Name] || len(n.Func.Name) > 2 && n.Func.Name[:2] == "__" {
				p.pinned = true
				p.readsEvents = true
			}
		}
		return nil
	})
	return p, why
}

// mayMatchEvents reports whether a selector may select an event series:
// unless it names one metric and that is not an event series, it may.
func (c *Cache) mayMatchEvents(ms []*labels.Matcher) bool {
	for _, m := range ms {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return c.eventMetrics[m.Value]
		}
	}
	return true
}
