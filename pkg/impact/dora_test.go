package impact

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/events"
)

func TestDORA(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	j := func(min int, verdict string, start, end float64, lead string) events.Event {
		a := map[string]string{attrVerdict: verdict, attrChangeStart: fmtF(start), attrChangeEnd: fmtF(end)}
		if lead != "" {
			a[attrLeadTime] = lead
		}
		return events.Event{Time: t0.Add(time.Duration(min) * time.Minute), Attributes: a}
	}
	// Given out of order: DORA sorts by time.
	f := DORA([]events.Event{
		j(50, VerdictPass, 4000, 4100, ""),         // restores the failures from 1000: 3100 s
		j(10, VerdictPass, 100, 200, "60"),         // nothing to restore
		j(20, VerdictFail, 1000, 1100, "30.5"),     // failing since 1000
		j(30, VerdictInconclusive, 2000, 2100, ""), // neither
		j(40, VerdictFail, 3000, 3100, ""),         // still failing since 1000
		j(60, VerdictMarginal, 5000, 5100, ""),
		j(70, VerdictFail, 6000, 6100, ""), // not restored yet
	})
	require.Equal(t, Figures{
		Deployments: 7, Failures: 3,
		LeadTimeSum: 90500 * time.Millisecond, LeadTimes: 2,
		RestoreSum: 3100 * time.Second, Restores: 1,
	}, f)
}

func fmtF(v float64) string { return unixSeconds(time.UnixMilli(int64(v * 1000))) }
