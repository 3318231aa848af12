package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	levserver "github.com/levitated/levitated/pkg/server"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// writeSteady remote-writes 12 minutes from base of a service's requests:
// 1000 per 10 s, 1 % errors, then from 6m the given error share.
func writeSteady(t *testing.T, u, service string, base time.Time, after float64) {
	t.Helper()
	ok := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "http_requests_total"}, {Name: "code", Value: "200"}, {Name: "service", Value: service}}}
	bad := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "http_requests_total"}, {Name: "code", Value: "500"}, {Name: "service", Value: service}}}
	var nOK, nBad float64
	for at := time.Duration(0); at < 12*time.Minute; at += 10 * time.Second {
		share := 0.01
		if at >= 6*time.Minute {
			share = after
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

// TestImpactAndGate runs eventctl impact and eventctl gate against a real
// levitated: the deploy that keeps 1 % errors is promoted (exit 0), the one
// that raises them to 10 % is blocked (exit 1) with error-ratio named.
func TestImpactAndGate(t *testing.T) {
	srv := servertest.Start(t, func(o *levserver.Options) {
		o.Storage.OutOfOrderWindow = time.Hour
		o.Impact.Interval = 50 * time.Millisecond
	})
	ctx := context.Background()
	envv := map[string]string{"LEVITATED_SERVER": srv.URL}
	base := time.Now().Truncate(10 * time.Second).Add(-15 * time.Minute)
	writeSteady(t, srv.URL, "web", base, 0.01)
	writeSteady(t, srv.URL, "pay", base, 0.10)
	ids := map[string]string{}
	for _, svc := range []string{"web", "pay"} {
		for _, st := range []struct {
			state string
			at    time.Duration
		}{{"start", 6 * time.Minute}, {"stop", 11 * time.Minute}} {
			r := eventctl(t, ctx, envv, st.state, "deploy", "--attr", "service="+svc, "--time", base.Add(st.at).UTC().Format(time.RFC3339))
			require.Equal(t, 0, r.code, r.stderr)
			if st.state == "start" {
				ids[svc] = strings.TrimSpace(r.stdout)
			}
		}
	}
	var r result
	for range 400 {
		if r = eventctl(t, ctx, envv, "impact", ids["pay"]); r.code == 0 {
			break
		}
		require.Contains(t, r.stderr, "not judged yet")
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "deploy "+ids["pay"]+" of pay: fail (score 0), failing: error-ratio")

	r = eventctl(t, ctx, envv, "gate", "--service", "web")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.True(t, strings.HasPrefix(r.stdout, "promote (recorded judgement)\n"), r.stdout)
	r = eventctl(t, ctx, envv, "gate", "--service", "pay", "--dry-run")
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	require.True(t, strings.HasPrefix(r.stdout, "block (recorded judgement)\n"), r.stdout)
	require.Contains(t, r.stdout, "error-ratio High")

	r = eventctl(t, ctx, envv, "gate", "--service", "nosuch")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, `eventctl: gate: no change of service "nosuch"`)
	r = eventctl(t, ctx, envv, "gate")
	require.Equal(t, 2, r.code)
	r = eventctl(t, ctx, envv, "impact", "nosuch")
	require.Equal(t, 1, r.code)
}
