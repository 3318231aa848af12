package canaryapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
)

// Recorder keeps the outcome of every analysis asked for as history (the
// server wires it to pkg/impact, which writes a change_analysis event and
// series). One record per Source and ID: a second returns the first's
// event id.
type Recorder interface {
	RecordAnalysis(ctx context.Context, o Outcome) (eventID string, err error)
}

// Outcome is one analysis's request and answer.
type Outcome struct {
	// Source is "analysis" (the API) or "flagger" (the webhook).
	Source string
	// ID names the analysis within its source.
	ID string
	// Attributes describe the analysis (Flagger's canary, namespace,
	// phase and checksum).
	Attributes map[string]string
	Response   *levitatedv1.AnalyzeResponse
}

// Sources of the outcomes this package records.
const (
	SourceAnalysis = "analysis"
	SourceFlagger  = "flagger"
)

// Metadata and headers of the analysis id.
const (
	// mdIdempotencyKey is the gRPC metadata (and, through the REST face,
	// the Idempotency-Key header) naming the analysis: a retry with the
	// same key is recorded once.
	mdIdempotencyKey = "idempotency-key"
	// mdAnalysisID and mdEventID answer the analysis's id and its
	// change_analysis event (REST: Levitated-Analysis-Id,
	// Levitated-Analysis-Event-Id).
	mdAnalysisID = "levitated-analysis-id"
	mdEventID    = "levitated-analysis-event-id"
)

// maxAnalysisID bounds a client's analysis id (an idempotency key of the
// event store is at most 256 bytes, with our prefix).
const maxAnalysisID = 200

// record records an answered analysis, if a Recorder is set. It returns the
// change_analysis event's id.
func (s *Service) record(ctx context.Context, o Outcome) (string, error) {
	if s.opts.Recorder == nil {
		return "", nil
	}
	id, err := s.opts.Recorder.RecordAnalysis(ctx, o)
	if err != nil {
		return "", status.Errorf(codes.Unavailable, "the analysis was judged (%s, score %v) but its record could not be stored (%v); %s",
			o.Response.GetVerdict(), o.Response.GetScore(), err, retryHint(o.Source))
	}
	return id, nil
}

func retryHint(source string) string {
	if source == SourceFlagger {
		return "the next webhook call records it"
	}
	return "retry with the same Idempotency-Key to record it once"
}

// analysisID is the client's idempotency key (gRPC metadata
// idempotency-key, REST header Idempotency-Key), or a new random id.
func analysisID(ctx context.Context) (string, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(mdIdempotencyKey); len(v) > 0 && v[0] != "" {
			if len(v[0]) > maxAnalysisID || strings.ContainsFunc(v[0], func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				return "", fieldErr("Idempotency-Key", "at most %d printable bytes", maxAnalysisID)
			}
			return v[0], nil
		}
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make an analysis id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Analyze implements levitated.v1.AnalysisService: the analysis, recorded
// (with a Recorder) as SourceAnalysis under the request's idempotency key.
// The answer's header metadata carries the analysis id and its event.
func (s *Service) Analyze(ctx context.Context, req *levitatedv1.AnalyzeRequest) (*levitatedv1.AnalyzeResponse, error) {
	var id string
	if s.opts.Recorder != nil {
		var err error
		if id, err = analysisID(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	resp, err := s.analyze(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	if s.opts.Recorder == nil {
		return resp, nil
	}
	ev, err := s.record(ctx, Outcome{Source: SourceAnalysis, ID: id, Response: resp})
	if err != nil {
		return nil, err
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(mdAnalysisID, id, mdEventID, ev)) // no stream: a direct call
	return resp, nil
}

// responseJSON is the answer as the REST face writes it.
func responseJSON(resp *levitatedv1.AnalyzeResponse) string {
	b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(resp)
	if err != nil {
		return ""
	}
	return string(b)
}
