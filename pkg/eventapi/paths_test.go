package eventapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
)

// base is a whole second, half an hour ago: inside retention, not future.
func base() time.Time { return time.Now().UTC().Truncate(time.Minute).Add(-30 * time.Minute) }

// promQuery evaluates expr at ts over the event series of tenant id.
func promQuery(t *testing.T, s *testServer, tenantID uint32, expr string, ts time.Time) promql.Vector {
	t.Helper()
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	qa := storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) { return s.store.Querier(tenantID, mint, maxt), nil })
	q, err := eng.NewInstantQuery(context.Background(), qa, nil, expr, ts)
	require.NoError(t, err)
	defer q.Close()
	res := q.Exec(context.Background())
	require.NoError(t, res.Err)
	v, err := res.Vector()
	require.NoError(t, err)
	out := make(promql.Vector, len(v))
	for i, smp := range v {
		out[i] = promql.Sample{Metric: smp.Metric.Copy(), T: smp.T, F: smp.F}
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Metric, out[j].Metric) < 0 })
	return out
}

// promRange evaluates expr from start to end and returns, per series, the
// evaluation times (seconds after start) with values.
func promRange(t *testing.T, s *testServer, tenantID uint32, expr string, start, end time.Time, step time.Duration) map[string]map[int]float64 {
	t.Helper()
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	qa := storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) { return s.store.Querier(tenantID, mint, maxt), nil })
	q, err := eng.NewRangeQuery(context.Background(), qa, nil, expr, start, end, step)
	require.NoError(t, err)
	defer q.Close()
	res := q.Exec(context.Background())
	require.NoError(t, res.Err)
	m, err := res.Matrix()
	require.NoError(t, err)
	out := map[string]map[int]float64{}
	for _, ser := range m {
		pts := map[int]float64{}
		for _, p := range ser.Floats {
			pts[int(time.UnixMilli(p.T).Sub(start)/time.Second)] = p.F
		}
		out[ser.Metric.String()] = pts
	}
	return out
}

// seriesNames returns the series and label values the /series and
// /label/<name>/values APIs would get from the event querier.
func seriesNames(t *testing.T, s *testServer, tenantID uint32, start, end time.Time, ms ...*labels.Matcher) []string {
	t.Helper()
	q := s.store.Querier(tenantID, start.UnixMilli(), end.UnixMilli())
	ss := q.Select(context.Background(), true, &storage.SelectHints{Start: start.UnixMilli(), End: end.UnixMilli(), Func: "series"}, ms...)
	var out []string
	for ss.Next() {
		out = append(out, ss.At().Labels().String())
	}
	require.NoError(t, ss.Err())
	return out
}

func grpcCtx(org string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-scope-orgid", org)
}

func TestGRPCPath(t *testing.T) {
	s := startServer(t)
	ctx := grpcCtx("team-a")
	b := base()

	tailCtx, cancelTail := context.WithCancel(ctx)
	defer cancelTail()
	stream, err := s.client.TailEvents(tailCtx, &levitatedv1.TailEventsRequest{Name: "deploy"})
	require.NoError(t, err)
	_, err = stream.Header() // the subscription is in place
	require.NoError(t, err)

	start, err := s.client.CreateEvent(ctx, &levitatedv1.CreateEventRequest{Event: &levitatedv1.Event{
		Name: "deploy", State: "start", Timestamp: timestamppb.New(b),
		Attributes: map[string]string{"service": "api", "version": "1.4.2"}, Text: "rollout", Url: "https://ci.example/42",
		Source: "ci", IdempotencyKey: "run-42-start",
	}})
	require.NoError(t, err)
	require.True(t, start.Event.Window.Open)
	stop, err := s.client.CreateEvent(ctx, &levitatedv1.CreateEventRequest{Event: &levitatedv1.Event{
		Name: "deploy", State: "stop", Timestamp: timestamppb.New(b.Add(90 * time.Second)),
		Attributes: map[string]string{"service": "api", "version": "1.4.2", "exit_code": "0"},
	}})
	require.NoError(t, err)
	require.Equal(t, start.Event.Id, stop.Event.StartId)

	got, err := s.client.GetEvent(ctx, &levitatedv1.GetEventRequest{Id: start.Event.Id})
	require.NoError(t, err)
	require.Equal(t, b, got.Event.Timestamp.AsTime())
	require.False(t, got.Event.Window.Open)
	require.Equal(t, stop.Event.Id, got.Event.Window.StopId)
	require.Equal(t, b.Add(90*time.Second), got.Event.Window.End.AsTime())
	require.Equal(t, "rollout", got.Event.Text)
	require.Equal(t, "https://ci.example/42", got.Event.Url)

	for _, want := range []string{start.Event.Id, stop.Event.Id} {
		r, err := stream.Recv()
		require.NoError(t, err)
		require.Equal(t, want, r.Event.Id)
	}

	batch, err := s.client.BatchCreateEvents(ctx, &levitatedv1.BatchCreateEventsRequest{Events: []*levitatedv1.Event{
		{Name: "canary-step", State: "start", Timestamp: timestamppb.New(b.Add(2 * time.Minute)), Attributes: map[string]string{"service": "api", "weight": "20"}},
		{Name: "canary-step", State: "stop", Timestamp: timestamppb.New(b.Add(4 * time.Minute)), Attributes: map[string]string{"service": "api", "weight": "20"}},
	}})
	require.NoError(t, err)
	require.Equal(t, batch.Events[0].Id, batch.Events[1].StartId)

	list, err := s.client.ListEvents(ctx, &levitatedv1.ListEventsRequest{Match: []string{`service="api"`, `event_state="start"`}})
	require.NoError(t, err)
	require.Len(t, list.Events, 2)
	require.Equal(t, start.Event.Id, list.Events[0].Id)
	require.Equal(t, batch.Events[0].Id, list.Events[1].Id)

	// Resend: same event back, nothing new.
	again, err := s.client.CreateEvent(ctx, &levitatedv1.CreateEventRequest{Event: &levitatedv1.Event{
		Name: "deploy", State: "start", Timestamp: timestamppb.New(b),
		Attributes: map[string]string{"service": "api", "version": "1.4.2"}, Text: "rollout", Url: "https://ci.example/42",
		Source: "ci", IdempotencyKey: "run-42-start",
	}})
	require.NoError(t, err)
	require.Equal(t, start.Event.Id, again.Event.Id)

	// Errors: code and field.
	_, err = s.client.CreateEvent(ctx, &levitatedv1.CreateEventRequest{Event: &levitatedv1.Event{State: "start"}})
	requireStatus(t, err, codes.InvalidArgument, "name: required")
	_, err = s.client.BatchCreateEvents(ctx, &levitatedv1.BatchCreateEventsRequest{Events: []*levitatedv1.Event{
		{Name: "a", State: "start"}, {Name: "a", State: "start", Attributes: map[string]string{"a-b": "x"}},
	}})
	requireStatus(t, err, codes.InvalidArgument, "events[1].attributes.a-b: key is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
	_, err = s.client.CreateEvent(ctx, &levitatedv1.CreateEventRequest{Event: &levitatedv1.Event{
		Name: "deploy", State: "start", Timestamp: timestamppb.New(b), IdempotencyKey: "run-42-start"}})
	requireStatus(t, err, codes.AlreadyExists, fmt.Sprintf(`idempotency_key: "run-42-start" was already used for event %s with a different body`, start.Event.Id))
	_, err = s.client.GetEvent(ctx, &levitatedv1.GetEventRequest{Id: "00000000000000000000000000"})
	requireStatus(t, err, codes.NotFound, "event 00000000000000000000000000 not found")

	// Other tenants see nothing.
	other, err := s.client.ListEvents(grpcCtx("team-b"), &levitatedv1.ListEventsRequest{})
	require.NoError(t, err)
	require.Empty(t, other.Events)
	_, err = s.client.GetEvent(grpcCtx("team-b"), &levitatedv1.GetEventRequest{Id: start.Event.Id})
	requireStatus(t, err, codes.NotFound, "event "+start.Event.Id+" not found")

	// As series (team-a was resolved first: id 1).
	v := promQuery(t, s, 1, `change_event_active`, b.Add(60*time.Second))
	require.Len(t, v, 1)
	require.Equal(t, `{__name__="change_event_active", event_name="deploy", service="api", version="1.4.2"}`, v[0].Metric.String())
	require.Equal(t, 1.0, v[0].F)
	require.Empty(t, promQuery(t, s, 1, `change_event_active{event_name="deploy"}`, b.Add(90*time.Second)))
	v = promQuery(t, s, 1, `last9_change_events{event_name="deploy"}`, b.Add(100*time.Second))
	require.Len(t, v, 2)
	require.Equal(t, 1.0, v[0].F)
	require.Equal(t, 2.0, v[1].F)
	require.Equal(t, `{__name__="last9_change_events", event_name="deploy", event_state="stop", exit_code="0", service="api", version="1.4.2"}`, v[1].Metric.String())
}

func requireStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, code, st.Code(), st.Message())
	require.Equal(t, msg, st.Message())
}

func TestRESTPath(t *testing.T) {
	s := startServer(t)
	b := base()
	org := []string{"X-Scope-OrgID", "team-a"}

	// Tail over REST: wait for the headers (sent once subscribed).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+`/api/v1/events:tail?name=deploy`, nil)
	require.NoError(t, err)
	req.Header.Set("X-Scope-OrgID", "team-a")
	resp, err := s.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	lines := make(chan string, 16)
	go readLines(resp.Body, lines)

	code, body := s.do(t, http.MethodPost, "/api/v1/events", fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%d,
		"attributes":{"service":"web","replicas":3,"canary":true},"text":"deploy web","idempotency_key":"web-1"}`, b.Unix()), org...)
	require.Equal(t, http.StatusOK, code, body)
	start := decode[struct{ Event restEvent }](t, body).Event
	require.Equal(t, map[string]string{"service": "web", "replicas": "3", "canary": "true"}, start.Attributes)
	require.Equal(t, b.Format(time.RFC3339), start.Timestamp)
	require.True(t, start.Window.Open)

	code, body = s.do(t, http.MethodPost, "/api/v1/events", fmt.Sprintf(`{"events":[
		{"name":"deploy","state":"stop","timestamp":"%s","attributes":{"service":"web","replicas":"3","canary":"true"},"start_key":"web-1"},
		{"name":"config-change","state":"stop","timestamp":%d,"attributes":{"service":"web"},"value":5}]}`,
		b.Add(45*time.Second).Format(time.RFC3339), b.Add(50*time.Second).UnixMilli()), org...)
	require.Equal(t, http.StatusOK, code, body)
	batch := decode[struct{ Events []restEvent }](t, body).Events
	require.Len(t, batch, 2)
	require.Equal(t, start.ID, batch[0].StartID)
	require.Nil(t, batch[1].Window, "a stop without a window is a point event")
	require.Equal(t, 5.0, *batch[1].Value)

	code, body = s.do(t, http.MethodGet, "/api/v1/events/"+start.ID, "", org...)
	require.Equal(t, http.StatusOK, code, body)
	got := decode[struct{ Event restEvent }](t, body).Event
	require.Equal(t, batch[0].ID, got.Window.StopID)
	require.Equal(t, b.Add(45*time.Second).Format(time.RFC3339), got.Window.End)
	require.Equal(t, "deploy web", got.Text)

	evs := s.list(t, `match=service%3D%22web%22&name=deploy`, org...)
	require.Len(t, evs, 2)
	require.Empty(t, s.list(t, `open_only=true`, org...))
	require.Len(t, s.list(t, "start="+b.Add(46*time.Second).Format(time.RFC3339), org...), 1)
	require.Empty(t, s.list(t, "", "X-Scope-OrgID", "team-b"))

	for _, want := range []string{start.ID, batch[0].ID} {
		select {
		case l := <-lines:
			var msg struct {
				Result struct{ Event restEvent } `json:"result"`
			}
			require.NoError(t, json.Unmarshal([]byte(l), &msg), l)
			require.Equal(t, want, msg.Result.Event.ID)
		case <-time.After(10 * time.Second):
			t.Fatal("no event on the REST tail")
		}
	}

	// As series, exact values and timestamps.
	m := promRange(t, s, 1, `last9_change_events`, b, b.Add(2*time.Minute), 5*time.Second)
	require.Equal(t, map[int]float64{0: 1, 5: 1, 10: 1, 15: 1, 20: 1, 25: 1, 30: 1, 35: 1, 40: 1, 45: 1, 50: 1, 55: 1, 60: 1, 65: 1, 70: 1, 75: 1, 80: 1, 85: 1, 90: 1, 95: 1, 100: 1, 105: 1, 110: 1, 115: 1, 120: 1},
		m[`{__name__="last9_change_events", canary="true", event_name="deploy", event_state="start", replicas="3", service="web"}`])
	require.Equal(t, 5.0, m[`{__name__="last9_change_events", event_name="config-change", event_state="stop", service="web"}`][50])
	require.NotContains(t, m[`{__name__="last9_change_events", event_name="config-change", event_state="stop", service="web"}`], 45)
	active := promRange(t, s, 1, `change_event_active`, b.Add(-10*time.Second), b.Add(time.Minute), 5*time.Second)
	require.Equal(t, map[string]map[int]float64{
		`{__name__="change_event_active", canary="true", event_name="deploy", replicas="3", service="web"}`: {10: 1, 15: 1, 20: 1, 25: 1, 30: 1, 35: 1, 40: 1, 45: 1, 50: 1},
	}, active)
	require.Equal(t, []string{
		`{__name__="change_event_active", canary="true", event_name="deploy", replicas="3", service="web"}`,
		`{__name__="change_event_window_end_seconds", canary="true", event_name="deploy", replicas="3", service="web"}`,
		`{__name__="change_event_window_start_seconds", canary="true", event_name="deploy", replicas="3", service="web"}`,
	}, seriesNames(t, s, 1, b, b.Add(time.Minute), labels.MustNewMatcher(labels.MatchRegexp, "__name__", "change_event_.*")))
	vals, _, err := s.store.Querier(1, b.UnixMilli(), b.Add(time.Minute).UnixMilli()).LabelValues(context.Background(), "event_name", nil)
	require.NoError(t, err)
	require.Equal(t, []string{"config-change", "deploy"}, vals)
}

func TestLast9Path(t *testing.T) {
	s := startServer(t)
	b := base()
	org := []string{"X-Scope-OrgID", "team-a"}
	// Last9's documented body, with an offset timestamp.
	ts := b.In(time.FixedZone("IST", 5*3600+1800))
	code, body := s.do(t, http.MethodPut, "/api/v4/organizations/acme/change_events", fmt.Sprintf(`{
		"timestamp": "%s", "event_name": "new_deployment", "event_state": "start",
		"data_source_name": "prod-cluster",
		"attributes": {"env": "production", "app": "backend-api", "run_number": 17, "event_name": "push"}}`, ts.Format(time.RFC3339)),
		append(org, "X-LAST9-API-TOKEN", "Bearer x")...)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"message":"success"}`, body)
	// event_state defaults to start? No: this is the stop, as the
	// deployment-marker-action sends it, with a zone-less timestamp (UTC)
	// and an unknown field.
	code, body = s.do(t, http.MethodPut, "/api/v4/organizations/acme/change_events", fmt.Sprintf(`{
		"timestamp": "%s", "event_name": "new_deployment", "event_state": "STOP", "future_field": [1,2],
		"attributes": {"env": "production", "app": "backend-api", "run_number": "17", "event_name": "push"}}`,
		b.Add(2*time.Minute).Format("2006-01-02T15:04:05")), org...)
	require.Equal(t, http.StatusOK, code, body)
	code, body = s.do(t, http.MethodPut, "/api/v4/organizations/acme/change_events",
		`{"event_name": "feature_flag", "attributes": {"flag": "new-checkout"}, "value": 7}`, org...)
	require.Equal(t, http.StatusOK, code, body)

	// An Idempotency-Key header makes a resend a no-op; another body is 409.
	for i := 0; i < 2; i++ {
		code, body = s.do(t, http.MethodPut, "/api/v4/organizations/acme/change_events",
			`{"event_name": "feature_flag", "event_state": "stop", "attributes": {"flag": "new-checkout"}}`, append(org, "Idempotency-Key", "ff-1")...)
		require.Equal(t, http.StatusOK, code, body)
	}
	code, body = s.do(t, http.MethodPut, "/api/v4/organizations/acme/change_events",
		`{"event_name": "feature_flag", "event_state": "stop"}`, append(org, "Idempotency-Key", "ff-1")...)
	require.Equal(t, http.StatusConflict, code, body)

	evs := s.list(t, "", org...)
	require.Len(t, evs, 4)
	require.Equal(t, "new_deployment", evs[0].Name)
	require.Equal(t, "start", evs[0].State)
	require.Equal(t, b.Format(time.RFC3339), evs[0].Timestamp)
	require.Equal(t, map[string]string{"env": "production", "app": "backend-api", "run_number": "17", "exported_event_name": "push"}, evs[0].Attributes)
	require.Equal(t, "last9:prod-cluster", evs[0].Source)
	require.Equal(t, "stop", evs[1].State)
	require.Equal(t, b.Add(2*time.Minute).Format(time.RFC3339), evs[1].Timestamp)
	require.Equal(t, evs[0].ID, evs[1].StartID)
	require.Equal(t, "start", evs[2].State, "event_state defaults to start")
	require.Equal(t, "feature_flag", evs[2].Name)

	// Last9's own queries work unchanged.
	v := promQuery(t, s, 1, `last9_change_events{event_name="new_deployment", env="production"}`, b.Add(3*time.Minute))
	require.Len(t, v, 2)
	require.Equal(t, `{__name__="last9_change_events", app="backend-api", env="production", event_name="new_deployment", event_state="start", exported_event_name="push", run_number="17"}`, v[0].Metric.String())
	require.Equal(t, 1.0, v[0].F)
	require.Equal(t, 2.0, v[1].F)
	v = promQuery(t, s, 1, `last9_change_events{event_name="feature_flag", event_state="start"}`, time.Now())
	require.Len(t, v, 1)
	require.Equal(t, 7.0, v[0].F)
	v = promQuery(t, s, 1, `change_event_active{event_name="new_deployment"}`, b.Add(time.Minute))
	require.Len(t, v, 1)
}

// TestLast9TokenExchange: the deployment-marker-action first trades its
// refresh token for an access token; the levitated token comes back as is.
func TestLast9TokenExchange(t *testing.T) {
	s := startServer(t)
	code, body := s.do(t, http.MethodPost, "/api/v4/oauth/access_token", `{"refresh_token":"lev-token","grant_type":"refresh_token"}`)
	require.Equal(t, http.StatusOK, code, body)
	resp := decode[struct {
		AccessToken string   `json:"access_token"`
		Type        string   `json:"type"`
		ExpiresAt   int64    `json:"expires_at"`
		Scopes      []string `json:"scopes"`
	}](t, body)
	require.Equal(t, "lev-token", resp.AccessToken)
	require.Equal(t, "Bearer", resp.Type)
	require.Greater(t, resp.ExpiresAt, time.Now().Unix())
	code, body = s.do(t, http.MethodPost, "/api/v4/oauth/access_token", `{}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.JSONEq(t, `{"error":"refresh_token: required (a levitated API token)","message":"refresh_token: required (a levitated API token)"}`, body)
}

func TestGrafanaAnnotationPath(t *testing.T) {
	s := startServer(t)
	b := base()
	org := []string{"X-Scope-OrgID", "team-a"}
	code, body := s.do(t, http.MethodPost, "/api/annotations", fmt.Sprintf(`{
		"dashboardUID": "abc", "panelId": 2, "time": %d, "timeEnd": %d,
		"tags": ["deploy", "service:checkout", "env=prod", "argocd"], "text": "Sync succeeded", "data": {"x": 1}}`,
		b.UnixMilli(), b.Add(3*time.Minute).UnixMilli()), org...)
	require.Equal(t, http.StatusOK, code, body)
	resp := decode[struct {
		Message string `json:"message"`
		ID      int64  `json:"id"`
		EventID string `json:"event_id"`
	}](t, body)
	require.Equal(t, "Annotation added", resp.Message)
	require.NotZero(t, resp.ID)

	code, body = s.do(t, http.MethodPost, "/api/annotations", fmt.Sprintf(`{"time": %d, "tags": ["flux", "kustomization:podinfo"], "text": "Reconciled"}`,
		b.Add(5*time.Minute).UnixMilli()), org...)
	require.Equal(t, http.StatusOK, code, body)

	evs := s.list(t, "", org...)
	require.Len(t, evs, 3)
	require.Equal(t, resp.EventID, evs[0].ID)
	require.Equal(t, "deploy", evs[0].Name)
	require.Equal(t, map[string]string{"service": "checkout", "env": "prod", "tags": "argocd"}, evs[0].Attributes)
	require.Equal(t, "Sync succeeded", evs[0].Text)
	require.Equal(t, "grafana-annotation", evs[0].Source)
	require.False(t, evs[0].Window.Open)
	require.Equal(t, b.Add(3*time.Minute).Format(time.RFC3339), evs[0].Window.End)
	require.Equal(t, "stop", evs[2].State)
	require.Equal(t, "flux", evs[2].Name)
	require.Nil(t, evs[2].Window, "an annotation without timeEnd is a point event")

	m := promRange(t, s, 1, `change_event_active{service="checkout"}`, b.Add(-time.Minute), b.Add(5*time.Minute), time.Minute)
	require.Equal(t, map[string]map[int]float64{
		`{__name__="change_event_active", env="prod", event_name="deploy", service="checkout", tags="argocd"}`: {60: 1, 120: 1, 180: 1},
	}, m)
	v := promQuery(t, s, 1, `change_event_window_end_seconds{service="checkout"} - change_event_window_start_seconds{service="checkout"}`, b.Add(time.Minute))
	require.Len(t, v, 1)
	require.Equal(t, 180.0, v[0].F)
}

// TestBadInput sends each bad request and checks the status, the message,
// and that nothing stored changed.
func TestBadInput(t *testing.T) {
	s := startServer(t)
	b := base()
	org := []string{"X-Scope-OrgID", "team-a"}
	code, body := s.do(t, http.MethodPost, "/api/v1/events", fmt.Sprintf(
		`{"name":"deploy","state":"start","timestamp":%d,"attributes":{"service":"api"},"idempotency_key":"k1"}`, b.Unix()), org...)
	require.Equal(t, http.StatusOK, code, body)
	startID := decode[struct{ Event restEvent }](t, body).Event.ID
	before := s.list(t, "", org...)

	big := strings.Repeat("x", 10<<20)
	deep := strings.Repeat(`{"a":`, 50) + "1" + strings.Repeat("}", 50)
	future := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	old := time.Now().Add(-30 * 24 * time.Hour).UTC().Truncate(time.Second)
	native := "/api/v1/events"
	last9 := "/api/v4/organizations/acme/change_events"
	type tc struct {
		name, method, path, body string
		code                     int
		msg                      string // exact; "prefix:…" for a prefix
		hdr                      []string
	}
	cases := []tc{
		{"missing name", "POST", native, `{"state":"start"}`, 400, "name: required", nil},
		{"bad state", "POST", native, `{"name":"deploy","state":"begin"}`, 400, `state: "begin" is not "start" or "stop"`, nil},
		{"unknown field", "POST", native, `{"name":"deploy","state":"start","colour":"red"}`, 400, "colour: unknown field", nil},
		{"unknown field in batch", "POST", native, `{"events":[{"name":"deploy","state":"start"},{"name":"x","state":"start","servce":"api"}]}`, 400, "events[1].servce: unknown field", nil},
		{"invalid attribute key", "POST", native, `{"name":"deploy","state":"start","attributes":{"service.name":"api"}}`, 400, "attributes.service.name: key is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)", nil},
		{"attribute value too long", "POST", native, `{"name":"deploy","state":"start","attributes":{"service":"` + strings.Repeat("x", 5000) + `"}}`, 400, "attributes.service: value longer than 4096 bytes", nil},
		{"10 MB attribute", "POST", native, `{"name":"deploy","state":"start","attributes":{"service":"` + big + `"}}`, 413, "body: larger than 1048576 bytes", nil},
		{"deep nesting", "POST", native, deep, 400, "body: JSON nested deeper than 8 levels", nil},
		{"no zone", "POST", native, `{"name":"deploy","state":"start","timestamp":"2026-01-15T17:57:22"}`, 400, `timestamp: "2026-01-15T17:57:22" has no time zone; use RFC 3339 with Z or an offset such as +05:30`, nil},
		{"far future", "POST", native, fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":"%s"}`, future.Format(time.RFC3339)), 400,
			fmt.Sprintf("timestamp: %s is more than 10m0s in the future (limit 10m0s)", future.Format(time.RFC3339)), nil},
		{"outside retention", "POST", native, fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%d}`, old.Unix()), 400,
			fmt.Sprintf("timestamp: %s is older than the retention of 360h0m0s", old.Format(time.RFC3339)), nil},
		{"stop before start", "POST", native, fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%d,"attributes":{"service":"api"}}`, b.Add(-time.Minute).Unix()), 400,
			fmt.Sprintf("timestamp: stop at %s is before the start of the open window it matches (%s at %s)", b.Add(-time.Minute).Format(time.RFC3339), startID, b.Format(time.RFC3339)), nil},
		{"stop before named start", "POST", native, fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%d,"start_id":"%s"}`, b.Add(-time.Minute).Unix(), startID), 400,
			fmt.Sprintf("timestamp: stop at %s is before its start %s at %s", b.Add(-time.Minute).Format(time.RFC3339), startID, b.Format(time.RFC3339)), nil},
		{"idempotency key, other body", "POST", native, fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%d,"attributes":{"service":"web"},"idempotency_key":"k1"}`, b.Unix()), 409,
			fmt.Sprintf(`idempotency_key: "k1" was already used for event %s with a different body`, startID), nil},
		{"not JSON", "POST", native, `name=deploy`, 400, "prefix:body: invalid JSON at offset", nil},
		{"batch route needs events", "POST", native + ":batch", `{"name":"deploy","state":"start"}`, 400, `events: required: this route takes {"events":[…]}`, nil},
		{"unknown id", "GET", native + "/00000000000000000000000000", "", 404, "event 00000000000000000000000000 not found", nil},
		{"bad id", "GET", native + "/nope", "", 400, `id: "nope" is not an event id`, nil},
		{"bad matcher", "GET", native + "?match=service%3D", "", 400, "prefix:match[0]: \"service=\" is not a label matcher", nil},
		{"bad list time", "GET", native + "?start=yesterday", "", 400, `start: "yesterday" is not RFC 3339 (2026-01-02T15:04:05Z) or Unix seconds or milliseconds`, nil},
		// Last9: as lenient as Last9, but not about what cannot be stored.
		{"last9 missing name", "PUT", last9, `{"event_state":"start"}`, 400, "event_name: required", nil},
		{"last9 bad state", "PUT", last9, `{"event_name":"deploy","event_state":"begin"}`, 400, `event_state: "begin" is not "start" or "stop"`, nil},
		{"last9 10 MB attribute", "PUT", last9, `{"event_name":"deploy","attributes":{"a":"` + big + `"}}`, 413, "body: larger than 1048576 bytes", nil},
		{"last9 deep nesting", "PUT", last9, deep, 400, "body: JSON nested deeper than 8 levels", nil},
		{"last9 far future", "PUT", last9, fmt.Sprintf(`{"event_name":"deploy","timestamp":"%s"}`, future.Format(time.RFC3339)), 400,
			fmt.Sprintf("timestamp: %s is more than 10m0s in the future (limit 10m0s)", future.Format(time.RFC3339)), nil},
		{"last9 wrong type", "PUT", last9, `{"event_name":5}`, 400, "event_name: wrong type: number", nil},
		{"grafana timeEnd before time", "POST", "/api/annotations", fmt.Sprintf(`{"time":%d,"timeEnd":%d}`, b.UnixMilli(), b.Add(-time.Minute).UnixMilli()), 400, "timeEnd: before time", nil},
		{"grafana tags not strings", "POST", "/api/annotations", `{"tags":[1]}`, 400, "tags: wrong type: number", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := s.do(t, c.method, c.path, c.body, org...)
			require.Equal(t, c.code, code, body)
			var msg struct {
				Message string `json:"message"`
				Code    int    `json:"code"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &msg), body)
			if p, ok := strings.CutPrefix(c.msg, "prefix:"); ok {
				require.True(t, strings.HasPrefix(msg.Message, p), msg.Message)
			} else {
				require.Equal(t, c.msg, msg.Message)
			}
			require.Equal(t, before, s.list(t, "", org...), "nothing stored changes")
		})
	}
	// The Last9 path ignores unknown fields and takes zone-less times as
	// UTC, as Last9 does; TestLast9Path shows it.
}
