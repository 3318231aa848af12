package impact

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/pkg/tenant"
)

// ErrStoreEmpty is CheckData's answer when the store holds no series at
// all: nothing can be told of a signal's data then.
var ErrStoreEmpty = errors.New("the store holds no series yet: the signals' data is not checked")

// templateValue stands for every attribute while a template's selectors
// are checked: a matcher whose value holds it depends on the change and is
// left out of the check.
const templateValue = "__levitated_attribute__"

// CheckData refuses a signal (or the traffic query) that has no data: one
// whose query cannot have a value because a metric it needs has no series
// at all in the store, in any of tenants, with the change's attributes
// left out of its matchers. A selector on one side of an "or" is needed
// only if the other side has no data either; absent() and vector() need
// none. The error names the file, the line, the field and the selectors.
// The refusal is a *NoDataError. With a store that holds no series at all
// it returns ErrStoreEmpty and refuses nothing; a failure to read the store
// is any other error.
func (c *Config) CheckData(ctx context.Context, q promstorage.Queryable, tenants []string, p parser.Parser) error {
	if len(c.positions) == 0 {
		return nil // the built-in defaults: two conventions, one of which a store lacks
	}
	st := &seriesCheck{q: q, tenants: tenants, known: map[string]bool{}}
	stored, err := st.has(ctx, []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+")})
	if err != nil {
		return err
	}
	if !stored {
		return ErrStoreEmpty
	}
	vars := map[string]string{}
	for _, k := range append(append([]string(nil), builtinVars...), c.Attributes...) {
		vars[k] = templateValue
	}
	for _, pos := range c.positions {
		q, err := expand(pos.query, vars)
		if err != nil {
			continue // checked at parse
		}
		expr, err := p.ParseExpr(q)
		if err != nil {
			continue // checked at parse
		}
		missing, err := st.missing(ctx, expr)
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			return &NoDataError{File: pos.file, Line: pos.line, Field: pos.field, Selectors: missing}
		}
	}
	return nil
}

// NoDataError refuses a signal without data (CheckData).
type NoDataError struct {
	File      string
	Line      int
	Field     string
	Selectors []string
}

func (e *NoDataError) Error() string {
	return fmt.Sprintf("%s:%d: %s: has no data: the store holds no series of %s, which it needs (a typo in a metric or label name? a series that appears only later, such as the first 5xx, needs \"(… or vector(0))\")",
		e.File, e.Line, e.Field, strings.Join(e.Selectors, " nor "))
}

// position is where a template of a loaded file is: checked for data at
// load (CheckData).
type position struct {
	file  string
	line  int
	field string
	query string
}

// seriesCheck answers whether series exist, caching by selector.
type seriesCheck struct {
	q       promstorage.Queryable
	tenants []string
	known   map[string]bool
}

func (st *seriesCheck) has(ctx context.Context, ms []*labels.Matcher) (bool, error) {
	key := fmt.Sprint(ms)
	if v, ok := st.known[key]; ok {
		return v, nil
	}
	found := false
	for _, tn := range st.tenants {
		ok, err := func() (bool, error) {
			qr, err := st.q.Querier(math.MinInt64/2, math.MaxInt64/2)
			if err != nil {
				return false, err
			}
			defer qr.Close()
			tctx := tenant.NewContext(ctx, tn)
			ss := qr.Select(tctx, false, &promstorage.SelectHints{Start: math.MinInt64 / 2, End: math.MaxInt64 / 2, Func: "series", Limit: 1}, ms...)
			if ss.Next() {
				return true, nil
			}
			return false, ss.Err()
		}()
		if err != nil {
			return false, fmt.Errorf("look for series of %v in tenant %q: %w", ms, tn, err)
		}
		if ok {
			found = true
			break
		}
	}
	st.known[key] = found
	return found, nil
}

// missing returns the selectors of expr, without its matchers that depend
// on the change, that have no series and without which expr has no value;
// none if it may have one.
func (st *seriesCheck) missing(ctx context.Context, expr parser.Expr) ([]string, error) {
	switch n := expr.(type) {
	case *parser.VectorSelector:
		var ms []*labels.Matcher
		for _, m := range n.LabelMatchers {
			if !strings.Contains(m.Value, templateValue) {
				ms = append(ms, m)
			}
		}
		if len(ms) == 0 {
			return nil, nil // all of it depends on the change
		}
		ok, err := st.has(ctx, ms)
		if err != nil || ok {
			return nil, err
		}
		return []string{selectorString(ms)}, nil
	case *parser.MatrixSelector:
		return st.missing(ctx, n.VectorSelector)
	case *parser.SubqueryExpr:
		return st.missing(ctx, n.Expr)
	case *parser.ParenExpr:
		return st.missing(ctx, n.Expr)
	case *parser.StepInvariantExpr:
		return st.missing(ctx, n.Expr)
	case *parser.UnaryExpr:
		return st.missing(ctx, n.Expr)
	case *parser.AggregateExpr:
		return st.missing(ctx, n.Expr)
	case *parser.BinaryExpr:
		l, err := st.missing(ctx, n.LHS)
		if err != nil {
			return nil, err
		}
		switch n.Op {
		case parser.LOR:
			if len(l) == 0 {
				return nil, nil
			}
			r, err := st.missing(ctx, n.RHS)
			if err != nil || len(r) == 0 {
				return nil, err
			}
			return append(l, r...), nil
		case parser.LUNLESS:
			return l, nil
		}
		r, err := st.missing(ctx, n.RHS)
		if err != nil {
			return nil, err
		}
		// A scalar side (a number, scalar(…)) does not make the other
		// side's vector empty.
		if n.LHS.Type() == parser.ValueTypeScalar {
			l = nil
		}
		if n.RHS.Type() == parser.ValueTypeScalar {
			r = nil
		}
		return append(l, r...), nil
	case *parser.Call:
		switch n.Func.Name {
		case "absent", "absent_over_time", "vector", "time", "pi":
			return nil, nil
		}
		var out []string
		for _, a := range n.Args {
			if t := a.Type(); t != parser.ValueTypeVector && t != parser.ValueTypeMatrix {
				continue
			}
			m, err := st.missing(ctx, a)
			if err != nil {
				return nil, err
			}
			out = append(out, m...)
		}
		return out, nil
	}
	return nil, nil
}

// selectorString writes matchers as a selector: name{label="value"}.
func selectorString(ms []*labels.Matcher) string {
	name := ""
	var rest []string
	for _, m := range ms {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			name = m.Value
			continue
		}
		rest = append(rest, m.String())
	}
	if len(rest) == 0 {
		return name
	}
	return name + "{" + strings.Join(rest, ",") + "}"
}
