package server_test

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/matrixcodec"
	"github.com/levitated/levitated/pkg/server/servertest"
)

// TestQueryGzipAsPrometheus: the query routes' gzip (pooled writers,
// compression.go) answers what Prometheus' httputil.CompressionHandler
// would: the identity body through a new klauspost gzip.Writer (Write,
// Flush, Close), Content-Encoding gzip, Vary Accept-Encoding — for every
// request, also when requests run concurrently
// and writers are reused; deflate and methods Prometheus' router answers
// itself are left to it.
func TestQueryGzipAsPrometheus(t *testing.T) {
	srv := servertest.Start(t)
	ts := baseTime()
	var series []prompb.TimeSeries
	for i, svc := range []string{"checkout", "cart", "users"} {
		var samples []prompb.Sample
		for j := range 20 {
			at := ts.Add(-time.Duration(19-j) * 15 * time.Second)
			samples = append(samples, prompb.Sample{Timestamp: at.UnixMilli(), Value: float64(i*1000 + j*j)})
		}
		series = append(series, prompb.TimeSeries{Labels: labelsV1("__name__", "http_requests_total", "service", svc), Samples: samples})
	}
	require.Equal(t, http.StatusNoContent, writeV1(t, srv.URL, &prompb.WriteRequest{Timeseries: series}).code)

	at := unixString(ts)
	from := unixString(ts.Add(-10 * time.Minute))
	requests := []struct {
		method, path string
		form         url.Values
	}{
		{http.MethodPost, "/api/v1/query", url.Values{"query": {"http_requests_total"}, "time": {at}}},
		{http.MethodGet, "/api/v1/query", url.Values{"query": {"sum(rate(http_requests_total[5m"}, "time": {at}}}, // 400
		{http.MethodPost, "/api/v1/query_range", url.Values{"query": {"rate(http_requests_total[5m])"}, "start": {from}, "end": {at}, "step": {"15"}, "nocache": {"1"}}},
		{http.MethodPost, "/api/v1/series", url.Values{"match[]": {`{service=~"c.*"}`}, "start": {from}, "end": {at}}},
		{http.MethodGet, "/api/v1/labels", url.Values{}},
		{http.MethodGet, "/api/v1/label/service/values", url.Values{}},
		{http.MethodPost, "/api/v1/query_exemplars", url.Values{"query": {"http_requests_total"}, "start": {from}, "end": {at}}},
		{http.MethodOptions, "/api/v1/series", url.Values{}},
	}
	raw := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	send := func(method, path string, form url.Values, acceptEncoding string) (*http.Response, []byte) {
		var body io.Reader
		u := srv.URL + path
		if method == http.MethodPost {
			body = strings.NewReader(form.Encode())
		} else if len(form) > 0 {
			u += "?" + form.Encode()
		}
		req, err := http.NewRequest(method, u, body)
		require.NoError(t, err)
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", acceptEncoding)
		}
		resp, err := raw.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, b
	}
	for _, r := range requests {
		plain, identity := send(r.method, r.path, r.form, "")
		require.Empty(t, plain.Header.Get("Content-Encoding"), r.path)
		want := gzipAsPrometheus(t, identity)
		if plain.StatusCode == http.StatusNoContent {
			want = nil // no body in a 204, compressed or not
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 3 {
					resp, body := send(r.method, r.path, r.form, "br, gzip")
					same := bytes.Equal(body, want)
					encoding := "gzip"
					if r.path == "/api/v1/query" || r.path == "/api/v1/query_range" {
						// At best speed (withPooledGzip's fast): the same
						// answer, not the same bytes; under 1 KiB, the
						// answer as it is (gzhttp's minimum).
						same = bytes.Equal(gunzip(body), identity)
						if len(identity) < 1024 {
							encoding, same = "", bytes.Equal(body, identity)
						}
					}
					if resp.StatusCode != plain.StatusCode || resp.Header.Get("Content-Encoding") != encoding ||
						!contains(resp.Header.Values("Vary"), "Accept-Encoding") || !same {
						t.Errorf("%s %s: status %d, Content-Encoding %q, Vary %q, %d bytes; want %d, %q, Accept-Encoding, %d bytes (equal: %v)",
							r.method, r.path, resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.Header.Values("Vary"),
							len(body), plain.StatusCode, encoding, len(want), same)
					}
				}
			}()
		}
		wg.Wait()
		// deflate first: Prometheus' handler answers it.
		resp, _ := send(r.method, r.path, r.form, "deflate, gzip")
		require.Equal(t, "deflate", resp.Header.Get("Content-Encoding"), r.path)
	}
	// An answer compressed already (the console's matrix+gzip) is sent as
	// it is, for gzip and deflate alike: no Content-Encoding, the codec's
	// gzip of the matrix; another Accept on the same route is compressed.
	for ae, enc := range map[string]string{"gzip, deflate, br": "gzip", "deflate": "deflate"} {
		for _, accept := range []string{matrixcodec.MediaTypeGzip, "application/json"} {
			form := url.Values{"query": {"http_requests_total"}, "start": {from}, "end": {at}, "step": {"15"}}
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/query_range", strings.NewReader(form.Encode()))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Accept", accept)
			req.Header.Set("Accept-Encoding", ae)
			resp, err := raw.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, accept, resp.Header.Get("Content-Type"))
			if accept != matrixcodec.MediaTypeGzip {
				require.Equal(t, enc, resp.Header.Get("Content-Encoding"), ae)
				continue
			}
			require.Empty(t, resp.Header.Get("Content-Encoding"), ae)
			_, got, err := matrixcodec.Decode(gunzip(body))
			require.NoError(t, err, ae)
			require.Len(t, got, 3, ae)
		}
	}
	// A method the router refuses is answered outside its compression.
	for _, r := range []struct{ method, path string }{{http.MethodPut, "/api/v1/labels"}, {http.MethodPost, "/api/v1/label/service/values"}} {
		resp, body := send(r.method, r.path, nil, "gzip")
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, r.path)
		require.Empty(t, resp.Header.Get("Content-Encoding"), r.path)
		require.Equal(t, "Method Not Allowed\n", string(body), r.path)
	}
}

// gzipAsPrometheus is what httputil.CompressionHandler sends for body.
func gzipAsPrometheus(t *testing.T, body []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	_, err := zw.Write(body)
	require.NoError(t, err)
	require.NoError(t, zw.Flush())
	require.NoError(t, zw.Close())
	return out.Bytes()
}

// gunzip is body decompressed, nil if it is not gzip (for goroutines: no
// t).
func gunzip(body []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil
	}
	return b
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}
