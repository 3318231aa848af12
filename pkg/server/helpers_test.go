package server_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.uber.org/goleak"

	"github.com/levitated/levitated/pkg/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Pebble and the HTTP client keep these briefly after Close.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

const (
	contentTypeV1 = "application/x-protobuf"
	contentTypeV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
)

type response struct {
	code   int
	body   string
	header http.Header
}

// post sends body with the remote-write headers.
func post(t *testing.T, u, contentType string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	return do(t, req)
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{code: resp.StatusCode, body: string(b), header: resp.Header}
}

func encodeV1(t *testing.T, req *prompb.WriteRequest) []byte {
	t.Helper()
	b, err := proto.Marshal(req)
	require.NoError(t, err)
	return snappy.Encode(nil, b)
}

func encodeV2(t *testing.T, req *writev2.Request) []byte {
	t.Helper()
	b, err := proto.Marshal(req)
	require.NoError(t, err)
	return snappy.Encode(nil, b)
}

func writeV1(t *testing.T, base string, req *prompb.WriteRequest) response {
	t.Helper()
	return post(t, base+"/api/v1/write", contentTypeV1, encodeV1(t, req))
}

func writeV2(t *testing.T, base string, req *writev2.Request) response {
	t.Helper()
	return post(t, base+"/api/v1/write", contentTypeV2, encodeV2(t, req))
}

func get(t *testing.T, base, path string, params url.Values) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path+"?"+params.Encode(), nil)
	require.NoError(t, err)
	return do(t, req)
}

func postForm(t *testing.T, base, path string, params url.Values) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(params.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, req)
}

// labelsV1 builds prompb labels from name, value pairs, in the given order.
func labelsV1(nv ...string) []prompb.Label {
	ls := make([]prompb.Label, 0, len(nv)/2)
	for i := 0; i < len(nv); i += 2 {
		ls = append(ls, prompb.Label{Name: nv[i], Value: nv[i+1]})
	}
	return ls
}

// baseTime is a whole minute a few minutes ago, so that every test sample is
// accepted (not too far in the future, within the out-of-order window).
func baseTime() time.Time {
	return time.Now().Truncate(time.Minute).Add(-3 * time.Minute)
}

// unixString renders t as the API's seconds, e.g. "1700000000.5".
func unixString(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)
}

type serverOptions = server.Options

func labelsOf(nv ...string) labels.Labels { return labels.FromStrings(nv...) }

// otlpGauge is an OTLP export request with one gauge point, as an
// OpenTelemetry SDK for service "checkout", instance "i-1" sends it.
func otlpGauge(t *testing.T, name string, ts time.Time, v float64) io.Reader {
	t.Helper()
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	rm.Resource().Attributes().PutStr("service.instance.id", "i-1")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName(name)
	dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	dp.SetDoubleValue(v)
	b, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	require.NoError(t, err)
	return bytes.NewReader(b)
}

// stoppable is a server started on a given directory, stopped explicitly.
type stoppable struct {
	URL  string
	stop func()
}

func startOnDir(t *testing.T, dir string) stoppable {
	t.Helper()
	return startOnDirWith(t, dir, nil)
}

// startOnDirWith is startOnDir with options set by configure (if not nil).
func startOnDirWith(t *testing.T, dir string, configure func(o *server.Options)) stoppable {
	t.Helper()
	o := server.DefaultOptions()
	o.ListenAddress = "127.0.0.1:0"
	o.DataDir = dir
	o.Registry = prometheus.NewRegistry()
	if configure != nil {
		configure(&o)
	}
	s, err := server.New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return stoppable{URL: "http://" + s.Addr().String(), stop: func() {
		cancel()
		require.NoError(t, <-done)
	}}
}

type serverServices = server.Services
