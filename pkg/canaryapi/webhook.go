package canaryapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
)

// flaggerPayload is the body of a Flagger webhook
// (flaggerv1.CanaryWebhookPayload).
type flaggerPayload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Phase     string            `json:"phase"`
	Checksum  string            `json:"checksum"`
	Metadata  map[string]string `json:"metadata"`
}

// WebhookHandler serves POST /api/v1/analysis:webhook for Flagger's
// webhooks, which pass or fail by status code: the webhook's metadata
// "request" is an AnalyzeRequest in JSON, in which ${name} and
// ${namespace} are replaced by the canary's; the answer is 200 with the
// AnalyzeResponse when the verdict is Pass (or Marginal, with metadata
// "pass_on": "Marginal"), and otherwise 412 with one line that says why,
// which Flagger shows as the reason of the failed check.
func (s *Service) WebhookHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(code int, msg string) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(code)
			_, _ = io.WriteString(w, msg+"\n")
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
		if err != nil {
			fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("body: larger than %d bytes", s.opts.MaxBodyBytes))
			return
		}
		var p flaggerPayload
		if err := json.Unmarshal(body, &p); err != nil {
			fail(http.StatusBadRequest, "body: not a Flagger webhook payload: "+err.Error())
			return
		}
		raw, ok := p.Metadata["request"]
		if !ok {
			fail(http.StatusBadRequest, `metadata.request: is required: the analysis request as JSON (POST /api/v1/analysis body)`)
			return
		}
		passOn := p.Metadata["pass_on"]
		switch passOn {
		case "", "Pass", "Marginal":
		default:
			fail(http.StatusBadRequest, fmt.Sprintf(`metadata.pass_on: %q is not "Pass" or "Marginal"`, passOn))
			return
		}
		raw = strings.NewReplacer("${name}", p.Name, "${namespace}", p.Namespace).Replace(raw)
		var req levitatedv1.AnalyzeRequest
		if err := protojson.Unmarshal([]byte(raw), &req); err != nil {
			fail(http.StatusBadRequest, "metadata.request: "+err.Error())
			return
		}
		resp, err := s.analyze(r.Context(), &req)
		if err != nil {
			st := status.Convert(toStatus(err))
			fail(runtime.HTTPStatusFromCode(st.Code()), "metadata.request: "+st.Message())
			return
		}
		if s.opts.Recorder != nil {
			ev, err := s.record(r.Context(), Outcome{Source: SourceFlagger, ID: flaggerID(p, resp), Attributes: p.attributes(), Response: resp})
			if err != nil {
				st := status.Convert(err)
				fail(runtime.HTTPStatusFromCode(st.Code()), st.Message())
				return
			}
			w.Header().Set("Levitated-Analysis-Id", flaggerID(p, resp))
			w.Header().Set("Levitated-Analysis-Event-Id", ev)
		}
		passed := resp.GetVerdict() == "Pass" || (passOn == "Marginal" && resp.GetVerdict() == "Marginal")
		if !passed {
			fail(http.StatusPreconditionFailed, summary(resp))
			return
		}
		b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(resp)
		if err != nil {
			fail(http.StatusInternalServerError, "encode response: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
}

// flaggerID names one webhook judgement: the canary, the phase, the
// revision (Flagger's checksum) and the analysed time, so that the calls
// of one phase over one closed window are recorded once, and each call over
// a moving time (lookback, an open window) once each.
func flaggerID(p flaggerPayload, resp *levitatedv1.AnalyzeResponse) string {
	return fmt.Sprintf("%s/%s/%s/%s/%d-%d", p.Namespace, p.Name, p.Phase, p.Checksum,
		resp.GetStart().AsTime().UnixMilli(), resp.GetEnd().AsTime().UnixMilli())
}

// attributes are the recorded attributes of a webhook judgement: the
// canary, its namespace, the phase and the revision, where given.
func (p flaggerPayload) attributes() map[string]string {
	a := map[string]string{}
	for k, v := range map[string]string{"canary": p.Name, "namespace": p.Namespace, "phase": p.Phase, "checksum": p.Checksum} {
		if v != "" {
			a[k] = v
		}
	}
	return a
}

// summary says in one line why an analysis did not pass.
func summary(resp *levitatedv1.AnalyzeResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "canary analysis: %s, score %v (pass %v, marginal %v)", resp.GetVerdict(), resp.GetScore(),
		resp.GetThresholds().GetPass(), resp.GetThresholds().GetMarginal())
	if resp.GetReason() != "" {
		fmt.Fprintf(&b, "; %s", resp.GetReason())
	}
	for _, m := range resp.GetMetrics() {
		if m.GetClassification() != "Pass" {
			fmt.Fprintf(&b, "; %s: %s. %s", m.GetName(), m.GetClassification(), m.GetExplanation())
		}
	}
	return b.String()
}
