package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
)

// thanosForQueryStore returns the real Thanos binary, built (once, cached
// in ~/.cache/levitated-peers) by the project's script.
func thanosForQueryStore(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("./peers/build-thanos.sh")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "peers/build-thanos.sh: %s", stderr.String())
	bin := strings.TrimSpace(string(out))
	require.FileExists(t, bin)
	return bin
}

// fleetWrite remote-writes to u 50 minutes from base, every 15 s, of a
// service's 5xx (+1 a step) and 2xx (+9) counters and latency (0.1 s, 0.2 s
// from 20m), with the extra labels.
func fleetWrite(t *testing.T, u string, base time.Time, service string, extra ...string) {
	t.Helper()
	var body []byte
	for _, s := range []struct {
		name, code string
		val        func(i int) float64
	}{
		{"http_requests_total", "500", func(i int) float64 { return float64(i) }},
		{"http_requests_total", "200", func(i int) float64 { return float64(9 * i) }},
		{"request_latency_seconds", "", func(i int) float64 {
			if i >= 80 {
				return 0.2
			}
			return 0.1
		}},
	} {
		var samples []byte
		for i := 0; i <= 200; i++ {
			samples = appendSample(samples, 2, s.val(i), base.Add(time.Duration(i)*15*time.Second).UnixMilli())
		}
		ls := map[string]string{"__name__": s.name, "service": service}
		if s.code != "" {
			ls["code"] = s.code
		}
		for i := 0; i < len(extra); i += 2 {
			ls[extra[i]] = extra[i+1]
		}
		var nv []string
		for _, n := range []string{"__name__", "cluster", "code", "service"} { // sorted
			if v, ok := ls[n]; ok {
				nv = append(nv, n, v)
			}
		}
		body = append(body, timeSeries(samples, nv...)...)
	}
	req, err := http.NewRequest(http.MethodPost, u+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	requireStatus(t, req, http.StatusNoContent)
}

func fleetDeploy(t *testing.T, u string, base time.Time) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u+"/api/v1/events", strings.NewReader(fmt.Sprintf(`{"events":[
		{"name":"deploy","state":"start","timestamp":%d,"attributes":{"service":"checkout"}},
		{"name":"deploy","state":"stop","timestamp":%d,"attributes":{"service":"checkout"}}]}`,
		base.Add(20*time.Minute).Unix(), base.Add(25*time.Minute).Unix())))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	requireStatus(t, req, http.StatusOK)
}

type fleetAnswer struct {
	Status   string          `json:"status"`
	Data     json.RawMessage `json:"data"`
	Warnings []string        `json:"warnings"`
}

func fleetGet(t *testing.T, u string) fleetAnswer {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	var a fleetAnswer
	require.NoError(t, json.Unmarshal(b, &a), string(b))
	return a
}

// TestLevitatedOverThanosQuerier: a real Thanos Querier over three
// levitated nodes (an HA pair, replica=a|b, of cluster eu holding the same
// data, and a node of cluster us with another service); a fourth levitated
// holds only the change events and reads the fleet through the Querier
// (--query.store). It answers the event-window functions and a native
// analysis as one levitated holding everything does; and still does with
// one replica killed.
func TestLevitatedOverThanosQuerier(t *testing.T) {
	thanos := thanosForQueryStore(t)
	base := time.Now().Add(-time.Hour).Truncate(time.Minute)
	at := func(d time.Duration) string { return strconv.FormatInt(base.Add(d).Unix(), 10) }

	a, _ := startProcess(t, "--external-label=cluster=eu", "--external-label=replica=a")
	b, bproc := startProcess(t, "--external-label=cluster=eu", "--external-label=replica=b")
	c, _ := startProcess(t, "--external-label=cluster=us")
	fleetWrite(t, a, base, "checkout")
	fleetWrite(t, b, base, "checkout")
	fleetWrite(t, c, base, "cart")

	// One levitated holding everything, the external labels as series labels.
	one := start(t)
	fleetWrite(t, one, base, "checkout", "cluster", "eu")
	fleetWrite(t, one, base, "cart", "cluster", "us")
	fleetDeploy(t, one, base)

	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	q := exec.Command(thanos, "query", "--http-address="+httpAddr, "--grpc-address="+grpcAddr,
		"--endpoint="+strings.TrimPrefix(a, "http://"), "--endpoint="+strings.TrimPrefix(b, "http://"), "--endpoint="+strings.TrimPrefix(c, "http://"),
		"--query.replica-label=replica", "--log.level=warn")
	var qlog bytes.Buffer
	q.Stdout, q.Stderr = &qlog, &qlog
	require.NoError(t, q.Start())
	t.Cleanup(func() {
		_ = q.Process.Signal(syscall.SIGTERM)
		_ = q.Wait()
		if t.Failed() {
			t.Logf("thanos query:\n%s", qlog.String())
		}
	})

	lev, _ := startProcess(t, "--query.store="+grpcAddr, "--query.store.replica-label=replica")
	fleetDeploy(t, lev, base)

	// The Querier has found its three endpoints when lev sees both clusters.
	count := "/api/v1/query?" + url.Values{"query": {`count by (cluster) (http_requests_total)`}, "time": {at(30 * time.Minute)}}.Encode()
	require.Eventually(t, func() bool {
		resp, err := http.Get(lev + count)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `"cluster":"eu"`) && strings.Contains(string(body), `"cluster":"us"`)
	}, 2*time.Minute, time.Second, "the Querier did not serve both clusters:\n%s", &qlog)

	const deploy = `change_event_active{event_name="deploy", service="checkout"}`
	queries := []string{
		`increase_since(http_requests_total{code="500"}[1h], ` + deploy + `)`,
		`sum by (cluster) (rate_since(http_requests_total[1h], ` + deploy + `))`,
		`after_before_ratio(avg_over_time(request_latency_seconds{service="checkout"}[1h]), ` + deploy + `, 10m)`,
		`after_before_ratio(rate(http_requests_total{code="500"}[1h]), ` + deploy + `, 10m)`,
		`sum by (cluster, code) (rate(http_requests_total[5m]))`,
		`count_over_time(http_requests_total[1h])`,
	}
	// With a replica down, a Querier may warn of it while it still asks it.
	compare := func(t *testing.T, warningsAllowed bool) {
		t.Helper()
		for _, expr := range queries {
			params := url.Values{"query": {expr}, "start": {at(20 * time.Minute)}, "end": {at(40 * time.Minute)}, "step": {"300"}}.Encode()
			want := fleetGet(t, one+"/api/v1/query_range?"+params)
			got := fleetGet(t, lev+"/api/v1/query_range?"+params)
			require.JSONEq(t, string(want.Data), string(got.Data), expr)
			if !warningsAllowed {
				require.Empty(t, got.Warnings, expr)
			}
			require.Contains(t, string(got.Data), `"values":[[`, "%s: an answer with data", expr)
		}
		analysis := fmt.Sprintf(`{"baseline": "code=\"200\"", "canary": "code=\"500\"",
		  "window": {"event": "deploy", "match": ["service=\"checkout\""]},
		  "metrics": [{"name": "rate", "query": %q, "direction": "increase"}]}`, `sum(rate(http_requests_total{service="checkout"}[1m]))`)
		judge := func(u string) map[string]any {
			resp, err := http.Post(u+"/api/v1/analysis", "application/json", strings.NewReader(analysis))
			require.NoError(t, err)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
			var m map[string]any
			require.NoError(t, json.Unmarshal(body, &m))
			delete(m["window"].(map[string]any), "start_id") // each node named its event
			return m
		}
		want, got := judge(one), judge(lev)
		// The judge passes the Querier's warnings on (a replica gone is
		// one); the judgement is the same.
		warnings := got["warnings"].([]any)
		delete(got, "warnings")
		delete(want, "warnings")
		if !warningsAllowed {
			require.Empty(t, warnings)
		}
		require.Equal(t, want, got)
		require.Equal(t, "Pass", got["metrics"].([]any)[0].(map[string]any)["classification"], got)
	}
	compare(t, false)

	// One replica of the HA pair gone: the same answers.
	require.NoError(t, bproc.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool {
		resp, err := http.Get(b + "/-/healthy")
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	}, time.Minute, 100*time.Millisecond)
	compare(t, true)
}
