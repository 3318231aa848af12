package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	levitatedv1 "github.com/levitated/levitated/api/proto/levitated/v1"
	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// startWithLimits starts a server with tokens and a limits overrides file
// (re-read every 50ms).
func startWithLimits(t *testing.T, ts *tokenSet, overrides string, opts ...func(*serverOptions)) (*servertest.Server, string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "overrides.yml")
	require.NoError(t, os.WriteFile(f, []byte(overrides), 0o600))
	srv := startWithTokens(t, ts, nil, append([]func(*serverOptions){func(o *serverOptions) {
		o.Limits.OverridesFile = f
		o.Limits.ReloadInterval = 50 * time.Millisecond
	}}, opts...)...)
	return srv, f
}

// samplesBody is a remote-write 1.0 body of one sample at t for each of
// series metric{s="0".."n-1"}.
func samplesBody(t *testing.T, metric string, first, n int, at time.Time) string {
	t.Helper()
	req := &prompb.WriteRequest{}
	for s := first; s < first+n; s++ {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels:  labelsV1("__name__", metric, "s", strconv.Itoa(s)),
			Samples: []prompb.Sample{{Timestamp: at.UnixMilli(), Value: float64(at.UnixMilli())}},
		})
	}
	return string(encodeV1(t, req))
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// TestIngestLimitIsolation drives tenant A at twice its ingestion limit
// while tenant B writes: A gets 429 with Retry-After, B no rejection, and
// B's p99 write latency stays within 1.5x of its p99 while A is idle.
// Idle and loaded phases alternate, so that drift of the machine falls on
// both.
func TestIngestLimitIsolation(t *testing.T) {
	ts := newTokenSet(t)
	tokA, tokB := ts.create(t, "tenant-a", auth.ScopeWrite, auth.ScopeRead), ts.create(t, "tenant-b", auth.ScopeWrite)
	const (
		limitA  = 1000 // samples/s
		perReqA = 250  // samples per request of A
		perReqB = 100
		phase   = 1500 * time.Millisecond // B writes back to back for this long
		phases  = 4                       // idle, loaded, idle, loaded
	)
	srv, _ := startWithLimits(t, ts, fmt.Sprintf("overrides:\n  tenant-a:\n    ingestion_rate: %d\n    ingestion_burst_size: %d\n", limitA, limitA))

	base := time.Now().Add(-5 * time.Minute).Truncate(time.Second)
	var tsB, tsA atomic.Int64
	writeB := func() (time.Duration, response) {
		at := base.Add(time.Duration(tsB.Add(1)) * time.Millisecond)
		body := samplesBody(t, "b_requests_total", 0, perReqB, at)
		start := time.Now()
		r := send(t, srv.URL, tokB, remoteWriteReq("/api/v1/write", body))
		return time.Since(start), r
	}
	for range 20 { // warm up
		_, r := writeB()
		require.Equal(t, http.StatusNoContent, r.code, r.body)
	}

	// The latency comparison is repeated up to three times: go test runs
	// other packages' tests on the same two cores, and one noisy phase
	// says nothing about tenant A. A systematic effect of A fails all three.
	for attempt := 1; ; attempt++ {
		p99i, p99l := measureIngestIsolation(t, srv.URL, tokA, tokB, writeB, &tsA, base, limitA, perReqA, perReqB, phase, phases)
		if float64(max(p99l, 2*time.Millisecond)) <= 1.5*float64(max(p99i, 2*time.Millisecond)) {
			return
		}
		if attempt == 3 {
			t.Fatalf("tenant B's p99 rose from %v to %v while A was over its limit (3 attempts)", p99i, p99l)
		}
		t.Logf("attempt %d: tenant B's p99 %v idle, %v loaded: measuring again", attempt, p99i, p99l)
	}
}

// measureIngestIsolation alternates phases with tenant A idle and driven
// at twice its limit while B writes back to back, checks A's refusals and
// B's acceptance, and returns B's idle and loaded p99.
func measureIngestIsolation(t *testing.T, url, tokA, tokB string, writeB func() (time.Duration, response), tsA *atomic.Int64, base time.Time, limitA, perReqA, perReqB int, phase time.Duration, phases int) (p99i, p99l time.Duration) {
	var idle, loaded []time.Duration
	var aSent, aAccepted, aRejected int
	var acceptedSamplesA int
	var aStart, aEnd time.Time
	for p := range phases {
		stopA := make(chan struct{})
		var aWG sync.WaitGroup
		if p%2 == 1 {
			// A at twice its limit: perReqA samples every perReqA/(2*limitA) s.
			aWG.Go(func() {
				tick := time.NewTicker(time.Duration(float64(time.Second) * float64(perReqA) / float64(2*limitA)))
				defer tick.Stop()
				if aStart.IsZero() {
					aStart = time.Now()
				}
				for {
					select {
					case <-stopA:
						aEnd = time.Now()
						return
					case <-tick.C:
					}
					at := base.Add(time.Duration(tsA.Add(1)) * time.Millisecond)
					r := send(t, url, tokA, remoteWriteReq("/api/v1/write", samplesBody(t, "a_requests_total", 0, perReqA, at)))
					aSent++
					switch r.code {
					case http.StatusNoContent:
						aAccepted++
						acceptedSamplesA += perReqA
					case http.StatusTooManyRequests, http.StatusServiceUnavailable:
						aRejected++
						secs, err := strconv.Atoi(r.header.Get("Retry-After"))
						require.NoError(t, err, "Retry-After %q", r.header.Get("Retry-After"))
						require.GreaterOrEqual(t, secs, 1)
						require.Contains(t, r.body, `tenant "tenant-a": ingestion rate limit of 1000 samples/s`)
						require.Contains(t, r.body, "ingestion_rate for tenant \"tenant-a\" in the limits overrides file")
					default:
						t.Errorf("tenant A got %d: %s", r.code, r.body)
					}
				}
			})
			time.Sleep(200 * time.Millisecond) // A's bucket drains first
		}
		for start := time.Now(); time.Since(start) < phase; {
			d, r := writeB()
			require.Equal(t, http.StatusNoContent, r.code, "tenant B was refused: %s", r.body)
			if p%2 == 1 {
				loaded = append(loaded, d)
			} else {
				idle = append(idle, d)
			}
		}
		close(stopA)
		aWG.Wait()
	}
	p50i := percentile(idle, 0.5)
	p99i = percentile(idle, 0.99)
	p50l, p99l := percentile(loaded, 0.5), percentile(loaded, 0.99)
	t.Logf("tenant B write of %d samples: A idle p50 %v p99 %v (%d writes); A at 2x its limit p50 %v p99 %v (%d writes); p99 ratio %.2f",
		perReqB, p50i, p99i, len(idle), p50l, p99l, len(loaded), float64(p99l)/float64(p99i))
	t.Logf("tenant A: %d requests of %d samples, %d accepted, %d refused with 429 and Retry-After", aSent, perReqA, aAccepted, aRejected)
	require.Positive(t, aRejected, "tenant A was never refused")
	require.Positive(t, aAccepted, "tenant A was refused everything")
	// Token bucket: A stored at most its burst plus its rate over the time
	// it wrote (two loaded phases, measured as one span, an upper bound).
	require.LessOrEqual(t, float64(acceptedSamplesA), float64(limitA)+float64(limitA)*aEnd.Sub(aStart).Seconds())
	// The caller compares B's p99s; latencies below 2ms are scheduler
	// noise on a 2-core machine and are compared with that floor.
	return p99i, p99l
}

// matrixTimes returns the sample timestamps of the series selected by
// selector in the hour before at, for tenant token.
func matrixTimes(t *testing.T, base, token, selector string, at time.Time) map[string][]int64 {
	t.Helper()
	r := send(t, base, token, authReq{path: "/api/v1/query?query=" + url.QueryEscape(selector+"[1h]") + "&time=" + url.QueryEscape(unixString(at))})
	require.Equal(t, http.StatusOK, r.code, r.body)
	var res struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &res))
	out := map[string][]int64{}
	for _, s := range res.Data.Result {
		for _, v := range s.Values {
			out[s.Metric["s"]] = append(out[s.Metric["s"]], int64(v[0].(float64)*1000))
		}
	}
	return out
}

// TestRejectedWritesAreAtomic shows that nothing acknowledged is lost and
// nothing refused by a limit is half-written: every request of 10 series
// x 20 samples is stored whole when acknowledged and not at all when
// refused (ingestion rate, series limit over 1.0, 2.0 and OTLP).
func TestRejectedWritesAreAtomic(t *testing.T) {
	ts := newTokenSet(t)
	tok := ts.create(t, "tenant-c", auth.ScopeWrite, auth.ScopeRead)
	srv, overrides := startWithLimits(t, ts, "overrides:\n  tenant-c:\n    ingestion_rate: 500\n    ingestion_burst_size: 1000\n")

	base := time.Now().Add(-30 * time.Minute).Truncate(time.Minute)
	reqAt := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	body := func(i int) string {
		req := &prompb.WriteRequest{}
		for s := range 10 {
			ts := prompb.TimeSeries{Labels: labelsV1("__name__", "c_total", "s", strconv.Itoa(s))}
			for j := range 20 {
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: reqAt(i).Add(time.Duration(j) * time.Millisecond).UnixMilli(), Value: float64(i)})
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		return string(encodeV1(t, req))
	}
	acked := map[int]bool{}
	for i := range 30 {
		r := send(t, srv.URL, tok, remoteWriteReq("/api/v1/write", body(i)))
		switch r.code {
		case http.StatusNoContent:
			acked[i] = true
		case http.StatusTooManyRequests:
			require.NotEmpty(t, r.header.Get("Retry-After"))
		default:
			t.Fatalf("request %d: %d %s", i, r.code, r.body)
		}
	}
	require.NotEmpty(t, acked)
	require.Less(t, len(acked), 30, "the rate limit refused nothing")
	got := matrixTimes(t, srv.URL, tok, `c_total`, reqAt(40))
	require.Len(t, got, 10)
	for s, times := range got {
		perReq := map[int]int{}
		for _, ms := range times {
			perReq[int(time.UnixMilli(ms).Sub(base)/time.Second)]++
		}
		for i := range 30 {
			if acked[i] {
				require.Equal(t, 20, perReq[i], "series %s lost samples of acknowledged request %d", s, i)
			} else {
				require.Zero(t, perReq[i], "series %s holds samples of refused request %d", s, i)
			}
		}
	}

	// Series limit: tenant-c has 10 series; the limit becomes 15. A
	// request writing 10 known and 10 new series is refused whole.
	require.NoError(t, os.WriteFile(overrides, []byte("overrides:\n  tenant-c:\n    max_series: 15\n"), 0o600))
	// The limiter re-reads the file on the first request at least
	// ReloadInterval (50 ms) after its last look; the previous step's
	// requests may have looked just now. Waiting longer than that makes the
	// next request the one that reloads, however loaded the machine is.
	time.Sleep(100 * time.Millisecond)
	mixed := func(i int) string {
		req := &prompb.WriteRequest{}
		for s := range 20 {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
				Labels:  labelsV1("__name__", "c_total", "s", strconv.Itoa(s)),
				Samples: []prompb.Sample{{Timestamp: reqAt(i).UnixMilli(), Value: 1}},
			})
		}
		return string(encodeV1(t, req))
	}
	require.Eventually(t, func() bool {
		r := send(t, srv.URL, tok, remoteWriteReq("/api/v1/write", mixed(100)))
		if r.code == http.StatusNoContent {
			t.Fatalf("the series limit let 20 series in")
		}
		return r.code == http.StatusTooManyRequests && strings.Contains(r.body, "series limit of 15 series exceeded") &&
			r.header.Get("Retry-After") != ""
	}, 5*time.Second, 60*time.Millisecond)
	got = matrixTimes(t, srv.URL, tok, `c_total`, reqAt(110))
	require.Len(t, got, 10, "a refused request created series")
	for s, times := range got {
		require.NotContains(t, times, reqAt(100).UnixMilli(), "series %s holds a sample of the refused request", s)
	}
	// Known series still take samples.
	r := send(t, srv.URL, tok, remoteWriteReq("/api/v1/write", samplesBody(t, "c_total", 0, 10, reqAt(101))))
	require.Equal(t, http.StatusNoContent, r.code, r.body)

	// Remote write 2.0 (Prometheus' receiver) and OTLP get the same 429.
	v2 := &writev2.Request{Symbols: []string{"", "__name__", "c_total", "s", "new-v2"}}
	v2.Timeseries = []writev2.TimeSeries{{LabelsRefs: []uint32{1, 2, 3, 4}, Samples: []writev2.Sample{{Value: 1, Timestamp: reqAt(102).UnixMilli()}}}}
	for range 6 { // fill up to the limit with new series, then one more
		r = send(t, srv.URL, tok, remoteWriteReq("/api/v1/write", samplesBody(t, "c_other", len(got), 1, reqAt(102))))
		if r.code != http.StatusNoContent {
			break
		}
		got["x"+strconv.Itoa(len(got))] = nil
	}
	require.Equal(t, http.StatusTooManyRequests, r.code, r.body)
	h := http.Header{}
	h.Set("Content-Encoding", "snappy")
	h.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	r = send(t, srv.URL, tok, authReq{method: http.MethodPost, path: "/api/v1/write", body: string(encodeV2(t, v2)), contentType: contentTypeV2, header: h})
	require.Equal(t, http.StatusTooManyRequests, r.code, r.body)
	require.Contains(t, r.body, "series limit of 15 series exceeded")
	require.NotEmpty(t, r.header.Get("Retry-After"))
	otlp, err := io.ReadAll(otlpGauge(t, "c.otlp.new", baseTime(), 1))
	require.NoError(t, err)
	r = send(t, srv.URL, tok, authReq{method: http.MethodPost, path: "/api/v1/otlp/v1/metrics", body: string(otlp), contentType: "application/x-protobuf"})
	require.Equal(t, http.StatusTooManyRequests, r.code, r.body)
	require.NotEmpty(t, r.header.Get("Retry-After"))
	r = send(t, srv.URL, tok, authReq{path: "/api/v1/series?match[]=" + url.QueryEscape(`{s="new-v2"}`)})
	require.Equal(t, http.StatusOK, r.code)
	require.JSONEq(t, `{"status":"success","data":[]}`, r.body)
}

// TestPerTenantLabelLimits applies a tenant's label limits from the
// overrides file.
func TestPerTenantLabelLimits(t *testing.T) {
	ts := newTokenSet(t)
	tokD, tokE := ts.create(t, "tenant-d", auth.ScopeWrite), ts.create(t, "tenant-e", auth.ScopeWrite)
	srv, _ := startWithLimits(t, ts, "overrides:\n  tenant-d:\n    max_label_names_per_series: 2\n    max_label_value_length: 4\n")
	for _, tc := range []struct {
		labels []string
		want   string
	}{
		{[]string{"__name__", "m", "a", "1", "b", "2"}, "more than 2 labels"},
		{[]string{"__name__", "m", "a", "12345"}, "longer than 4"},
	} {
		body := string(encodeV1(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: labelsV1(tc.labels...), Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: 1}}}}}))
		r := send(t, srv.URL, tokD, remoteWriteReq("/api/v1/write", body))
		require.Equal(t, http.StatusBadRequest, r.code, r.body)
		require.Contains(t, r.body, tc.want)
		r = send(t, srv.URL, tokE, remoteWriteReq("/api/v1/write", body))
		require.Equal(t, http.StatusNoContent, r.code, r.body)
	}
}

// TestEventRateLimit refuses events over a tenant's rate with 429 and
// Retry-After (gateway, Last9, annotations) and ResourceExhausted with
// RetryInfo (gRPC); a refused batch stores nothing.
func TestEventRateLimit(t *testing.T) {
	ts := newTokenSet(t)
	tok := ts.create(t, "tenant-f", auth.ScopeEventsWrite, auth.ScopeRead)
	srv, _ := startWithLimits(t, ts, "overrides:\n  tenant-f:\n    events_rate: 0.01\n    events_burst_size: 3\n")
	batch := `{"events":[{"name":"deploy","state":"start"},{"name":"deploy","state":"stop"}]}`
	r := send(t, srv.URL, tok, authReq{method: http.MethodPost, path: "/api/v1/events:batch", body: batch})
	require.Equal(t, http.StatusOK, r.code, r.body)
	r = send(t, srv.URL, tok, authReq{method: http.MethodPost, path: "/api/v1/events:batch", body: batch})
	require.Equal(t, http.StatusTooManyRequests, r.code, r.body)
	require.Contains(t, r.body, "events rate limit of 0.01 events/s with a burst of 3")
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	require.NoError(t, err)
	require.Greater(t, secs, 1)
	for _, req := range []authReq{
		{method: http.MethodPut, path: "/api/v4/organizations/x/change_events", body: `{"event_name":"a"}`},
		{method: http.MethodPost, path: "/api/annotations", body: `{"text":"x","timeEnd":0}`},
		{method: http.MethodPost, path: "/api/v1/events", body: `{"name":"a","state":"start"}`},
	} {
		// One token is left in the bucket: the first of these passes.
		r = send(t, srv.URL, tok, req)
		if r.code == http.StatusOK {
			continue
		}
		require.Equal(t, http.StatusTooManyRequests, r.code, "%s: %s", req.path, r.body)
		require.NotEmpty(t, r.header.Get("Retry-After"), req.path)
	}
	_, err = levitatedv1.NewEventServiceClient(grpcConn(t, srv)).CreateEvent(withToken(tok), &levitatedv1.CreateEventRequest{Event: &levitatedv1.Event{Name: "deploy", State: "start"}})
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), "%v", err)
	require.Len(t, st.Details(), 1)
	require.Positive(t, st.Details()[0].(*errdetails.RetryInfo).GetRetryDelay().AsDuration())

	r = send(t, srv.URL, tok, authReq{path: "/api/v1/events"})
	require.Equal(t, http.StatusOK, r.code)
	var list struct{ Events []any }
	require.NoError(t, json.Unmarshal([]byte(r.body), &list))
	require.Len(t, list.Events, 3, "refused events were stored: %s", r.body)
}

// TestInflightWritesOverload answers 503 with Retry-After when the
// server already serves its maximum of write requests; the request in
// flight completes.
func TestInflightWritesOverload(t *testing.T) {
	ts := newTokenSet(t)
	tok := ts.create(t, "tenant-g", auth.ScopeWrite)
	srv := startWithTokens(t, ts, nil, func(o *serverOptions) { o.Limits.MaxInflightWrites = 1 })

	// The first request is held in flight by a body that has not ended.
	body := samplesBody(t, "g_total", 0, 5, time.Now())
	hold := func() (*io.PipeWriter, chan *http.Response) {
		pr, pw := io.Pipe()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", pr)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", contentTypeV1)
		req.Header.Set("Content-Encoding", "snappy")
		first := make(chan *http.Response, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				first <- resp
			}
			close(first)
		}()
		_, err = pw.Write([]byte(body[:1]))
		require.NoError(t, err)
		return pw, first
	}
	pw, first := hold()
	defer func() { pw.Close() }()

	// Once the first request is being served, the next one is refused.
	// (How soon the first request reaches the handler depends on the
	// machine's load; the deadline only detects a hang.) On a loaded
	// machine the held request can arrive while a probe holds the only
	// slot and be refused itself — unseen by the client, as the server
	// reads the rest of a refused body before it answers — after which
	// every probe passes: a request held for 5 s without a refusal is
	// ended and held anew.
	var r response
	heldAt := time.Now()
	deadline := heldAt.Add(2 * time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		if time.Since(heldAt) > 5*time.Second {
			pw.Close()
			pw, first = hold()
			heldAt = time.Now()
		}
		r = send(t, srv.URL, tok, remoteWriteReq("/api/v1/write", samplesBody(t, "g_other", i, 1, time.Now())))
		if r.code != http.StatusNoContent {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, http.StatusServiceUnavailable, r.code, r.body)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.Contains(t, r.body, "--limits.max-inflight-writes")

	_, err := io.Copy(pw, bytes.NewReader([]byte(body[1:])))
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	resp := <-first
	require.NotNil(t, resp)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	r = send(t, srv.URL, tok, remoteWriteReq("/api/v1/write", samplesBody(t, "g_total", 0, 5, time.Now().Add(time.Second))))
	require.Equal(t, http.StatusNoContent, r.code, r.body)
}

// TestQueryLimits applies a tenant's samples-per-query limit (422, the
// limit named) and query timeout (503), leaving other tenants alone.
func TestQueryLimits(t *testing.T) {
	ts := newTokenSet(t)
	tokH, tokI := ts.create(t, "tenant-h", auth.ScopeWrite, auth.ScopeRead), ts.create(t, "tenant-i", auth.ScopeWrite, auth.ScopeRead)
	srv, _ := startWithLimits(t, ts, "overrides:\n  tenant-h:\n    max_samples_per_query: 100\n")
	at := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	for _, tok := range []string{tokH, tokI} {
		for i := range 10 {
			r := send(t, srv.URL, tok, remoteWriteReq("/api/v1/write", samplesBody(t, "h_total", 0, 50, at.Add(time.Duration(i)*time.Second))))
			require.Equal(t, http.StatusNoContent, r.code, r.body)
		}
	}
	q := authReq{path: "/api/v1/query?query=" + url.QueryEscape("count_over_time(h_total[1h])") + "&time=" + url.QueryEscape(unixString(at.Add(time.Minute)))}
	r := send(t, srv.URL, tokH, q)
	require.Equal(t, http.StatusUnprocessableEntity, r.code, r.body)
	require.Contains(t, r.body, `tenant \"tenant-h\": samples per query limit of 100 samples exceeded`)
	require.Contains(t, r.body, `max_samples_per_query for tenant \"tenant-h\" in the limits overrides file`)
	r = send(t, srv.URL, tokI, q)
	require.Equal(t, http.StatusOK, r.code, r.body)
}

// TestHeavyQueriesDoNotStarveOthers runs many heavy queries of tenant A
// (at most 2 at once by its limit) while tenant B queries and /-/ready is
// probed: B's queries and /-/ready all succeed.
func TestHeavyQueriesDoNotStarveOthers(t *testing.T) {
	ts := newTokenSet(t)
	tokA, tokB := ts.create(t, "heavy-a", auth.ScopeWrite, auth.ScopeRead), ts.create(t, "light-b", auth.ScopeWrite, auth.ScopeRead)
	srv, _ := startWithLimits(t, ts, "overrides:\n  heavy-a:\n    max_concurrent_queries: 2\n")
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i := range 60 {
		r := send(t, srv.URL, tokA, remoteWriteReq("/api/v1/write", samplesBody(t, "heavy_total", 0, 500, end.Add(-time.Duration(60-i)*15*time.Second))))
		require.Equal(t, http.StatusNoContent, r.code, r.body)
	}
	r := send(t, srv.URL, tokB, remoteWriteReq("/api/v1/write", samplesBody(t, "light_total", 0, 5, end)))
	require.Equal(t, http.StatusNoContent, r.code, r.body)

	heavy := authReq{path: "/api/v1/query_range?query=" + url.QueryEscape(`sum by (s) (rate(heavy_total[5m])) * on (s) group_left count by (s) (heavy_total)`) +
		"&start=" + url.QueryEscape(unixString(end.Add(-15*time.Minute))) + "&end=" + url.QueryEscape(unixString(end)) + "&step=5"}
	light := authReq{path: "/api/v1/query?query=count(light_total)&time=" + url.QueryEscape(unixString(end))}
	lightOnce := func() time.Duration {
		start := time.Now()
		r := send(t, srv.URL, tokB, light)
		require.Equal(t, http.StatusOK, r.code, r.body)
		require.Contains(t, r.body, `"5"`)
		return time.Since(start)
	}
	var idle []time.Duration
	for range 20 {
		idle = append(idle, lightOnce())
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var heavyDone, heavyRefused atomic.Int64
	for range 12 {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+heavy.path, nil)
				req.Header.Set("Authorization", "Bearer "+tokA)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					heavyDone.Add(1)
				case http.StatusTooManyRequests:
					heavyRefused.Add(1)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	// B queries and /-/ready is probed for at least 2s and until A has
	// completed heavy queries (bounded by a minute).
	var loaded []time.Duration
	for start := time.Now(); time.Since(start) < 2*time.Second || (heavyDone.Load() < 4 && time.Since(start) < time.Minute); {
		loaded = append(loaded, lightOnce())
		r := get(t, srv.URL, "/-/ready", nil)
		require.Equal(t, http.StatusOK, r.code)
	}
	cancel()
	wg.Wait()
	t.Logf("tenant B instant query: p50 %v p99 %v with A idle; p50 %v p99 %v (%d queries) while A ran 12 heavy query loops (%d heavy queries completed, %d refused)",
		percentile(idle, 0.5), percentile(idle, 0.99), percentile(loaded, 0.5), percentile(loaded, 0.99), len(loaded), heavyDone.Load(), heavyRefused.Load())
	require.Positive(t, heavyDone.Load())
}
