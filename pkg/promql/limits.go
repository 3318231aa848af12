package promql

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
)

// This file bounds what a query may cost before any work starts. Every
// parse levitated makes goes through the parser NewParser and
// Options.Parser return (the HTTP API's query, query_range, parse_query,
// format_query, series matchers; the engine; the ruler; the canary judge;
// MetricsQL WITH templates), and that parser refuses a query longer than
// MaxQueryLength bytes or nested deeper than MaxQueryDepth before
// Prometheus' parser reads it: the parser's memory and time grow faster
// than linearly with nesting (a 20 KB query of nested parentheses took
// 1.4 GB in parse_query, a chain of 100,000 additions 110 s). The engine
// wrapper BoundSubqueries refuses a subquery whose steps alone exceed
// --query.max-samples before it is evaluated.

// Flag names, for the errors that name them.
const (
	FlagMaxQueryLength = "--query.max-length"
	FlagMaxQueryDepth  = "--query.max-depth"
	FlagMaxSamples     = "--query.max-samples"
)

// Defaults of the query limits.
const (
	// DefaultMaxQueryLength is 64 KiB: four times VictoriaMetrics'
	// -search.maxQueryLen, room for generated queries with long regular
	// expressions.
	DefaultMaxQueryLength = 64 << 10
	// DefaultMaxQueryDepth bounds the syntax tree's depth; hand-written
	// and generated queries rarely pass 30.
	DefaultMaxQueryDepth = 500
)

// LimitError is a query refused by one of the query limits. It names the
// limit and the flag that changes it.
type LimitError struct {
	msg string
}

func (e *LimitError) Error() string { return e.msg }

// QueryLimits bound the text of a query before it is parsed.
type QueryLimits struct {
	// MaxLength is the longest query accepted, in bytes.
	MaxLength int
	// MaxDepth is the deepest nesting accepted (QueryDepth).
	MaxDepth int
}

// Check refuses q if it is longer or nested deeper than l allows. Its
// cost is one pass over q, and nothing is allocated for a query within
// the limits.
func (l QueryLimits) Check(q string) error {
	if l.MaxLength > 0 && len(q) > l.MaxLength {
		return &LimitError{fmt.Sprintf("query is %d bytes long, more than the limit of %d bytes (%s)", len(q), l.MaxLength, FlagMaxQueryLength)}
	}
	if l.MaxDepth > 0 {
		if d := QueryDepth(q, l.MaxDepth); d > l.MaxDepth {
			return &LimitError{fmt.Sprintf("query nests more than %d levels deep (%s; each bracket, and each operator within one bracket, adds a level)", l.MaxDepth, FlagMaxQueryDepth)}
		}
	}
	return nil
}

// QueryDepth returns an upper bound of the depth of q's syntax tree, read
// from its text alone. Each bracket ( [ { is a level; within a bracket
// (between commas), each binary or unary operator, and each range or
// subquery [...] after an operand, is a level above the deepest operand:
// a + b + c is two levels, (a + b) + c three, rate(x[5m]) three. The scan
// stops once the depth is known to pass stop (> 0); strings and comments
// are skipped, and matchers in braces are not operators.
func QueryDepth(q string, stop int) int {
	// One frame per open bracket; frames[0] is the top level.
	type frame struct {
		ops    int // operators in the current argument
		deeper int // deepest bracket in the current argument
		best   int // deepest argument so far
	}
	var (
		frames = []frame{{}}
		level  int // brackets open + operators in their current arguments: a lower bound
		braces int // { } open
	)
	endArg := func(f *frame) {
		f.best = max(f.best, f.ops+f.deeper)
		level -= f.ops
		f.ops, f.deeper = 0, 0
	}
	closeBracket := func() {
		f := &frames[len(frames)-1]
		endArg(f)
		frames = frames[:len(frames)-1]
		level--
		p := &frames[len(frames)-1]
		p.deeper = max(p.deeper, 1+f.best)
	}
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
			i = j + 1
			continue
		case c == '#':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				i = len(q)
				continue
			}
			i += j + 1
			continue
		case c == '(' || c == '[' || c == '{':
			switch {
			case c == '{':
				braces++
			case c == '[' && braces == 0:
				// x[5m] and (x)[1h:1m] are a node above x.
				frames[len(frames)-1].ops++
				level++
			}
			frames = append(frames, frame{})
			level++
		case c == ')' || c == ']' || c == '}':
			if c == '}' && braces > 0 {
				braces--
			}
			if len(frames) > 1 {
				closeBracket()
			}
		case c == ',':
			endArg(&frames[len(frames)-1])
		case c == '+' || c == '-' || c == '*' || c == '/' || c == '%' || c == '^',
			c == '=' || c == '!' || c == '<' || c == '>':
			// ==, !=, <=, >=, <, > (=~ and !~ only occur in braces).
			if c != '^' && i+1 < len(q) && (q[i+1] == '=' || q[i+1] == '~') {
				i++
			}
			if braces == 0 {
				frames[len(frames)-1].ops++
				level++
			}
		case c >= '0' && c <= '9' || c == '.':
			// A number or duration: 1e-5 is one token.
			j := i + 1
			for j < len(q) && (isIdentChar(q[j]) || q[j] == '.' ||
				(q[j] == '-' || q[j] == '+') && (q[j-1] == 'e' || q[j-1] == 'E') && !strings.HasPrefix(q[i:], "0x")) {
				j++
			}
			i = j
			continue
		case isIdentStart(c):
			j := i + 1
			for j < len(q) && (isIdentChar(q[j]) || q[j] == '.') {
				j++
			}
			switch strings.ToLower(q[i:j]) {
			case "and", "or", "unless", "atan2":
				if braces == 0 {
					frames[len(frames)-1].ops++
					level++
				}
			}
			i = j
			continue
		}
		if stop > 0 && level > stop {
			return level
		}
		i++
	}
	for len(frames) > 1 { // unbalanced: the parser reports it
		closeBracket()
	}
	endArg(&frames[0])
	return frames[0].best
}

// limitedParser checks every input against its limits before the parser
// reads it.
type limitedParser struct {
	parser.Parser
	limits QueryLimits
}

func (p limitedParser) ParseExpr(input string) (parser.Expr, error) {
	if err := p.limits.Check(input); err != nil {
		return nil, err
	}
	return p.Parser.ParseExpr(input)
}

func (p limitedParser) ParseMetric(input string) (labels.Labels, error) {
	if err := p.limits.Check(input); err != nil {
		return labels.EmptyLabels(), err
	}
	return p.Parser.ParseMetric(input)
}

func (p limitedParser) ParseMetricSelector(input string) ([]*labels.Matcher, error) {
	if err := p.limits.Check(input); err != nil {
		return nil, err
	}
	return p.Parser.ParseMetricSelector(input)
}

func (p limitedParser) ParseMetricSelectors(matchers []string) ([][]*labels.Matcher, error) {
	for _, m := range matchers {
		if err := p.limits.Check(m); err != nil {
			return nil, err
		}
	}
	return p.Parser.ParseMetricSelectors(matchers)
}

// SubqueryError is a subquery refused before evaluation because its steps
// alone are more samples than --query.max-samples allows. The HTTP API
// answers it as an execution error (422).
type SubqueryError struct {
	msg string
}

func (e *SubqueryError) Error() string { return e.msg }

// BoundSubqueries wraps an engine: a query one of whose subqueries would
// be evaluated at more steps than maxSamples (each step of a series is a
// sample held in memory) fails with a *SubqueryError from Exec, before
// anything is evaluated. Prometheus' engine counts a subquery's samples
// only as it produces them, and may take GBs before it stops
// (sum_over_time(vector(1)[1d:1ms]) is 86,400,000 steps).
func BoundSubqueries(e promql.QueryEngine, maxSamples int) promql.QueryEngine {
	if maxSamples <= 0 {
		return e
	}
	return &subqueryBound{QueryEngine: e, max: maxSamples}
}

type subqueryBound struct {
	promql.QueryEngine
	max int
}

func (e *subqueryBound) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	return e.check(e.QueryEngine.NewInstantQuery(ctx, q, opts, qs, ts))
}

func (e *subqueryBound) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	return e.check(e.QueryEngine.NewRangeQuery(ctx, q, opts, qs, start, end, interval))
}

func (e *subqueryBound) check(qry promql.Query, err error) (promql.Query, error) {
	if err != nil {
		return qry, err
	}
	stmt, ok := qry.Statement().(*parser.EvalStmt)
	if !ok {
		return qry, nil
	}
	if err := subquerySteps(stmt, e.max); err != nil {
		return refusedQuery{Query: qry, err: err}, nil
	}
	return qry, nil
}

// subquerySteps finds a subquery evaluated at more than max steps. A
// subquery is evaluated once over the whole span it is needed for (the
// query's range, plus its own range and those of the subqueries around
// it), at its step (1m if it has none, as NoStepSubqueryIntervalFn).
func subquerySteps(stmt *parser.EvalStmt, max int) error {
	var err error
	span := stmt.End.Sub(stmt.Start)
	parser.Inspect(stmt.Expr, func(n parser.Node, path []parser.Node) error {
		sq, ok := n.(*parser.SubqueryExpr)
		if !ok || err != nil {
			return nil
		}
		total := span + sq.Range
		for _, p := range path {
			if outer, ok := p.(*parser.SubqueryExpr); ok {
				total += outer.Range
			}
		}
		step := sq.Step
		if step <= 0 {
			step = time.Minute
		}
		if steps := int64(total/step) + 1; steps > int64(max) {
			err = &SubqueryError{fmt.Sprintf("subquery %s is evaluated at %d steps, each a sample held in memory, more than the limit of %d samples (%s): use a coarser step or a shorter range", sq, steps, max, FlagMaxSamples)}
		}
		return nil
	})
	return err
}

// refusedQuery fails at Exec with err, without evaluating anything.
type refusedQuery struct {
	promql.Query
	err error
}

func (q refusedQuery) Exec(context.Context) *promql.Result {
	return &promql.Result{Err: q.err}
}
