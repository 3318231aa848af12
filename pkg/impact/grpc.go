package impact

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
)

// GRPC serves levitated.v1.ImpactService: GetImpact is Impact,
// EvaluateGate is Gate. A gate's block is an answer (allowed false), not
// an error; errors carry the status their causes name (NotFound,
// InvalidArgument).
type GRPC struct {
	levitatedv1.UnimplementedImpactServiceServer
	s *Service
}

// GRPC returns the service's gRPC face.
func (s *Service) GRPC() *GRPC { return &GRPC{s: s} }

// GetImpact answers the recorded judgement of a change.
func (g *GRPC) GetImpact(ctx context.Context, req *levitatedv1.GetImpactRequest) (*levitatedv1.GetImpactResponse, error) {
	jd, err := g.s.Impact(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &levitatedv1.GetImpactResponse{Judgement: judgementProto(jd)}, nil
}

// EvaluateGate decides whether a change may proceed.
func (g *GRPC) EvaluateGate(ctx context.Context, req *levitatedv1.EvaluateGateRequest) (*levitatedv1.EvaluateGateResponse, error) {
	res, err := g.s.Gate(ctx, GateRequest{
		Service: req.GetService(), Event: req.GetEvent(), EventID: req.GetEventId(), Match: req.GetMatch(),
		Signals: req.GetSignals(), AllowMarginal: req.GetAllowMarginal(), DryRun: req.GetDryRun(),
	})
	if err != nil {
		return nil, err
	}
	return &levitatedv1.EvaluateGateResponse{
		Allowed: res.Allowed, Decision: res.Decision, Verdict: res.Verdict, Score: res.Score,
		ChangeId: res.ChangeID, Source: res.Source, Reasons: res.Reasons,
		Judgement: judgementProto(res.Judgement), EventId: res.EventID,
	}, nil
}

func judgementProto(jd Judgement) *levitatedv1.ImpactJudgement {
	c := jd.Change
	out := &levitatedv1.ImpactJudgement{
		Change: &levitatedv1.ImpactChange{
			Id: c.ID, Name: c.Name, Attributes: c.Attributes, Service: c.Service,
			Start: timestamppb.New(c.Start), End: timestamppb.New(c.End), Point: c.Point, Open: c.Open,
		},
		Verdict: jd.Verdict, Score: jd.Score, FailingSignals: jd.Failing, Explanation: jd.Explanation,
		JudgedAt: timestamppb.New(jd.JudgedAt), EventId: jd.EventID, Phase: jd.Phase, Supersedes: jd.Supersedes,
	}
	for _, cmp := range jd.Comparisons {
		pc := &levitatedv1.ImpactComparison{
			Kind: cmp.Kind, Verdict: cmp.Verdict, Score: cmp.Score,
			Start: timestamppb.New(cmp.Start), End: timestamppb.New(cmp.End),
			BaselineStart: timestamppb.New(cmp.BaselineStart), BaselineEnd: timestamppb.New(cmp.BaselineEnd),
			Baseline: cmp.Baseline, Canary: cmp.Canary,
		}
		for _, s := range cmp.Signals {
			pc.Signals = append(pc.Signals, &levitatedv1.ImpactSignal{
				Signal: s.Signal, Labels: s.Labels, Classification: s.Classification, Judged: s.Judged, Critical: s.Critical,
				Explanation: s.Explanation, Ratio: s.Ratio, BaselineCount: int32(s.BaselineCount), CanaryCount: int32(s.CanaryCount),
				BaselineMean: s.BaselineMean, CanaryMean: s.CanaryMean, Shift: s.Shift, ShiftLower: s.ShiftLower,
				ShiftUpper: s.ShiftUpper, ToleranceBand: s.ToleranceBand, Query: s.Query,
			})
		}
		out.Comparisons = append(out.Comparisons, pc)
	}
	return out
}
