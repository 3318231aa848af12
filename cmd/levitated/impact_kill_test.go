package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// writeRequests remote-writes 14 minutes from base of a service's
// http_requests_total by code, scraped every 10 s: 100 requests per second,
// 1 % of them 5xx, and errRatio from 6m on.
func writeRequests(t *testing.T, u, service string, base time.Time, errRatio float64) {
	t.Helper()
	series := func(code string) prompb.TimeSeries {
		return prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "http_requests_total"}, {Name: "code", Value: code}, {Name: "service", Value: service}}}
	}
	ok, bad := series("200"), series("500")
	var nOK, nBad float64
	for at := time.Duration(0); at < 14*time.Minute; at += 10 * time.Second {
		share := 0.01
		if at >= 6*time.Minute {
			share = errRatio
		}
		nOK, nBad = nOK+1000*(1-share), nBad+1000*share
		ts := base.Add(at).UnixMilli()
		ok.Samples = append(ok.Samples, prompb.Sample{Timestamp: ts, Value: nOK})
		bad.Samples = append(bad.Samples, prompb.Sample{Timestamp: ts, Value: nBad})
	}
	b, err := proto.Marshal(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ok, bad}})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, u+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, b)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
}

// sendEvent posts one event and returns its id; the 2xx means it is
// fsynced.
func sendEvent(t *testing.T, u, body string) string {
	t.Helper()
	resp, err := http.Post(u+"/api/v1/events", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	var out struct {
		Event struct {
			ID string `json:"id"`
		} `json:"event"`
	}
	require.NoError(t, json.Unmarshal(b, &out))
	return out.Event.ID
}

// perLabel evaluates expr now and returns its values by the value of label.
func perLabel(t *testing.T, u, expr, label string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(u + "/api/v1/query?" + url.Values{"query": {expr}}.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		v, err := strconv.ParseFloat(r.Value[1].(string), 64)
		require.NoError(t, err)
		out[r.Metric[label]] += v
	}
	return out
}

// judgements returns the verdicts of the change_impact events, by change
// id.
func judgements(t *testing.T, u string) map[string][]string {
	t.Helper()
	resp, err := http.Get(u + "/api/v1/events?" + url.Values{"name": {"change_impact"}, "limit": {"1000"}}.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Events []struct {
			Attributes map[string]string `json:"attributes"`
		} `json:"events"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	out := map[string][]string{}
	for _, e := range body.Events {
		out[e.Attributes["change_id"]] = append(out[e.Attributes["change_id"]], e.Attributes["verdict"])
	}
	return out
}

// TestImpactKill9 is issue 17's durability claim on the real binary. In
// each round, levitated (judging an hour after a stop) receives the RED
// metrics and the deploys of eight services, half of which regress, and is
// killed with SIGKILL right after the last stop's 2xx: no judgement can
// have begun. It is restarted judging a second after a stop, and killed
// again once a random number of those deploys have their change_impact
// event: while the next judgement is under way. At the end, after a clean
// restart, each deploy has exactly one change_impact event with the
// expected verdict, one change_impact_score sample and one
// change_deployments_total sample.
func TestImpactKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := levitatedBinary(t)
	dir := t.TempDir()
	late := filepath.Join(t.TempDir(), "late.yml")
	require.NoError(t, os.WriteFile(late, []byte("events:\n  delay: 1h\n"), 0o600))
	soon := filepath.Join(t.TempDir(), "soon.yml")
	require.NoError(t, os.WriteFile(soon, []byte("events:\n  delay: 1s\n"), 0o600))
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 3))

	base := time.Now().Truncate(10 * time.Second).Add(-20 * time.Minute)
	at := func(d time.Duration) string { return base.Add(d).UTC().Format(time.RFC3339) }
	const perRound = 8
	want := map[string]string{} // change id → verdict
	for round := range 4 {
		p := start(t, bin, dir, "--impact.config", late)
		// Each service's deploy is a window from 6m to 10m; the odd
		// services' errors rise tenfold with it.
		for i := range perRound {
			svc := fmt.Sprintf("r%d-svc%d", round, i)
			errRatio, verdict := 0.01, "pass"
			if i%2 == 1 {
				errRatio, verdict = 0.10, "fail"
			}
			writeRequests(t, p.url, svc, base, errRatio)
			attrs := fmt.Sprintf(`{"service":%q}`, svc)
			id := sendEvent(t, p.url, fmt.Sprintf(`{"name":"deploy","state":"start","timestamp":%q,"attributes":%s}`, at(6*time.Minute), attrs))
			sendEvent(t, p.url, fmt.Sprintf(`{"name":"deploy","state":"stop","timestamp":%q,"attributes":%s}`, at(10*time.Minute), attrs))
			want[id] = verdict
		}
		require.LessOrEqual(t, len(judgements(t, p.url)), len(want)-perRound, "this round's deploys were judged before the kill")
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
		<-p.exited

		p = start(t, bin, dir, "--impact.config", soon)
		before := len(judgements(t, p.url)) // the scheduler starts judging at once
		target := before + rng.IntN(perRound)
		for len(judgements(t, p.url)) < target {
			time.Sleep(time.Millisecond)
		}
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
		<-p.exited
		t.Logf("round %d: killed once %d of %d were judged (%d at the restart)", round, target, len(want), before)
	}

	p := start(t, bin, dir, "--impact.config", soon)
	for range 600 {
		if len(judgements(t, p.url)) == len(want) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Once all are judged, restart again: nothing is judged twice.
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-p.exited, p.stderr.String())
	p = start(t, bin, dir, "--impact.config", soon)
	time.Sleep(time.Second) // the scheduler's first tick runs at start
	got := judgements(t, p.url)
	for id, verdict := range want {
		require.Equal(t, []string{verdict}, got[id], "change %s: one change_impact event", id)
	}
	require.Len(t, got, len(want))
	scores := perLabel(t, p.url, `count_over_time(change_impact_score[1h])`, "change_id")
	deploys := perLabel(t, p.url, `count_over_time(change_deployments_total[1h])`, "service")
	for id := range want {
		require.Equal(t, 1.0, scores[id], "change %s: change_impact_score samples", id)
	}
	require.Len(t, deploys, len(want))
	for svc, n := range deploys {
		require.Equal(t, 1.0, n, "%s: change_deployments_total samples", svc)
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, <-p.exited, p.stderr.String())
}
