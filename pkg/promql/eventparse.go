package promql

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/parser/posrange"
	"github.com/prometheus/prometheus/storage"

	"github.com/levitated/levitated/pkg/events"
)

// windowMetrics are the series a window argument may select (docs/events.md).
var windowMetrics = []string{events.MetricActive, events.MetricWindowStart, events.MetricWindowEnd}

// evalParser is the parser the engine uses: Prometheus' parser, then the
// preparation of event-window calls (prepareEventCalls). The HTTP API's
// parse_query and format_query use the plain parser, so users see their
// query as written.
type evalParser struct {
	parser.Parser
	// maxSamples bounds the samples over_windows reads (0: none).
	maxSamples int
}

func (p evalParser) ParseExpr(input string) (parser.Expr, error) {
	expr, err := p.Parser.ParseExpr(input)
	if err != nil {
		return expr, hintArgTypes(err)
	}
	if err := prepareEventCalls(expr); err != nil {
		var pe *parser.ParseErr
		if errors.As(err, &pe) {
			pe.Query = input
			return nil, parser.ParseErrors{*pe}
		}
		return nil, err
	}
	limitOverWindows(expr, p.maxSamples)
	return expr, nil
}

// argTypeErr matches the parser's error for an argument of the wrong type.
var argTypeErr = regexp.MustCompile(`^expected type (instant vector|range vector) in call to function "([a-z_]+)", got (range vector|instant vector)$`)

// hintArgTypes adds to the parser's type errors for event-window functions
// what to write instead: the parser says what it expected, not how to get
// it.
func hintArgTypes(err error) error {
	var pes parser.ParseErrors
	if !errors.As(err, &pes) {
		return err
	}
	for i := range pes {
		if pes[i].Err == nil {
			continue
		}
		m := argTypeErr.FindStringSubmatch(pes[i].Err.Error())
		if m == nil || !isEventFunction(m[2]) {
			continue
		}
		var hint string
		switch {
		case m[1] == "instant vector" && (m[2] == funcAfterBeforeRatio || m[2] == funcAfterBeforeDifference):
			hint = fmt.Sprintf("the first argument of %s is a range function over the metric, such as rate(m[5m]) or quantile_over_time(0.99, m[5m]), and the second the windows: %s(rate(http_requests_total[5m]), change_event_active{event_name=\"deploy\"})", m[2], m[2])
		case m[1] == "instant vector":
			hint = fmt.Sprintf("the window argument of %s selects windows as an instant vector, such as change_event_active{event_name=\"deploy\"}, without a [range]", m[2])
		default:
			hint = fmt.Sprintf("the metric argument of %s is a range vector, such as http_requests_total[5m]: add the [range]", m[2])
		}
		pes[i].Err = fmt.Errorf("%w; %s", pes[i].Err, hint)
	}
	return pes
}

// isEventFunction reports whether name is one of the event-window
// functions users call (not an internal __ one).
func isEventFunction(name string) bool {
	return sinceFuncs[name] != "" || name == funcAfterBeforeRatio || name == funcAfterBeforeDifference ||
		name == funcTimeSinceWindowStart || name == funcTimeSinceWindowEnd || name == funcOverWindows
}

// prepareEventCalls checks and rewrites, in place, every event-window call
// in expr (see eventfuncs.go): the window argument w becomes
// __event_windows(w) with the range argument's offset, and
// after_before_*(f(..., m[r]), w[, d]) becomes __after_before_*:f(..., m[r],
// __event_windows(w), d), with d = +Inf (the window's own end) if omitted.
func prepareEventCalls(node parser.Node) error {
	if c, ok := node.(*parser.Call); ok {
		if err := prepareCall(c); err != nil {
			return err
		}
	}
	for _, child := range parser.Children(node) {
		if err := prepareEventCalls(child); err != nil {
			return err
		}
	}
	return nil
}

func prepareCall(c *parser.Call) error {
	name := c.Func.Name
	switch {
	case sinceFuncs[name] != "":
		mi := 0
		if name == "quantile_since" {
			mi = 1
		}
		offset, rng, err := rangeOffset(name, c.Args[mi])
		if err != nil {
			return err
		}
		w, err := windowArg(name, c.Args[mi+1], offset, &eventWindows{fn: name, call: c, mi: mi, origRange: rng})
		if err != nil {
			return err
		}
		c.Args[mi+1] = w
	case name == funcAfterBeforeRatio || name == funcAfterBeforeDifference:
		inner, ok := unwrapParens(c.Args[0]).(*parser.Call)
		if !ok || !slices.Contains(afterBeforeInner, inner.Func.Name) {
			return parseErr(c.Args[0], "%s: the first argument must be a range function such as rate(m[1h]) or quantile_over_time(0.99, m[1h]) (one of %s), got %s",
				name, strings.Join(afterBeforeInner, ", "), c.Args[0])
		}
		mi := 0
		if inner.Func.Name == "quantile_over_time" {
			mi = 1
		}
		offset, rng, err := rangeOffset(name, inner.Args[mi])
		if err != nil {
			return err
		}
		w, err := windowArg(name, c.Args[1], offset, &eventWindows{fn: name, call: c, mi: mi, origRange: rng, before: true})
		if err != nil {
			return err
		}
		var d parser.Expr = &parser.NumberLiteral{Val: math.Inf(1), PosRange: posrange.PositionRange{Start: c.PosRange.End, End: c.PosRange.End}}
		if len(c.Args) > 2 {
			d = c.Args[2]
		}
		args := append(slices.Clone(inner.Args), w, d)
		c.Func = afterBeforeFunction(name, inner.Func.Name)
		c.Args = args
	case name == funcOverWindows:
		return prepareOverWindows(c)
	case name == funcTimeSinceWindowStart || name == funcTimeSinceWindowEnd:
		w, err := windowArg(name, c.Args[0], 0, &eventWindows{fn: name, call: c, mi: -1})
		if err != nil {
			return err
		}
		c.Args[0] = w
	}
	return nil
}

// rangeOffset checks the range argument of fn and returns its offset and
// range.
func rangeOffset(fn string, e parser.Expr) (offset, rng time.Duration, err error) {
	var at bool
	switch r := e.(type) {
	case *parser.MatrixSelector:
		vs := r.VectorSelector.(*parser.VectorSelector)
		offset, rng, at = vs.OriginalOffset, r.Range, vs.Timestamp != nil || vs.StartOrEnd != 0
	case *parser.SubqueryExpr:
		offset, rng, at = r.OriginalOffset, r.Range, r.Timestamp != nil || r.StartOrEnd != 0
	default:
		return 0, 0, parseErr(e, "%s: the range argument must be a range selector such as m[1h] or a subquery, got %s", fn, e)
	}
	if at {
		return 0, 0, parseErr(e, "%s: the @ modifier is not supported on the range argument; the windows are looked up at each evaluation time", fn)
	}
	return offset, rng, nil
}

// windowArg checks the window argument of fn and returns it prepared:
// __event_windows(<selector> offset <offset>), the selector holding ew.
func windowArg(fn string, e parser.Expr, offset time.Duration, ew *eventWindows) (parser.Expr, error) {
	vs, ok := unwrapParens(e).(*parser.VectorSelector)
	if !ok {
		return nil, parseErr(e, "%s: the window argument must be a selector of %s, such as change_event_active{event_name=\"deploy\"}, got %s", fn, strings.Join(windowMetrics, ", "), e)
	}
	named := false
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName {
			named = m.Type == labels.MatchEqual && slices.Contains(windowMetrics, m.Value)
			if !named {
				break
			}
		}
	}
	if !named {
		return nil, parseErr(e, "%s: the window argument must select one of %s by name, such as change_event_active{event_name=\"deploy\"}, got %s", fn, strings.Join(windowMetrics, ", "), e)
	}
	if vs.Timestamp != nil || vs.StartOrEnd != 0 || vs.OriginalOffset != 0 {
		return nil, parseErr(e, "%s: the window argument cannot have an offset or @ modifier; it follows the range argument's offset", fn)
	}
	if vs.Anchored || vs.Smoothed {
		return nil, parseErr(e, "%s: the window argument cannot be anchored or smoothed", fn)
	}
	vs.OriginalOffset = offset
	vs.Offset = offset
	vs.Series = []storage.Series{ew}
	return &parser.Call{Func: windowListFunction, Args: parser.Expressions{vs}, PosRange: vs.PosRange}, nil
}

func unwrapParens(e parser.Expr) parser.Expr {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

func parseErr(e parser.Expr, format string, args ...any) error {
	return &parser.ParseErr{PositionRange: e.PositionRange(), Err: fmt.Errorf(format, args...)}
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
