package kube

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"
)

// track is one ReplicaSet of a service as Prometheus' Kubernetes pod
// discovery labels its pods' series (rollouts_pod_template_hash).
type track struct {
	hash string
	// share of the service's requests, 0 to 1.
	share float64
	// errorRatio is the share of the track's requests answered 500.
	errorRatio float64
	// latency is the mean request duration, in seconds.
	latency float64
}

// latency buckets of http_request_duration_seconds.
var buckets = []float64{0.05, 0.1, 0.2, 0.3, 0.5, 1, math.Inf(1)}

// traffic remote-writes a service's RED series, as the demo labels them
// (pkg/demo/traffic.go): http_requests_total by code and the
// http_request_duration_seconds histogram, for each track, every 10 s,
// always forward in time so that counters keep growing across calls.
type traffic struct {
	service string
	rng     *rand.Rand
	mu      sync.Mutex
	last    time.Time
	counts  map[string]float64 // by series key
}

func newTraffic(service string, seed int64) *traffic {
	return &traffic{service: service, rng: rand.New(rand.NewSource(seed)), counts: map[string]float64{}}
}

const tick = 10 * time.Second

// requestsPerTick is the service's whole traffic in one tick (50/s).
const requestsPerTick = 500

// mustWrite is write for the test's goroutine.
func (tr *traffic) mustWrite(t testing.TB, from, to time.Time, tracks ...track) {
	t.Helper()
	if err := tr.write(from, to, tracks...); err != nil {
		t.Fatal(err)
	}
}

// write writes the tracks' samples at every tick from from (or after the
// last written one) up to to.
func (tr *traffic) write(from, to time.Time, tracks ...track) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if !tr.last.IsZero() && from.Before(tr.last.Add(tick)) {
		from = tr.last.Add(tick)
	}
	from = from.Truncate(tick)
	var body []byte
	type ser struct {
		labels  [][2]string
		samples []byte
	}
	series := map[string]*ser{}
	add := func(ts time.Time, inc float64, labels ...[2]string) {
		labels = append(labels, [2]string{"app", tr.service}, [2]string{"job", "shop/" + tr.service}, [2]string{"service", tr.service})
		sort.Slice(labels, func(i, j int) bool { return labels[i][0] < labels[j][0] })
		key := fmt.Sprint(labels)
		tr.counts[key] += inc
		s := series[key]
		if s == nil {
			s = &ser{labels: labels}
			series[key] = s
		}
		s.samples = appendSample(s.samples, 2, tr.counts[key], ts.UnixMilli())
	}
	for ts := from; !ts.After(to); ts = ts.Add(tick) {
		for _, k := range tracks {
			if k.share == 0 {
				continue
			}
			hash := [2]string{"rollouts_pod_template_hash", k.hash}
			n := math.Round(requestsPerTick * k.share * (1 + 0.05*tr.rng.NormFloat64()))
			e := math.Round(max(n*k.errorRatio*(1+0.2*tr.rng.NormFloat64()), 0))
			add(ts, n-e, [2]string{"__name__", "http_requests_total"}, [2]string{"code", "200"}, hash)
			add(ts, e, [2]string{"__name__", "http_requests_total"}, [2]string{"code", "500"}, hash)
			mean := k.latency * (1 + 0.03*tr.rng.NormFloat64())
			for _, le := range buckets {
				cum := n
				if !math.IsInf(le, 1) {
					cum = math.Round(n * 0.5 * math.Erfc(-(le-mean)/(0.2*mean)/math.Sqrt2))
				}
				// Each bucket counts the requests at or below its bound.
				add(ts, cum, [2]string{"__name__", "http_request_duration_seconds_bucket"}, [2]string{"le", formatLE(le)}, hash)
			}
		}
		tr.last = ts
	}
	keys := make([]string, 0, len(series))
	for k := range series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		body = appendTimeSeries(body, series[k].labels, series[k].samples)
	}
	if len(body) == 0 {
		return nil
	}
	req, err := http.NewRequest(http.MethodPost, levitatedURL+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("remote write: %w", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("remote write: %d %s", resp.StatusCode, b)
	}
	return nil
}

func formatLE(le float64) string {
	if math.IsInf(le, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(le, 'g', -1, 64)
}

// Remote write 1.0, encoded by hand (prompb field numbers), as compat does.
func appendLabel(b []byte, field protowire.Number, name, value string) []byte {
	var l []byte
	l = protowire.AppendTag(l, 1, protowire.BytesType)
	l = protowire.AppendString(l, name)
	l = protowire.AppendTag(l, 2, protowire.BytesType)
	l = protowire.AppendString(l, value)
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, l)
}

func appendSample(b []byte, field protowire.Number, value float64, ts int64) []byte {
	var s []byte
	s = protowire.AppendTag(s, 1, protowire.Fixed64Type)
	s = protowire.AppendFixed64(s, math.Float64bits(value))
	s = protowire.AppendTag(s, 2, protowire.VarintType)
	s = protowire.AppendVarint(s, uint64(ts))
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, s)
}

func appendTimeSeries(b []byte, labels [][2]string, samples []byte) []byte {
	var s []byte
	for _, l := range labels {
		s = appendLabel(s, 1, l[0], l[1])
	}
	s = append(s, samples...)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	return protowire.AppendBytes(b, s)
}

// postEvent posts one change event to levitated and returns its id.
func postEvent(t testing.TB, ev map[string]any) string {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(levitatedURL+"/api/v1/events", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/events %s: %d %s", b, resp.StatusCode, out)
	}
	var got struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(out, &got)
	return got.ID
}
