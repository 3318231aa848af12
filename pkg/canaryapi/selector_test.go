package canaryapi

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	levpromql "github.com/levitated/levitated/pkg/promql"
)

func TestWithMatchers(t *testing.T) {
	s := &Service{parser: levpromql.NewParser()}
	ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "version", "canary"), labels.MustNewMatcher(labels.MatchRegexp, "pod", "web-.*")}
	for _, tc := range []struct{ in, want string }{
		{`up`, `up{pod=~"web-.*",version="canary"}`},
		{`sum(rate(http_requests_total{code=~"5.."}[1m])) / sum(rate(http_requests_total[1m]))`,
			`sum(rate(http_requests_total{code=~"5..",pod=~"web-.*",version="canary"}[1m])) / sum(rate(http_requests_total{pod=~"web-.*",version="canary"}[1m]))`},
		{`max_over_time(up[5m:1m])`, `max_over_time(up{pod=~"web-.*",version="canary"}[5m:1m])`},
		// Change-event series keep their labels.
		{`sum(rate(errors_total[1m])) and on() change_event_active{event_name="canary-step"}`,
			`sum(rate(errors_total{pod=~"web-.*",version="canary"}[1m])) and on () change_event_active{event_name="canary-step"}`},
		{`sum(increase_since(http_requests_total[1h], change_event_active{event_name="canary-step"}))`,
			`sum(increase_since(http_requests_total{pod=~"web-.*",version="canary"}[1h], change_event_active{event_name="canary-step"}))`},
		{`count(last9_change_events)`, `count(last9_change_events)`},
	} {
		got, err := s.withMatchers(tc.in, ms)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
		_, err = s.parser.ParseExpr(got)
		require.NoError(t, err, got)
	}
	got, err := s.withMatchers("up", nil)
	require.NoError(t, err)
	require.Equal(t, "up", got)
}
