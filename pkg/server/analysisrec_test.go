package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
)

type recordedAnalysis struct {
	ID         string            `json:"id"`
	Text       string            `json:"text"`
	Attributes map[string]string `json:"attributes"`
}

// analysisRecords lists the change_analysis events matching match.
func analysisRecords(t *testing.T, u string, match ...string) []recordedAnalysis {
	t.Helper()
	r := get(t, u, "/api/v1/events", url.Values{"name": {"change_analysis"}, "match": match})
	require.Equal(t, http.StatusOK, r.code, r.body)
	var listed struct {
		Events []recordedAnalysis `json:"events"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &listed))
	return listed.Events
}

// TestEveryAnalysisIsRecorded asks for the same canary judgement (5 times
// the baseline's error ratio, over a canary-step window sent as events)
// through the native API (REST and gRPC), Flagger's webhook and the
// Kayenta API of the real server, and finds each recorded once as a
// change_analysis event and series, linked to the window, naming its
// source and id; a retry with the same id records nothing more.
func TestEveryAnalysisIsRecorded(t *testing.T) {
	srv := startOnDir(t, t.TempDir())
	defer srv.stop()
	end := time.Now().Truncate(time.Minute).Add(-time.Minute)
	start := end.Add(-30 * time.Minute)
	writeCanary(t, srv.URL, end, 5)
	window := postEvent(t, srv.URL, fmt.Sprintf(`{"name":"canary-step","state":"start","timestamp":%d,"attributes":{"service":"checkout","stage":"2"}}`, start.Unix()))
	postEvent(t, srv.URL, fmt.Sprintf(`{"name":"canary-step","state":"stop","timestamp":%d,"attributes":{"service":"checkout","stage":"2"}}`, end.Unix()))
	linked := func(t *testing.T, a map[string]string) {
		t.Helper()
		require.Equal(t, window, a["change_id"])
		require.Equal(t, "canary-step", a["change_name"])
		require.Equal(t, "checkout", a["change_service"])
		require.Equal(t, "2", a["stage"])
		require.Equal(t, unixString(start), a["change_start"])
		require.Equal(t, unixString(end), a["change_end"])
		require.Equal(t, "fail", a["verdict"])
		require.Equal(t, "0", a["score"])
		require.Equal(t, "error-ratio", a["failing_signals"])
	}
	request := fmt.Sprintf(`{"baseline": "version=\"stable\"", "canary": "version=\"canary\"",
	  "window": {"event": "canary-step", "event_id": %q},
	  "metrics": [{"name": "error-ratio", "query": %q, "direction": "increase", "critical": true}]}`, window, serverErrorRatio)

	t.Run("native REST", func(t *testing.T) {
		var eventID string
		for range 2 { // a retry with the same key is recorded once
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/analysis", strings.NewReader(request))
			require.NoError(t, err)
			req.Header.Set("Idempotency-Key", "rollout-7/step-2")
			r := do(t, req)
			require.Equal(t, http.StatusOK, r.code, r.body)
			require.Equal(t, "rollout-7/step-2", r.header.Get("Levitated-Analysis-Id"))
			if eventID == "" {
				eventID = r.header.Get("Levitated-Analysis-Event-Id")
				require.NotEmpty(t, eventID)
			}
			require.Equal(t, eventID, r.header.Get("Levitated-Analysis-Event-Id"))
		}
		recs := analysisRecords(t, srv.URL, `source="analysis"`, `analysis_id="rollout-7/step-2"`)
		require.Len(t, recs, 1)
		require.Equal(t, eventID, recs[0].ID)
		linked(t, recs[0].Attributes)
		require.Equal(t, unixString(start), recs[0].Attributes["analysis_start"])
		var answer struct{ Verdict string }
		require.NoError(t, json.Unmarshal([]byte(recs[0].Text), &answer), "the event's text is the answer")
		require.Equal(t, "Fail", answer.Verdict)

		require.Equal(t, 0.0, instant(t, srv.URL, `change_analysis_score{source="analysis",analysis_id="rollout-7/step-2",change_id="`+window+`",event_name="canary-step",stage="2",verdict="fail"}`))
		require.Greater(t, instant(t, srv.URL, `change_analysis_signal_ratio{source="analysis",analysis_id="rollout-7/step-2",signal="error-ratio"}`), 3.0)
		require.Equal(t, 1.0, instant(t, srv.URL, `sum(count_over_time(change_analysis_score{analysis_id="rollout-7/step-2"}[1h]))`))

		// Without a key, each analysis is recorded under a new id.
		r := sendJSON(t, http.MethodPost, srv.URL+"/api/v1/analysis", request)
		require.Equal(t, http.StatusOK, r.code, r.body)
		id := r.header.Get("Levitated-Analysis-Id")
		require.NotEmpty(t, id)
		require.NotEqual(t, "rollout-7/step-2", id)
		require.Len(t, analysisRecords(t, srv.URL, `analysis_id="`+id+`"`), 1)

		// A bad key is refused naming it.
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/analysis", strings.NewReader(request))
		require.NoError(t, err)
		req.Header.Set("Idempotency-Key", strings.Repeat("k", 201))
		r = do(t, req)
		require.Equal(t, http.StatusBadRequest, r.code, r.body)
		require.Contains(t, r.body, "Idempotency-Key")
	})

	t.Run("native gRPC", func(t *testing.T) {
		conn, err := grpc.NewClient(srv.URL[len("http://"):], grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		defer conn.Close()
		var req levitatedv1.AnalyzeRequest
		req.Baseline, req.Canary = `version="stable"`, `version="canary"`
		req.Window = &levitatedv1.EventWindow{Event: "canary-step", EventId: window}
		req.Metrics = []*levitatedv1.AnalysisMetric{{Name: "error-ratio", Query: serverErrorRatio, Direction: "increase", Critical: true}}
		ctx := metadata.AppendToOutgoingContext(context.Background(), "idempotency-key", "grpc-1")
		var header metadata.MD
		resp, err := levitatedv1.NewAnalysisServiceClient(conn).Analyze(ctx, &req, grpc.Header(&header))
		require.NoError(t, err)
		require.Equal(t, "Fail", resp.GetVerdict())
		require.Equal(t, []string{"grpc-1"}, header.Get("levitated-analysis-id"))
		recs := analysisRecords(t, srv.URL, `source="analysis"`, `analysis_id="grpc-1"`)
		require.Len(t, recs, 1)
		require.Equal(t, header.Get("levitated-analysis-event-id"), []string{recs[0].ID})
		linked(t, recs[0].Attributes)
	})

	t.Run("Flagger webhook", func(t *testing.T) {
		payload := fmt.Sprintf(`{"name":"checkout","namespace":"shop","phase":"Progressing","checksum":"abc123",
		  "metadata":{"request":%q}}`, request)
		var eventID string
		for range 2 { // Flagger calls at every interval: one record per phase, revision and closed window
			r := sendJSON(t, http.MethodPost, srv.URL+"/api/v1/analysis:webhook", payload)
			require.Equal(t, http.StatusPreconditionFailed, r.code, r.body)
			require.Contains(t, r.body, "error-ratio: High")
			if eventID == "" {
				eventID = r.header.Get("Levitated-Analysis-Event-Id")
				require.NotEmpty(t, eventID)
			}
			require.Equal(t, eventID, r.header.Get("Levitated-Analysis-Event-Id"))
		}
		recs := analysisRecords(t, srv.URL, `source="flagger"`)
		require.Len(t, recs, 1)
		a := recs[0].Attributes
		linked(t, a)
		require.Equal(t, fmt.Sprintf("shop/checkout/Progressing/abc123/%d-%d", start.UnixMilli(), end.UnixMilli()), a["analysis_id"])
		require.Equal(t, "checkout", a["canary"])
		require.Equal(t, "shop", a["namespace"])
		require.Equal(t, "Progressing", a["phase"])
		require.Equal(t, 0.0, instant(t, srv.URL, `change_analysis_score{source="flagger",canary="checkout",phase="Progressing"}`))
	})

	t.Run("Kayenta", func(t *testing.T) {
		r := sendJSON(t, http.MethodPost, srv.URL+"/canaryConfig", kayentaConfig())
		require.Equal(t, http.StatusOK, r.code, r.body)
		var created struct{ CanaryConfigID string }
		require.NoError(t, json.Unmarshal([]byte(r.body), &created))
		body := strings.TrimSuffix(kayentaRequest(start, end), "}") + fmt.Sprintf(`,"metadata":[{"name":"event_id","value":%q}]}`, window)
		r = sendJSON(t, http.MethodPost, srv.URL+"/canary/"+created.CanaryConfigID+"?application=checkout", body)
		require.Equal(t, http.StatusOK, r.code, r.body)
		var started struct{ CanaryExecutionID string }
		require.NoError(t, json.Unmarshal([]byte(r.body), &started))
		st := waitForExecution(t, srv.URL, started.CanaryExecutionID)
		require.Equal(t, "succeeded", st["status"], st["exception"])
		// Recorded before the execution is marked complete.
		recs := analysisRecords(t, srv.URL, `source="kayenta"`, `analysis_id="`+started.CanaryExecutionID+`"`)
		require.Len(t, recs, 1)
		a := recs[0].Attributes
		linked(t, a)
		require.Equal(t, "checkout", a["application"])
		require.Equal(t, "checkout", a["canary_config"])
		require.Equal(t, created.CanaryConfigID, a["canary_config_id"])
		require.Equal(t, 0.0, instant(t, srv.URL, `change_analysis_score{source="kayenta",analysis_id="`+started.CanaryExecutionID+`"}`))

		// An execution that names no change is recorded unlinked, with
		// its own verdict (here the canary scope has no data).
		noData := strings.Replace(kayentaRequest(start, end), `"canary"`, `"nope"`, 1)
		r = sendJSON(t, http.MethodPost, srv.URL+"/canary", fmt.Sprintf(`{"canaryConfig":%s,"executionRequest":%s}`, kayentaConfig(), noData))
		require.Equal(t, http.StatusOK, r.code, r.body)
		require.NoError(t, json.Unmarshal([]byte(r.body), &started))
		st = waitForExecution(t, srv.URL, started.CanaryExecutionID)
		require.Equal(t, "succeeded", st["status"], st["exception"])
		verdict := st["result"].(map[string]any)["judgeResult"].(map[string]any)["score"].(map[string]any)["classification"].(string)
		recs = analysisRecords(t, srv.URL, `source="kayenta"`, `analysis_id="`+started.CanaryExecutionID+`"`)
		require.Len(t, recs, 1)
		require.Equal(t, strings.ToLower(verdict), recs[0].Attributes["verdict"])
		require.Equal(t, "error-ratio", recs[0].Attributes["nodata_signals"])
		require.Empty(t, recs[0].Attributes["change_id"])
	})
}
