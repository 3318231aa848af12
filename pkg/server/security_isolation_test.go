package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/auth"
)

const isolationTenants = 10

// marker is the string only tenant i's data contains; no marker is a
// substring of another.
func marker(i int) string { return fmt.Sprintf("mkr%02dz", i) }

var markerRE = regexp.MustCompile(`mkr\d\dz`)

// leaks returns the markers of other tenants in body.
func leaks(body string, own int) []string {
	var out []string
	for _, m := range markerRE.FindAllString(body, -1) {
		if m != marker(own) && m != marker(99) {
			out = append(out, m)
		}
	}
	return out
}

type isoTenant struct {
	name, token string
	eventID     string
	configID    string // Kayenta
	executionID string // Kayenta
}

// TestTenantIsolationMatrix has 10 tenants write samples (with metadata
// and exemplars), change events and a Kayenta configuration, then reads
// every read endpoint with each tenant's token, over HTTP, gRPC and the
// gateway: each sees its own data and nothing of the others', and
// another tenant's data answers exactly as missing data does. A forged
// X-Scope-OrgID changes nothing.
func TestTenantIsolationMatrix(t *testing.T) {
	ts := newTokenSet(t)
	tenants := make([]isoTenant, isolationTenants)
	for i := range tenants {
		tenants[i].name = fmt.Sprintf("team-%02d", i)
		tenants[i].token = ts.create(t, tenants[i].name, auth.AllScopes...)
	}
	var logs syncBuffer
	srv := startWithTokens(t, ts, &logs)
	conn := grpcConn(t, srv)
	eventsClient := levitatedv1.NewEventServiceClient(conn)
	analysisClient := levitatedv1.NewAnalysisServiceClient(conn)

	end := time.Now().Truncate(time.Minute).Add(-time.Minute)
	start := end.Add(-30 * time.Minute)
	for i := range tenants {
		tn := &tenants[i]
		m := marker(i)
		r := send(t, srv.URL, tn.token, remoteWriteReq("/api/v1/write", canaryWrite(t, end, m)))
		require.Equal(t, http.StatusNoContent, r.code, r.body)
		only := "iso_only_" + m + "_total"
		req := &prompb.WriteRequest{
			Timeseries: []prompb.TimeSeries{{
				Labels:    labelsV1("__name__", only, "l_"+m, "1"),
				Samples:   []prompb.Sample{{Timestamp: end.UnixMilli(), Value: float64(i)}},
				Exemplars: []prompb.Exemplar{{Labels: labelsV1("trace_id", m), Value: 1, Timestamp: end.UnixMilli()}},
			}},
			Metadata: []prompb.MetricMetadata{{MetricFamilyName: only, Type: prompb.MetricMetadata_COUNTER, Help: "help " + m}},
		}
		r = send(t, srv.URL, tn.token, remoteWriteReq("/api/v1/write", string(encodeV1(t, req))))
		require.Equal(t, http.StatusNoContent, r.code, r.body)
		r = send(t, srv.URL, tn.token, authReq{method: http.MethodPost, path: "/api/v1/events",
			body: fmt.Sprintf(`{"name":"deploy","state":"start","attributes":{"service":%q}}`, m)})
		require.Equal(t, http.StatusOK, r.code, r.body)
		tn.eventID = jsonField(t, r.body, "id")
		r = send(t, srv.URL, tn.token, authReq{method: http.MethodPost, path: "/canaryConfig",
			body: strings.Replace(kayentaConfig(), `"name": "checkout"`, `"name": "cfg-`+m+`"`, 1)})
		require.Equal(t, http.StatusOK, r.code, r.body)
		tn.configID = jsonField(t, r.body, "canaryConfigId")
		r = send(t, srv.URL, tn.token, authReq{method: http.MethodPost, path: "/canary/" + tn.configID, body: kayentaRequest(start, end)})
		require.Equal(t, http.StatusOK, r.code, r.body)
		tn.executionID = jsonField(t, r.body, "canaryExecutionId")
	}

	at := url.QueryEscape(unixString(end))
	from := url.QueryEscape(unixString(end.Add(-10 * time.Minute)))
	all := url.QueryEscape(`{__name__=~".+"}`)
	reads := []struct {
		name, path string
		want       func(i int) string // what the tenant's own answer contains
	}{
		{"query", "/api/v1/query?query=" + all + "&time=" + at, marker},
		{"query_range", "/api/v1/query_range?query=" + all + "&start=" + from + "&end=" + at + "&step=60", marker},
		{"series", "/api/v1/series?match[]=" + all + "&start=" + from + "&end=" + at, marker},
		{"labels", "/api/v1/labels?start=" + from + "&end=" + at, func(i int) string { return "l_" + marker(i) }},
		{"label values", "/api/v1/label/marker/values", marker},
		{"metric names", "/api/v1/label/__name__/values", func(i int) string { return "iso_only_" + marker(i) + "_total" }},
		{"metadata", "/api/v1/metadata", func(i int) string { return "help " + marker(i) }},
		{"exemplars", "/api/v1/query_exemplars?query=" + all + "&start=" + from + "&end=" + at, marker},
		{"status/tsdb", "/api/v1/status/tsdb?limit=100", func(i int) string { return "iso_only_" + marker(i) + "_total" }},
		{"events list (gateway)", "/api/v1/events", marker},
		{"event get (gateway)", "", marker},
		{"Kayenta configs", "/canaryConfig", func(i int) string { return "cfg-" + marker(i) }},
		{"PromQL over event series", "/api/v1/query?query=" + url.QueryEscape(`change_event_active`) + "&time=" + url.QueryEscape(unixString(time.Now())), marker},
	}
	checked := 0
	for i, tn := range tenants {
		other := (i + 1) % isolationTenants
		for _, rd := range reads {
			p := rd.path
			if p == "" {
				p = "/api/v1/events/" + tn.eventID
			}
			for _, forged := range []bool{false, true} {
				h := bearer(tn.token)
				if forged {
					h.Set("X-Scope-OrgID", tenants[other].name)
				}
				r := sendAs(t, srv.URL, h, authReq{path: p})
				require.Equal(t, http.StatusOK, r.code, "%s for %s: %s", rd.name, tn.name, r.body)
				require.Contains(t, r.body, rd.want(i), "%s for %s", rd.name, tn.name)
				require.Empty(t, leaks(r.body, i), "%s for %s (forged X-Scope-OrgID %v) shows other tenants' data: %s", rd.name, tn.name, forged, r.body)
				checked++
			}
		}

		// Another tenant's event is answered as a missing one.
		missing := missingID(tenants[other].eventID)
		theirs := send(t, srv.URL, tn.token, authReq{path: "/api/v1/events/" + tenants[other].eventID})
		none := send(t, srv.URL, tn.token, authReq{path: "/api/v1/events/" + missing})
		require.Equal(t, http.StatusNotFound, theirs.code, theirs.body)
		require.Equal(t, none.code, theirs.code)
		require.Equal(t, strings.ReplaceAll(none.body, missing, "ID"), strings.ReplaceAll(theirs.body, tenants[other].eventID, "ID"))
		_, errTheirs := eventsClient.GetEvent(withToken(tn.token), &levitatedv1.GetEventRequest{Id: tenants[other].eventID})
		_, errNone := eventsClient.GetEvent(withToken(tn.token), &levitatedv1.GetEventRequest{Id: missing})
		require.Equal(t, codes.NotFound, status.Code(errTheirs))
		require.Equal(t, strings.ReplaceAll(status.Convert(errNone).Message(), missing, "ID"),
			strings.ReplaceAll(status.Convert(errTheirs).Message(), tenants[other].eventID, "ID"))

		// Kayenta: another tenant's config, execution and metric set pairs
		// answer as unknown ones do.
		for _, kp := range []struct{ theirs, path string }{
			{tenants[other].configID, "/canaryConfig/"},
			{tenants[other].executionID, "/canary/"},
			{tenants[other].executionID, "/metricSetPairList/"},
		} {
			theirs := send(t, srv.URL, tn.token, authReq{path: kp.path + kp.theirs})
			none := send(t, srv.URL, tn.token, authReq{path: kp.path + "no-such-id"})
			require.Equal(t, http.StatusNotFound, theirs.code, "%s%s: %s", kp.path, kp.theirs, theirs.body)
			require.Equal(t, none.code, theirs.code)
			require.Equal(t, none.body, strings.ReplaceAll(theirs.body, kp.theirs, "no-such-id"))
		}
		mine := send(t, srv.URL, tn.token, authReq{path: "/canary/" + tn.executionID})
		require.Equal(t, http.StatusOK, mine.code, mine.body)

		// gRPC list, with and without a forged x-scope-orgid.
		for _, ctx := range []context.Context{withToken(tn.token), withToken(tn.token, "x-scope-orgid", tenants[other].name)} {
			resp, err := eventsClient.ListEvents(ctx, &levitatedv1.ListEventsRequest{})
			require.NoError(t, err)
			b, err := protojson.Marshal(resp)
			require.NoError(t, err)
			require.Contains(t, string(b), marker(i))
			require.Empty(t, leaks(string(b), i), "gRPC ListEvents for %s: %s", tn.name, b)
		}

		// Analysis of another tenant's series answers as for series that
		// do not exist: REST and gRPC.
		analysis := func(m string) string {
			return fmt.Sprintf(`{"baseline":"version=\"stable\",marker=\"%s\"","canary":"version=\"canary\",marker=\"%s\"","start":%q,"end":%q,
			  "metrics":[{"name":"errors","query":%q,"direction":"increase"}]}`, m, m, start.Format(time.RFC3339), end.Format(time.RFC3339),
				`sum(rate(http_requests_total{code="500"}[1m]))`)
		}
		own := send(t, srv.URL, tn.token, authReq{method: http.MethodPost, path: "/api/v1/analysis", body: analysis(marker(i))})
		require.Equal(t, http.StatusOK, own.code, own.body)
		theirs = send(t, srv.URL, tn.token, authReq{method: http.MethodPost, path: "/api/v1/analysis", body: analysis(marker(other))})
		none = send(t, srv.URL, tn.token, authReq{method: http.MethodPost, path: "/api/v1/analysis", body: analysis(marker(99))})
		require.NotEqual(t, own.body, none.body, "the analysis cannot tell data from no data")
		require.Equal(t, none.code, theirs.code)
		require.Equal(t, none.body, strings.ReplaceAll(theirs.body, marker(other), marker(99)))
		grpcAnalyze := func(m string) string {
			resp, err := analysisClient.Analyze(withToken(tn.token), &levitatedv1.AnalyzeRequest{
				Baseline: `version="stable",marker="` + m + `"`, Canary: `version="canary",marker="` + m + `"`,
				Start: start.Format(time.RFC3339), End: end.Format(time.RFC3339),
				Metrics: []*levitatedv1.AnalysisMetric{{Name: "errors", Query: `sum(rate(http_requests_total{code="500"}[1m]))`, Direction: "increase"}},
			})
			if err != nil {
				return status.Convert(err).String()
			}
			b, err := protojson.Marshal(resp)
			require.NoError(t, err)
			return string(b)
		}
		require.Equal(t, grpcAnalyze(marker(99)), strings.ReplaceAll(grpcAnalyze(marker(other)), marker(other), marker(99)))
		require.NotEqual(t, grpcAnalyze(marker(i)), grpcAnalyze(marker(99)))
	}
	t.Logf("%d HTTP reads checked across %d tenants", checked, isolationTenants)

	// Tails: every tenant tails over the gateway and over gRPC while all
	// tenants write two rounds of events; each tail sees its own events
	// and none of the others' (round 1 of every tenant is committed before
	// round 2 of any, so a leak would show before a tail's own round 2).
	tailIsolation(t, srv.URL, tenants, eventsClient)

	for _, tn := range tenants {
		require.NotContains(t, logs.String(), tn.token)
	}
}

// missingID is an event id of the right form that no event has.
func missingID(id string) string {
	// A middle character, so that every bit of it is significant.
	c := id[12]
	repl := byte('0')
	if c == '0' {
		repl = '1'
	}
	return id[:12] + string(repl) + id[13:]
}

func tailIsolation(t *testing.T, base string, tenants []isoTenant, client levitatedv1.EventServiceClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type seen struct {
		who   string
		lines []string
	}
	results := make(chan seen, 2*len(tenants))
	var done sync.WaitGroup
	for i, tn := range tenants {
		want := marker(i) + "-round2"
		// Gateway (newline-delimited JSON).
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/events:tail", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tn.token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		done.Add(1)
		go func() {
			defer done.Done()
			defer resp.Body.Close()
			var lines []string
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				lines = append(lines, sc.Text())
				if strings.Contains(sc.Text(), want) {
					break
				}
			}
			results <- seen{who: tn.name + " (gateway)", lines: lines}
		}()
		// gRPC.
		st, err := client.TailEvents(withToken(tn.token), &levitatedv1.TailEventsRequest{})
		require.NoError(t, err)
		_, err = st.Header() // sent once the tail is subscribed
		require.NoError(t, err)
		done.Add(1)
		go func() {
			defer done.Done()
			var lines []string
			for {
				ev, err := st.Recv()
				if err != nil {
					lines = append(lines, "error: "+err.Error())
					break
				}
				b, _ := protojson.Marshal(ev)
				lines = append(lines, string(b))
				if strings.Contains(string(b), want) {
					break
				}
			}
			results <- seen{who: tn.name + " (gRPC)", lines: lines}
		}()
	}
	// Every tail is subscribed: the gateway's answered, the gRPC ones sent
	// their headers.
	for round := 1; round <= 2; round++ {
		for i, tn := range tenants {
			r := send(t, base, tn.token, authReq{method: http.MethodPost, path: "/api/v1/events",
				body: fmt.Sprintf(`{"name":"tail","state":"start","attributes":{"service":"%s-round%d"}}`, marker(i), round)})
			require.Equal(t, http.StatusOK, r.code, r.body)
		}
	}
	done.Wait()
	close(results)
	n := 0
	for s := range results {
		n++
		require.NotEmpty(t, s.lines, s.who)
		last := s.lines[len(s.lines)-1]
		require.NotContains(t, last, "error:", s.who)
		own := -1
		fmt.Sscanf(s.who, "team-%02d", &own)
		joined := strings.Join(s.lines, "\n")
		require.Contains(t, joined, marker(own)+"-round1", s.who)
		require.Empty(t, leaks(joined, own), "%s tailed other tenants' events: %s", s.who, joined)
	}
	require.Equal(t, 2*len(tenants), n)
}
