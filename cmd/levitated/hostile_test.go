package main

import (
	"bufio"
	"context"
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

	"github.com/stretchr/testify/require"
)

// The tests of this file send queries built to hurt the real binary: deep
// nesting, a 1 MB query, subqueries of 86,400,000 steps, a query that
// would run for hours. Each must be refused (or cut off) with the right
// status and a message naming the flag, and the server's peak RSS must
// stay within 512 MB of its idle RSS. Nothing here asserts a wall-clock
// time; the durations are logged.

// procStatusKB reads a field (VmRSS, VmHWM) of /proc/<pid>/status in kB.
func procStatusKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// nested returns query q nested n levels deep in shape.
func nested(shape string, n int) string {
	switch shape {
	case "parentheses":
		return strings.Repeat("(", n) + "1" + strings.Repeat(")", n)
	case "calls":
		return strings.Repeat("abs(", n) + "vector(1)" + strings.Repeat(")", n)
	case "unary minus":
		return strings.Repeat("-", n) + "1"
	case "addition chain":
		return strings.Repeat("1+", n) + "1"
	}
	panic(shape)
}

type hostileCase struct {
	name   string
	path   string
	query  string
	status int
	says   []string
}

func TestHostileQueries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := levitatedBinary(t)
	p := serve(t, bin, t.TempDir(), nil, "--query.timeout", "5s")
	pid := p.cmd.Process.Pid
	// Idle: after a first query has warmed the engine up.
	post(t, p.url+"/api/v1/query", url.Values{"query": {"1"}})
	idle := procStatusKB(t, pid, "VmRSS")

	var cases []hostileCase
	for _, path := range []string{"/api/v1/parse_query", "/api/v1/query", "/api/v1/query_range", "/api/v1/format_query"} {
		for _, shape := range []string{"parentheses", "calls", "unary minus", "addition chain"} {
			for _, n := range []int{1_000, 10_000, 100_000} {
				c := hostileCase{
					name: fmt.Sprintf("%s %s %d", path, shape, n), path: path, query: nested(shape, n),
					status: http.StatusBadRequest, says: []string{"nests more than 500 levels deep", "--query.max-depth"},
				}
				if len(c.query) > 65536 { // the length is checked first
					c.says = []string{"more than the limit of 65536 bytes", "--query.max-length"}
				}
				cases = append(cases, c)
			}
		}
		cases = append(cases, hostileCase{
			name: path + " 1 MB", path: path, query: `up{job=~"` + strings.Repeat("a|", 1<<19) + `"}`,
			status: http.StatusBadRequest, says: []string{"more than the limit of 65536 bytes", "--query.max-length"},
		}, hostileCase{
			name: path + " MetricsQL WITH, 1 MB", path: path, query: `WITH (x = up) x + ` + strings.Repeat("(", 1<<20),
			status: http.StatusBadRequest, says: []string{"--query.max-length"},
		})
	}
	for _, path := range []string{"/api/v1/query", "/api/v1/query_range"} {
		for _, q := range []string{
			`sum_over_time(vector(1)[1d:1ms])`,
			`count_over_time((up or vector(1))[7d:1ms])`,
			`max_over_time(sum_over_time(vector(1)[1h:1ms])[1d:1h])`,
		} {
			cases = append(cases, hostileCase{
				name: path + " " + q, path: path, query: q,
				status: http.StatusUnprocessableEntity, says: []string{"more than the limit of 50000000 samples", "--query.max-samples"},
			})
		}
	}
	// A query that would run for hours is cut off by --query.timeout.
	cases = append(cases, hostileCase{
		name: "hours of work", path: "/api/v1/query", query: `max_over_time(max_over_time(vector(1)[1d:1s])[30d:1s])`,
		status: http.StatusServiceUnavailable, says: []string{"query timed out"},
	})

	// Four at a time, as several clients would.
	work := make(chan hostileCase)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range 4 {
		wg.Go(func() {
			for c := range work {
				began := time.Now()
				code, body := post(t, p.url+c.path, url.Values{"query": {c.query}, "start": {"0"}, "end": {"86400"}, "step": {"3600"}})
				took := time.Since(began)
				mu.Lock()
				t.Logf("%-60.60s %d in %v", c.name, code, took.Round(time.Millisecond))
				mu.Unlock()
				assertHostile(t, c, code, body)
			}
		})
	}
	for _, c := range cases {
		work <- c
	}
	close(work)
	wg.Wait()

	peak := procStatusKB(t, pid, "VmHWM")
	t.Logf("RSS idle %d MB, peak %d MB", idle>>10, peak>>10)
	require.Less(t, peak-idle, int64(512<<10), "peak RSS %d kB is more than 512 MB above idle RSS %d kB", peak, idle)
	// The server still answers.
	code, body := post(t, p.url+"/api/v1/query", url.Values{"query": {"1+1"}})
	require.Equal(t, http.StatusOK, code, body)
}

func assertHostile(t *testing.T, c hostileCase, code int, body string) {
	t.Helper()
	if c.status != code {
		t.Errorf("%s: status %d, want %d: %.300s", c.name, code, c.status, body)
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "error" {
		t.Errorf("%s: not a Prometheus error: %.300s", c.name, body)
		return
	}
	for _, s := range c.says {
		if !strings.Contains(r.Error, s) {
			t.Errorf("%s: error %q does not say %q", c.name, r.Error, s)
		}
	}
}

func post(t *testing.T, u string, form url.Values) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: hang}).PostForm(u, form)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// engineQueries reads prometheus_engine_queries, the queries the engine is
// evaluating, from /metrics.
func engineQueries(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "prometheus_engine_queries "); ok {
			return v
		}
	}
	t.Fatal("no prometheus_engine_queries in /metrics")
	return ""
}

// TestQueryCancelledWhenClientLeaves: a query that would run for hours
// (--query.timeout 1h) stops being evaluated once its client closes the
// connection.
func TestQueryCancelledWhenClientLeaves(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := levitatedBinary(t)
	p := serve(t, bin, t.TempDir(), nil, "--query.timeout", "1h")
	require.Equal(t, "0", engineQueries(t, p.url))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/api/v1/query",
			strings.NewReader(url.Values{"query": {`max_over_time(max_over_time(vector(1)[1d:1s])[30d:1s])`}}.Encode()))
		if err != nil {
			done <- err
			return
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			err = fmt.Errorf("the query answered %d: %.300s", resp.StatusCode, b)
		}
		done <- err
	}()
	deadline := time.Now().Add(hang)
	for engineQueries(t, p.url) != "1" {
		require.True(t, time.Now().Before(deadline), "the query never started")
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	left := time.Now()
	for engineQueries(t, p.url) != "0" {
		require.True(t, time.Now().Before(left.Add(hang)), "the engine still evaluates the query after its client left")
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("evaluation ended %v after the client left", time.Since(left).Round(time.Millisecond))
}
