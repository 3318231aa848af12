package impact

import (
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/levitated/levitated/pkg/events"
)

// Figures are the DORA figures of one service's changes of one name, as
// the change_* series carry them (docs/impact.md, "Change health"):
//
//   - Deployments: judged changes, whatever the verdict
//     (change_deployments_total; deployment frequency is its increase).
//   - Failures: changes judged fail (change_failures_total; the change
//     failure rate is failures over deployments).
//   - LeadTimeSum, LeadTimes: over changes with a commit_timestamp
//     attribute, the time from the commit to the change's end
//     (change_lead_time_seconds_sum and _count).
//   - RestoreSum, Restores: for each run of failed changes ended by a
//     change judged pass, the time from the start of the first failed change
//     to the end of the passing one (change_restore_seconds_sum and _count).
//     Marginal and inconclusive changes neither fail nor restore.
type Figures struct {
	Deployments, Failures int
	LeadTimeSum           time.Duration
	LeadTimes             int
	RestoreSum            time.Duration
	Restores              int
}

// DORA computes the figures from change_impact events, in the order of
// their time (the judgements' times). A change judged twice (a final
// judgement after late data) counts once, with the later verdict, in the
// place of the first.
func DORA(judgements []events.Event) Figures {
	sorted := slices.Clone(judgements)
	slices.SortStableFunc(sorted, func(a, b events.Event) int { return a.Time.Compare(b.Time) })
	var js []events.Event
	at := map[string]int{} // change id → index in js
	for _, e := range sorted {
		if e.Attributes[attrPhase] == PhaseEarly {
			continue // the window was open: not a deployment yet
		}
		id := e.Attributes[attrChangeID]
		if i, ok := at[id]; ok && id != "" {
			js[i] = e
			continue
		}
		at[id] = len(js)
		js = append(js, e)
	}
	var f Figures
	failedSince := math.NaN() // start of the first unrestored failure
	for _, e := range js {
		a := e.Attributes
		f.Deployments++
		if lt, err := strconv.ParseFloat(a[attrLeadTime], 64); err == nil {
			f.LeadTimeSum += seconds(lt)
			f.LeadTimes++
		}
		switch a[attrVerdict] {
		case VerdictFail:
			f.Failures++
			if start, err := strconv.ParseFloat(a[attrChangeStart], 64); err == nil && math.IsNaN(failedSince) {
				failedSince = start
			}
		case VerdictPass:
			if end, err := strconv.ParseFloat(a[attrChangeEnd], 64); err == nil && !math.IsNaN(failedSince) {
				f.RestoreSum += seconds(end - failedSince)
				f.Restores++
				failedSince = math.NaN()
			}
		}
	}
	return f
}

func seconds(s float64) time.Duration { return time.Duration(math.Round(s * 1e9)) }
