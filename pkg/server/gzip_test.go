package server_test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	kzlib "github.com/klauspost/compress/zlib"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/pgzip"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// TestQueryGzip: the answers of /api/v1/query_range and /api/v1/query in
// gzip (compressed by levitated, in blocks on all cores once large)
// decompress to the bytes of the uncompressed answer; deflate, chosen as
// Prometheus chooses it, is still Prometheus' (its bytes are those of
// klauspost's zlib at the default level, flushed and closed, as
// httputil's); errors are compressed too, and an answer under 1 KiB
// (gzhttp's minimum, VictoriaMetrics') is sent as it is.
func TestQueryGzip(t *testing.T) {
	defer func(n int) { pgzip.ParallelBytes = n }(pgzip.ParallelBytes)
	pgzip.ParallelBytes = 1024 // the answers below are 3 and 60 kB
	srv := servertest.Start(t)
	now := writeCounters(t, srv.URL, 40, 120)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	seen := map[bool]bool{} // answers under 1 KiB and not
	fetch := func(path string, params url.Values, accept string) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodGet, srv.URL+path+"?"+params.Encode(), nil)
		require.NoError(t, err)
		if accept != "" {
			req.Header.Set("Accept-Encoding", accept)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, b
	}
	for _, c := range []struct {
		path   string
		params url.Values
		code   int
	}{
		{"/api/v1/query_range", url.Values{"query": {"rate(req_total[1m])"}, "start": {unixString(now.Add(-30 * time.Minute))}, "end": {unixString(now)}, "step": {"15"}}, 200},
		{"/api/v1/query", url.Values{"query": {"req_total"}, "time": {unixString(now)}}, 200},
		{"/api/v1/query_range", url.Values{"query": {"rate(req_total[1m]"}, "start": {"1"}, "end": {"2"}, "step": {"15"}}, 400},
		// A 400 whose message (it quotes the step) is over 1 KiB.
		{"/api/v1/query_range", url.Values{"query": {"req_total"}, "start": {"1"}, "end": {"2"}, "step": {strings.Repeat("x", 1100)}}, 400},
	} {
		plain, want := fetch(c.path, c.params, "")
		require.Equal(t, c.code, plain.StatusCode, string(want))
		require.Empty(t, plain.Header.Get("Content-Encoding"))
		for _, accept := range []string{"gzip", "br, gzip", "gzip, deflate"} {
			resp, body := fetch(c.path, c.params, accept)
			require.Equal(t, c.code, resp.StatusCode)
			require.Equal(t, plain.Header.Values("Vary"), resp.Header.Values("Vary"))
			require.Equal(t, plain.Header.Get("Content-Type"), resp.Header.Get("Content-Type"))
			if len(want) < 1024 {
				require.Empty(t, resp.Header.Get("Content-Encoding"), "%s %s: %d bytes", c.path, accept, len(want))
				require.Equal(t, string(want), string(body))
				continue
			}
			require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"), accept)
			zr, err := gzip.NewReader(bytes.NewReader(body))
			require.NoError(t, err)
			zr.Multistream(false)
			got, err := io.ReadAll(zr)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got), "%s %s", c.path, accept)
		}
		resp, body := fetch(c.path, c.params, "deflate, gzip")
		require.Equal(t, "deflate", resp.Header.Get("Content-Encoding"))
		zr, err := zlib.NewReader(bytes.NewReader(body))
		require.NoError(t, err)
		got, err := io.ReadAll(zr)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
		var prom bytes.Buffer
		zw := kzlib.NewWriter(&prom)
		_, err = zw.Write(want)
		require.NoError(t, err)
		require.NoError(t, zw.Flush())
		require.NoError(t, zw.Close())
		require.Equal(t, prom.Bytes(), body, "%s: deflate's bytes are Prometheus' handler's", c.path)
		if c.code == 200 {
			require.Greater(t, len(want), pgzip.ParallelBytes, "the answer is compressed in blocks")
		}
		seen[len(want) < 1024] = true
	}
	require.Equal(t, map[bool]bool{false: true, true: true}, seen, "answers under 1 KiB and over it")
}

// TestQueryAnswersReused: large answers, whose buffers the JSON codec gets
// back once written (matrixcodec.Recycle), stay whole when queries of
// different answers run concurrently, compressed (gzip, deflate) or not.
func TestQueryAnswersReused(t *testing.T) {
	srv := servertest.Start(t)
	now := writeCounters(t, srv.URL, 200, 130)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	fetch := func(query, accept string) []byte {
		params := url.Values{"query": {query}, "start": {unixString(now.Add(-30 * time.Minute))}, "end": {unixString(now)}, "step": {"15"}, "nocache": {"1"}}
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/query_range?"+params.Encode(), nil)
		if err != nil {
			return []byte(err.Error())
		}
		if accept != "" {
			req.Header.Set("Accept-Encoding", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			return []byte(err.Error())
		}
		defer resp.Body.Close()
		var r io.Reader = resp.Body
		switch resp.Header.Get("Content-Encoding") {
		case "gzip":
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				return []byte(err.Error())
			}
			r = zr
		case "deflate":
			zr, err := zlib.NewReader(resp.Body)
			if err != nil {
				return []byte(err.Error())
			}
			r = zr
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return []byte(err.Error())
		}
		return b
	}
	queries := []string{"req_total", "rate(req_total[1m])", "req_total * 2"}
	want := map[string][]byte{}
	for _, q := range queries {
		want[q] = fetch(q, "")
		require.Greater(t, bytes.Count(want[q], []byte("],[")), 20000, "%s: the answer is large enough to be encoded in runs", q)
	}
	errs := make(chan error, 6)
	for g := range 6 {
		go func() {
			for i := range 8 {
				q := queries[(g+i)%len(queries)]
				accept := []string{"", "gzip", "deflate"}[(g+i)%3]
				if got := fetch(q, accept); !bytes.Equal(got, want[q]) {
					errs <- fmt.Errorf("%s (Accept-Encoding %q): the answer differs from the first (%d bytes vs %d)", q, accept, len(got), len(want[q]))
					return
				}
			}
			errs <- nil
		}()
	}
	for range 6 {
		require.NoError(t, <-errs)
	}
}

// writeCounters remote-writes n series req_total{pod="0".."n-1"}, each with
// k samples 15 s apart up to the current minute (series i grows by i+1 a
// step), and returns that minute.
func writeCounters(t *testing.T, url string, n, k int) time.Time {
	t.Helper()
	now := time.Now().Truncate(time.Minute)
	var ts []prompb.TimeSeries
	for i := range n {
		s := prompb.TimeSeries{Labels: labelsV1("__name__", "req_total", "pod", fmt.Sprint(i))}
		for j := range k {
			s.Samples = append(s.Samples, prompb.Sample{Timestamp: now.Add(time.Duration(j-k) * 15 * time.Second).UnixMilli(), Value: float64(j * (i + 1))})
		}
		ts = append(ts, s)
	}
	require.Equal(t, http.StatusNoContent, writeV1(t, url, &prompb.WriteRequest{Timeseries: ts}).code)
	return now
}
