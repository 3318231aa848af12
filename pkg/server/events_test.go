package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// postJSON sends a JSON body with method.
func sendJSON(t *testing.T, method, u, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

type queryResult struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

func decodeQuery(t *testing.T, r response) queryResult {
	t.Helper()
	require.Equal(t, http.StatusOK, r.code, r.body)
	var q queryResult
	require.NoError(t, json.Unmarshal([]byte(r.body), &q), r.body)
	return q
}

// TestChangeEventsOnTheRealServer writes events through every ingest path of
// the running server (REST, gRPC, Last9, Grafana annotations) and reads them
// back through the events API and as series through query_range, series and
// label values, then joins the window series with remote-written RED
// metrics.
func TestChangeEventsOnTheRealServer(t *testing.T) {
	srv := servertest.Start(t)
	base := time.Now().Add(-time.Hour).Truncate(time.Minute)
	at := func(d time.Duration) time.Time { return base.Add(d) }
	rfc := func(d time.Duration) string { return at(d).UTC().Format(time.RFC3339) }

	// RED metrics: 5xx counters of two services, +6 per 15 s (0.4/s).
	var ts []prompb.TimeSeries
	for _, svc := range []string{"checkout", "cart"} {
		s := prompb.TimeSeries{Labels: labelsV1("__name__", "http_requests_total", "code", "500", "service", svc)}
		for i := 0; i <= 40*4; i++ {
			s.Samples = append(s.Samples, prompb.Sample{Timestamp: at(time.Duration(i) * 15 * time.Second).UnixMilli(), Value: float64(6 * i)})
		}
		ts = append(ts, s)
	}
	require.Equal(t, http.StatusNoContent, writeV1(t, srv.URL, &prompb.WriteRequest{Timeseries: ts}).code)

	// REST: a deploy of checkout from 10m to 20m.
	r := sendJSON(t, http.MethodPost, srv.URL+"/api/v1/events", fmt.Sprintf(`{"events":[
		{"name":"deploy","state":"start","timestamp":%q,"attributes":{"service":"checkout","version":"1.2"}},
		{"name":"deploy","state":"stop","timestamp":%q,"attributes":{"service":"checkout","version":"1.2"}}]}`, rfc(10*time.Minute), rfc(20*time.Minute)))
	require.Equal(t, http.StatusOK, r.code, r.body)
	var created struct {
		Events []struct {
			ID string `json:"id"`
		} `json:"events"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &created))
	require.Len(t, created.Events, 2)

	// gRPC on the same port: a canary step of cart from 30m, still open.
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := levitatedv1.NewEventServiceClient(conn)
	_, err = client.CreateEvent(context.Background(), &levitatedv1.CreateEventRequest{Event: &levitatedv1.Event{
		Name: "canary-step", State: "start", Timestamp: timestamppb.New(at(30 * time.Minute)),
		Attributes: map[string]string{"service": "cart", "weight": "20"},
	}})
	require.NoError(t, err)

	// Last9's change-events API and Grafana's annotation API.
	r = sendJSON(t, http.MethodPut, srv.URL+"/api/v4/organizations/acme/change_events", fmt.Sprintf(
		`{"event_name":"config-change","event_state":"start","timestamp":%q,"attributes":{"service":"cart"}}`, rfc(5*time.Minute)))
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.JSONEq(t, `{"message":"success"}`, r.body)
	r = sendJSON(t, http.MethodPost, srv.URL+"/api/annotations", fmt.Sprintf(
		`{"time":%d,"timeEnd":%d,"tags":["scale-up","service:checkout"],"text":"scaled to 5"}`, at(25*time.Minute).UnixMilli(), at(27*time.Minute).UnixMilli()))
	require.Equal(t, http.StatusOK, r.code, r.body)

	// Read back through the events API.
	r = get(t, srv.URL, "/api/v1/events/"+created.Events[0].ID, nil)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, r.body, `"name":"deploy"`)
	r = get(t, srv.URL, "/api/v1/events", url.Values{"name": {"canary-step"}, "open_only": {"true"}})
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, r.body, `"weight":"20"`)

	// As series: label values and series.
	r = get(t, srv.URL, "/api/v1/label/event_name/values", nil)
	require.Equal(t, http.StatusOK, r.code, r.body)
	var lv struct {
		Data []string `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &lv))
	require.Subset(t, lv.Data, []string{"deploy", "canary-step", "config-change"})
	r = get(t, srv.URL, "/api/v1/series", url.Values{"match[]": {`change_event_active{event_name="deploy"}`}, "start": {unixString(base)}, "end": {unixString(at(time.Hour))}})
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, r.body, `"service":"checkout"`)
	require.Contains(t, r.body, `"version":"1.2"`)

	// change_event_active is 1 exactly inside [10m, 20m).
	q := decodeQuery(t, get(t, srv.URL, "/api/v1/query_range", url.Values{
		"query": {`change_event_active{event_name="deploy"}`},
		"start": {unixString(base)}, "end": {unixString(at(40 * time.Minute))}, "step": {"60"},
	}))
	require.Len(t, q.Data.Result, 1)
	var times []float64
	for _, v := range q.Data.Result[0].Values {
		times = append(times, v[0].(float64)-float64(base.Unix()))
		require.Equal(t, "1", v[1])
	}
	var want []float64
	for m := 10; m < 20; m++ {
		want = append(want, float64(m*60))
	}
	require.Equal(t, want, times)

	// last9_change_events: one sample per event, 1 for start, 2 for stop.
	q = decodeQuery(t, get(t, srv.URL, "/api/v1/query", url.Values{
		"query": {`last9_change_events{event_name="deploy"}`}, "time": {unixString(at(20 * time.Minute))},
	}))
	require.Len(t, q.Data.Result, 1)
	require.Equal(t, "stop", q.Data.Result[0].Metric["event_state"])
	require.Equal(t, "2", q.Data.Result[0].Value[1])

	// The join: 5xx rate per service, only while checkout was deployed.
	q = decodeQuery(t, get(t, srv.URL, "/api/v1/query_range", url.Values{
		"query": {`sum(rate(http_requests_total{code=~"5.."}[1m])) by (service) and on(service) change_event_active{event_name="deploy"}`},
		"start": {unixString(base)}, "end": {unixString(at(40 * time.Minute))}, "step": {"60"},
	}))
	require.Len(t, q.Data.Result, 1)
	require.Equal(t, map[string]string{"service": "checkout"}, q.Data.Result[0].Metric)
	times = times[:0]
	for _, v := range q.Data.Result[0].Values {
		times = append(times, v[0].(float64)-float64(base.Unix()))
		f, err := strconv.ParseFloat(v[1].(string), 64)
		require.NoError(t, err)
		require.InDelta(t, 0.4, f, 1e-12)
	}
	require.Equal(t, want, times)
}
