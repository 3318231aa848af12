package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// procStatus returns a field of /proc/<pid>/status in bytes (VmRSS, VmHWM).
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		require.NoError(t, err)
		return kb << 10
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// instantValue evaluates a PromQL expression of one scalar-like result at
// ts (milliseconds).
func instantValue(t *testing.T, u, expr string, ts int64) float64 {
	t.Helper()
	resp, err := fillClient.Get(u + "/api/v1/query?" + url.Values{"query": {expr}, "time": {strconv.FormatFloat(float64(ts)/1000, 'f', 3, 64)}}.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &r))
	require.Len(t, r.Data.Result, 1, string(body))
	v, err := strconv.ParseFloat(r.Data.Result[0].Value[1].(string), 64)
	require.NoError(t, err)
	return v
}

// newSeriesRequest is a snappy remote-write 1.0 body of n series that no
// other request has (request r), one sample each.
func newSeriesRequest(t *testing.T, r, n int, ts int64) []byte {
	t.Helper()
	series := make([]prompb.TimeSeries, n)
	for i := range series {
		series[i] = prompb.TimeSeries{
			Labels: []prompb.Label{
				{Name: "__name__", Value: "budget_test_series"},
				{Name: "instance", Value: fmt.Sprintf("host-%d.example:9100", i%1000)},
				{Name: "job", Value: "node"},
				{Name: "series", Value: fmt.Sprintf("%d-%d", r, i)},
			},
			Samples: []prompb.Sample{{Timestamp: ts, Value: float64(i)}},
		}
	}
	b, err := proto.Marshal(&prompb.WriteRequest{Timeseries: series})
	require.NoError(t, err)
	return snappy.Encode(nil, b)
}

// The peak RSS above idle that TestRemoteWriteMemoryBudget allows is the
// budget plus a margin (docs/operations.md): a fixed part (Pebble's
// memtables, the Go runtime) and, per series created, the memory the
// store keeps for it, with the garbage collector's headroom (1.83 KiB a
// series measured at 2M series: 3653 MiB above idle).
const (
	rwBudgetFixedMargin     = 256 << 20
	rwBudgetPerSeriesMargin = 2 << 10
)

// TestRemoteWriteMemoryBudget sends 8 concurrent remote-write requests of
// 250k new series each (about 3 MB compressed) to a levitated with a
// --limits.max-inflight-write-bytes budget: the requests over the budget
// get 503 with Retry-After and succeed when retried after it, and the
// server's peak RSS above idle stays within the budget and the margin.
func TestRemoteWriteMemoryBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	// The scale, 250k new series a request (2M in all), takes
	// minutes on a loaded 2-core machine; CI runs a tenth of it unless
	// LEVITATED_RW_BUDGET_FULL=1.
	const requests = 8
	seriesPerRequest := 25_000
	if os.Getenv("LEVITATED_RW_BUDGET_FULL") == "1" {
		seriesPerRequest = 250_000
	}
	bin := levitatedBinary(t)
	ts := time.Now().Add(-time.Minute).UnixMilli()
	bodies := make([][]byte, requests)
	for r := range bodies {
		bodies[r] = newSeriesRequest(t, r, seriesPerRequest, ts)
	}
	decoded, err := snappy.DecodedLen(bodies[0])
	require.NoError(t, err)
	// Two requests fit in the budget at once, not three.
	held := int64(decoded + len(bodies[0]))
	budget := held * 5 / 2
	t.Logf("each request: %d series, %d bytes compressed, %d decoded; budget %d bytes", seriesPerRequest, len(bodies[0]), decoded, budget)

	p := serve(t, bin, t.TempDir(), nil, "--limits.max-inflight-write-bytes", strconv.FormatInt(budget, 10))
	pid := p.cmd.Process.Pid
	// Idle: ready, and one small write done.
	f := newFiller(p.url)
	require.Equal(t, http.StatusNoContent, f.send(t, 0, 0, 10))
	idle := procStatus(t, pid, "VmRSS")

	var mu sync.Mutex
	refusals := 0
	var wg sync.WaitGroup
	for r, body := range bodies {
		wg.Go(func() {
			for attempt := 0; ; attempt++ {
				req, _ := http.NewRequest(http.MethodPost, p.url+"/api/v1/write", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/x-protobuf")
				req.Header.Set("Content-Encoding", "snappy")
				resp, err := fillClient.Do(req)
				if err != nil {
					t.Errorf("request %d: %v", r, err)
					return
				}
				msg, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusNoContent {
					return
				}
				if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
					t.Errorf("request %d: %d %s", r, resp.StatusCode, msg)
					return
				}
				ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
				if err != nil || ra <= 0 {
					t.Errorf("request %d: %d without a Retry-After: %q", r, resp.StatusCode, resp.Header.Get("Retry-After"))
					return
				}
				mu.Lock()
				if refusals == 0 {
					t.Logf("first refusal: %d Retry-After: %d: %s", resp.StatusCode, ra, strings.TrimSpace(string(msg)))
				}
				refusals++
				mu.Unlock()
				if !strings.Contains(string(msg), "--limits.max-inflight-write-bytes") {
					t.Errorf("request %d: the refusal does not name the flag: %s", r, msg)
					return
				}
				time.Sleep(time.Duration(ra) * time.Second)
			}
		})
	}
	wg.Wait()
	peak := procStatus(t, pid, "VmHWM") - idle
	series := requests * seriesPerRequest
	bound := budget + rwBudgetFixedMargin + int64(series)*rwBudgetPerSeriesMargin
	t.Logf("budget %d MiB: idle RSS %d MiB, peak above idle %d MiB (bound %d MiB), %d refusals (retried)", budget>>20, idle>>20, peak>>20, bound>>20, refusals)
	require.False(t, t.Failed())
	require.Positive(t, refusals, "requests beyond the budget are refused")
	require.LessOrEqual(t, peak, bound, "peak RSS above idle")

	// Every request was stored once it was admitted.
	got := instantValue(t, p.url, "count(budget_test_series)", ts)
	require.Equal(t, float64(series), got)
	require.NoError(t, stop(t, p))
}
