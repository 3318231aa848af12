package server_test

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/auth"
)

// canaryWrite is a remote-write 1.0 body of 40 minutes up to end of a
// service's request counters for versions stable and canary.
func canaryWrite(t *testing.T, end time.Time, marker string) string {
	t.Helper()
	var req prompb.WriteRequest
	r := rand.New(rand.NewSource(1))
	for _, version := range []string{"stable", "canary"} {
		for _, code := range []string{"200", "500"} {
			ts := prompb.TimeSeries{Labels: labelsV1("__name__", "http_requests_total", "code", code, "job", "checkout", "marker", marker, "version", version)}
			var n float64
			for at := end.Add(-40 * time.Minute); !at.After(end); at = at.Add(10 * time.Second) {
				n += 10 + r.Float64()
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: at.UnixMilli(), Value: n})
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
	}
	return string(encodeV1(t, &req))
}

func remoteWriteReq(path, body string) authReq {
	h := http.Header{}
	h.Set("Content-Encoding", "snappy")
	h.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	return authReq{method: http.MethodPost, path: path, body: body, contentType: contentTypeV1, header: h}
}

// scopeCase is one endpoint of the scope matrix: the scope it needs (""
// for a public endpoint) and the status a request with that scope gets.
type scopeCase struct {
	name  string
	scope auth.Scope
	req   func() authReq
	ok    int
}

// TestScopeMatrix sends every endpoint with no credential, an unknown
// token, a revoked token and a token of each single scope, presented as a
// bearer token, as the basic-auth password and (for Last9) as
// X-LAST9-API-TOKEN: a token with the endpoint's scope gets the
// endpoint's answer, any other token 403, no or a bad credential 401, as
// docs/security.md tabulates; gRPC gives OK, PermissionDenied and
// Unauthenticated. No token appears in the server's logs.
func TestScopeMatrix(t *testing.T) {
	ts := newTokenSet(t)
	tokens := map[auth.Scope]string{}
	for _, sc := range auth.AllScopes {
		tokens[sc] = ts.create(t, "scoped", sc)
	}
	revoked := ts.create(t, "scoped", auth.AllScopes...)
	ids, err := ts.store.List()
	require.NoError(t, err)
	_, err = ts.store.Revoke(ids[len(ids)-1].ID, time.Now())
	require.NoError(t, err)
	unknown := "lev_0123456789abcdef_" + strings.Repeat("ab", 32)

	var logs syncBuffer
	srv := startWithTokens(t, ts, &logs)

	end := time.Now().Truncate(time.Minute).Add(-time.Minute)
	start := end.Add(-30 * time.Minute)
	r := send(t, srv.URL, tokens[auth.ScopeWrite], remoteWriteReq("/api/v1/write", canaryWrite(t, end, "m")))
	require.Equal(t, http.StatusNoContent, r.code, r.body)
	r = send(t, srv.URL, tokens[auth.ScopeEventsWrite], authReq{method: http.MethodPost, path: "/api/v1/events", body: `{"name":"deploy","state":"start"}`})
	require.Equal(t, http.StatusOK, r.code, r.body)
	eventID := jsonField(t, r.body, "id")

	otlp, err := io.ReadAll(otlpGauge(t, "jobs.active", baseTime(), 3))
	require.NoError(t, err)
	now := url.QueryEscape(unixString(time.Now()))
	analysis := fmt.Sprintf(`{"baseline":"version=\"stable\"","canary":"version=\"canary\"","start":%q,"end":%q,
	  "metrics":[{"name":"errors","query":%q,"direction":"increase"}]}`, start.Format(time.RFC3339), end.Format(time.RFC3339),
		`sum(rate(http_requests_total{code="500"}[1m]))`)

	get := func(p string) func() authReq { return func() authReq { return authReq{path: p} } }
	var writes int
	oneSample := func(path string) func() authReq {
		return func() authReq {
			writes++
			return remoteWriteReq(path, string(encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
				Labels:  labelsV1("__name__", "scope_writes_total", "n", fmt.Sprint(writes)),
				Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: 1}},
			}}})))
		}
	}
	cases := []scopeCase{
		{"remote write", auth.ScopeWrite, oneSample("/api/v1/write"), 204},
		{"remote write /push", auth.ScopeWrite, oneSample("/api/v1/push"), 204},
		{"OTLP", auth.ScopeWrite, func() authReq {
			return authReq{method: http.MethodPost, path: "/api/v1/otlp/v1/metrics", body: string(otlp), contentType: "application/x-protobuf"}
		}, 200},
		{"query", auth.ScopeRead, get("/api/v1/query?query=up&time=" + now), 200},
		{"query POST", auth.ScopeRead, func() authReq {
			return authReq{method: http.MethodPost, path: "/api/v1/query", body: "query=up", contentType: "application/x-www-form-urlencoded"}
		}, 200},
		{"query_range", auth.ScopeRead, get("/api/v1/query_range?query=up&start=" + now + "&end=" + now + "&step=15"), 200},
		{"series", auth.ScopeRead, get("/api/v1/series?match[]=up"), 200},
		{"labels", auth.ScopeRead, get("/api/v1/labels"), 200},
		{"label values", auth.ScopeRead, get("/api/v1/label/__name__/values"), 200},
		{"metadata", auth.ScopeRead, get("/api/v1/metadata"), 200},
		{"exemplars", auth.ScopeRead, get("/api/v1/query_exemplars?query=up"), 200},
		{"status/tsdb", auth.ScopeRead, get("/api/v1/status/tsdb"), 200},
		{"status/buildinfo", auth.ScopeRead, get("/api/v1/status/buildinfo"), 200},
		{"events list", auth.ScopeRead, get("/api/v1/events"), 200},
		{"event get", auth.ScopeRead, get("/api/v1/events/" + eventID), 200},
		{"event create", auth.ScopeEventsWrite, func() authReq {
			return authReq{method: http.MethodPost, path: "/api/v1/events", body: `{"name":"deploy","state":"start"}`}
		}, 200},
		{"event batch", auth.ScopeEventsWrite, func() authReq {
			return authReq{method: http.MethodPost, path: "/api/v1/events:batch", body: `{"events":[{"name":"scale","state":"start"}]}`}
		}, 200},
		{"Last9 change event", auth.ScopeEventsWrite, func() authReq {
			return authReq{method: http.MethodPut, path: "/api/v4/organizations/acme/change_events", body: `{"event_name":"deploy","event_state":"stop"}`}
		}, 200},
		{"Grafana annotation", auth.ScopeEventsWrite, func() authReq {
			return authReq{method: http.MethodPost, path: "/api/annotations", body: `{"text":"x","tags":["deploy"]}`}
		}, 200},
		{"native analysis", auth.ScopeAnalysis, func() authReq {
			return authReq{method: http.MethodPost, path: "/api/v1/analysis", body: analysis}
		}, 200},
		{"change impact", auth.ScopeRead, get("/api/v1/events/" + eventID + "/impact"), 404}, // its window is open
		{"gate", auth.ScopeAnalysis, func() authReq {
			return authReq{method: http.MethodPost, path: "/api/v1/gates:evaluate", body: `{"service":"none","dry_run":true}`}
		}, 404},
		{"Kayenta configs", auth.ScopeAnalysis, get("/canaryConfig"), 200},
		{"Kayenta judges", auth.ScopeAnalysis, get("/judges"), 200},
		{"flush", auth.ScopeAdmin, func() authReq { return authReq{method: http.MethodPost, path: "/api/v1/admin/flush"} }, 204},
		{"metrics", auth.ScopeAdmin, get("/metrics"), 200},
		{"pprof", auth.ScopeAdmin, get("/debug/pprof/"), 200},
		{"unlisted path", auth.ScopeAdmin, get("/no/such/path"), 404},
		{"CORS preflight", "", func() authReq { return authReq{method: http.MethodOptions, path: "/api/v1/query"} }, 204},
		{"healthy", "", get("/-/healthy"), 200},
		{"ready", "", get("/-/ready"), 200},
		{"Last9 token exchange", "", func() authReq {
			return authReq{method: http.MethodPost, path: "/api/v4/oauth/access_token", body: `{"refresh_token":"x"}`}
		}, 200},
	}
	presentations := map[string]func(tok string) http.Header{
		"bearer":         bearer,
		"basic password": func(tok string) http.Header { return basicAuth("prometheus", tok) },
	}
	for _, c := range cases {
		for how, present := range presentations {
			for _, sc := range auth.AllScopes {
				r := sendAs(t, srv.URL, present(tokens[sc]), c.req())
				want := http.StatusForbidden
				if c.scope == "" || c.scope == sc {
					want = c.ok
				}
				require.Equal(t, want, r.code, "%s with a %s token (%s): %s", c.name, sc, how, r.body)
			}
			for what, tok := range map[string]string{"unknown": unknown, "revoked": revoked, "malformed": "lev_x"} {
				r := sendAs(t, srv.URL, present(tok), c.req())
				want := http.StatusUnauthorized
				if c.scope == "" {
					want = c.ok
				}
				require.Equal(t, want, r.code, "%s with an %s token (%s): %s", c.name, what, how, r.body)
				if want == http.StatusUnauthorized {
					require.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
					require.Contains(t, r.body, "invalid credentials")
				}
			}
		}
		r := sendAs(t, srv.URL, nil, c.req())
		want := http.StatusUnauthorized
		if c.scope == "" {
			want = c.ok
		}
		require.Equal(t, want, r.code, "%s without credentials: %s", c.name, r.body)
	}

	// Last9's clients send X-LAST9-API-TOKEN: Bearer <token>.
	last9 := func(tok string) http.Header { h := http.Header{}; h.Set("X-LAST9-API-TOKEN", "Bearer "+tok); return h }
	r = sendAs(t, srv.URL, last9(tokens[auth.ScopeEventsWrite]), authReq{method: http.MethodPut, path: "/api/v4/organizations/acme/change_events", body: `{"event_name":"deploy"}`})
	require.Equal(t, http.StatusOK, r.code, r.body)
	r = sendAs(t, srv.URL, last9(tokens[auth.ScopeRead]), authReq{method: http.MethodPut, path: "/api/v4/organizations/acme/change_events", body: `{"event_name":"deploy"}`})
	require.Equal(t, http.StatusForbidden, r.code, r.body)
	require.Contains(t, r.body, `lacks the \"events:write\" scope`)

	// gRPC: the token as "authorization: Bearer" metadata.
	conn := grpcConn(t, srv)
	events := levitatedv1.NewEventServiceClient(conn)
	analyses := levitatedv1.NewAnalysisServiceClient(conn)
	type grpcCase struct {
		name  string
		scope auth.Scope
		call  func(ctx context.Context) error
	}
	grpcCases := []grpcCase{
		{"CreateEvent", auth.ScopeEventsWrite, func(ctx context.Context) error {
			_, err := events.CreateEvent(ctx, &levitatedv1.CreateEventRequest{Event: &levitatedv1.Event{Name: "deploy", State: "start"}})
			return err
		}},
		{"BatchCreateEvents", auth.ScopeEventsWrite, func(ctx context.Context) error {
			_, err := events.BatchCreateEvents(ctx, &levitatedv1.BatchCreateEventsRequest{Events: []*levitatedv1.Event{{Name: "deploy", State: "stop"}}})
			return err
		}},
		{"GetEvent", auth.ScopeRead, func(ctx context.Context) error {
			_, err := events.GetEvent(ctx, &levitatedv1.GetEventRequest{Id: eventID})
			return err
		}},
		{"ListEvents", auth.ScopeRead, func(ctx context.Context) error {
			_, err := events.ListEvents(ctx, &levitatedv1.ListEventsRequest{})
			return err
		}},
		{"TailEvents", auth.ScopeRead, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			st, err := events.TailEvents(ctx, &levitatedv1.TailEventsRequest{})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			if status.Code(err) == codes.DeadlineExceeded {
				return nil // authorised, and nothing new to tail
			}
			return err
		}},
		{"Analyze", auth.ScopeAnalysis, func(ctx context.Context) error {
			_, err := analyses.Analyze(ctx, &levitatedv1.AnalyzeRequest{
				Baseline: `version="stable"`, Canary: `version="canary"`,
				Start: start.Format(time.RFC3339), End: end.Format(time.RFC3339),
				Metrics: []*levitatedv1.AnalysisMetric{{Name: "errors", Query: `sum(rate(http_requests_total{code="500"}[1m]))`, Direction: "increase"}},
			})
			return err
		}},
	}
	for _, c := range grpcCases {
		for _, sc := range auth.AllScopes {
			err := c.call(withToken(tokens[sc]))
			if sc == c.scope {
				require.NoError(t, err, "%s with a %s token", c.name, sc)
			} else {
				require.Equal(t, codes.PermissionDenied, status.Code(err), "%s with a %s token: %v", c.name, sc, err)
			}
		}
		for _, tok := range []string{"", unknown, revoked} {
			err := c.call(withToken(tok))
			require.Equal(t, codes.Unauthenticated, status.Code(err), "%s: %v", c.name, err)
		}
		err := c.call(withToken("", "authorization", "Basic "+basicCreds("ci", tokens[c.scope])))
		require.NoError(t, err, "%s with the token as basic-auth password", c.name)
	}

	for _, tok := range append([]string{revoked, unknown}, valuesOf(tokens)...) {
		require.NotContains(t, logs.String(), tok)
		require.NotContains(t, logs.String(), tok[len(tok)-64:], "the secret part of a token was logged")
	}
	require.NotEmpty(t, logs.String())
}

func valuesOf[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
