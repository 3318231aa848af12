package server

import (
	"context"
	"encoding/json"
	"math"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/levitated/levitated/pkg/analysis"
	"github.com/levitated/levitated/pkg/canaryapi"
	"github.com/levitated/levitated/pkg/impact"
	"github.com/levitated/levitated/pkg/kayenta"
)

// analysisRecorder records the analyses asked of the native API, Flagger's
// webhook and the Kayenta API as change_analysis events and series
// (pkg/impact), linked to the change each judged: every canary outcome is
// queryable history (docs/impact.md).
type analysisRecorder struct{ impact *impact.Service }

var (
	_ canaryapi.Recorder = analysisRecorder{}
	_ kayenta.Recorder   = analysisRecorder{}
)

// RecordAnalysis implements canaryapi.Recorder.
func (r analysisRecorder) RecordAnalysis(ctx context.Context, o canaryapi.Outcome) (string, error) {
	resp := o.Response
	rec := impact.AnalysisRecord{
		Source:        o.Source,
		ID:            o.ID,
		Verdict:       resp.GetVerdict(),
		Start:         resp.GetStart().AsTime(),
		End:           resp.GetEnd().AsTime(),
		BaselineStart: resp.GetBaselineStart().AsTime(),
		BaselineEnd:   resp.GetBaselineEnd().AsTime(),
		ChangeID:      resp.GetWindow().GetStartId(),
		Attributes:    o.Attributes,
	}
	score := resp.GetScore()
	rec.Score = &score
	for _, m := range resp.GetMetrics() {
		rec.Metrics = append(rec.Metrics, impact.AnalysisMetric{Name: m.GetName(), Labels: m.GetLabels(),
			Classification: m.GetClassification(), Ratio: m.Ratio})
	}
	if b, err := (protojson.MarshalOptions{EmitUnpopulated: true}).Marshal(resp); err == nil {
		rec.Text = string(b)
	}
	ev, err := r.impact.RecordAnalysis(ctx, rec)
	return ev.ID, err
}

// RecordExecution implements kayenta.Recorder.
func (r analysisRecorder) RecordExecution(ctx context.Context, o kayenta.Outcome) error {
	rec := impact.AnalysisRecord{
		Source: impact.SourceKayenta, ID: o.ID, Verdict: impact.VerdictError,
		Start: o.Start, End: o.End, BaselineStart: o.BaselineStart, BaselineEnd: o.BaselineEnd,
		ChangeID: o.ChangeID, Text: string(o.Status), Attributes: map[string]string{},
	}
	for k, v := range map[string]string{"application": o.Application, "canary_config": o.ConfigName, "canary_config_id": o.ConfigID} {
		if v != "" {
			rec.Attributes[k] = v
		}
	}
	if res := o.Result; res != nil {
		rec.Verdict = res.Score.Classification
		score := float64(res.Score.Score)
		rec.Score = &score
		for _, m := range res.Results {
			am := impact.AnalysisMetric{Name: m.Name, Labels: m.Tags, Classification: m.Classification}
			noData := m.Classification == analysis.ClassificationNodata
			if md := m.ResultMetadata; md != nil && !noData {
				if v := float64(md.Ratio); !math.IsNaN(v) && !math.IsInf(v, 0) {
					am.Ratio = &v
				}
			}
			rec.Metrics = append(rec.Metrics, am)
		}
	} else if o.Error != "" && len(o.Status) == 0 {
		b, _ := json.Marshal(map[string]string{"error": o.Error})
		rec.Text = string(b)
	}
	_, err := r.impact.RecordAnalysis(ctx, rec)
	return err
}
