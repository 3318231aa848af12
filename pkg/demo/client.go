package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// client talks to levitated over HTTP as the peers do: remote write as a
// Prometheus agent, events as a CI pipeline, the analysis API as Argo
// Rollouts' Web provider, the query API as Grafana.
type client struct {
	base string
	http *http.Client
	// token, if set, is sent as a bearer token (--token of demo --url).
	token string
}

func (c *client) do(ctx context.Context, method, path string, body []byte, header http.Header, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// write sends a remote write 1.0 request.
func (c *client) write(ctx context.Context, req *prompb.WriteRequest) error {
	b, err := req.Marshal()
	if err != nil {
		return fmt.Errorf("encode remote write: %w", err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-protobuf")
	h.Set("Content-Encoding", "snappy")
	h.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	return c.do(ctx, http.MethodPost, "/api/v1/write", snappy.Encode(nil, b), h, nil)
}

// event is a change event as POST /api/v1/events takes it.
type event struct {
	Name       string            `json:"name"`
	State      string            `json:"state"`
	Timestamp  string            `json:"timestamp"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Text       string            `json:"text,omitempty"`
}

func (c *client) event(ctx context.Context, e event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	return c.do(ctx, http.MethodPost, "/api/v1/events", b, h, nil)
}

// storedEvent is an event as GET /api/v1/events lists it.
type storedEvent struct {
	Name       string            `json:"name"`
	State      string            `json:"state"`
	Timestamp  time.Time         `json:"timestamp"`
	Attributes map[string]string `json:"attributes"`
	Text       string            `json:"text"`
	Window     *struct {
		Start time.Time  `json:"start"`
		End   *time.Time `json:"end"`
		Open  bool       `json:"open"`
	} `json:"window"`
}

func (c *client) events(ctx context.Context) ([]storedEvent, error) {
	var out struct {
		Events []storedEvent `json:"events"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/events?limit=1000", nil, nil, &out)
	return out.Events, err
}

// analysis is the part of POST /api/v1/analysis's answer the demo shows.
type analysis struct {
	Score   float64 `json:"score"`
	Verdict string  `json:"verdict"`
	Reason  string  `json:"reason"`
	Start   string  `json:"start"`
	End     string  `json:"end"`
	Metrics []struct {
		Name           string `json:"name"`
		Classification string `json:"classification"`
		Explanation    string `json:"explanation"`
	} `json:"metrics"`
}

func (c *client) analyze(ctx context.Context, body []byte) (analysis, error) {
	var out analysis
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	err := c.do(ctx, http.MethodPost, "/api/v1/analysis", body, h, &out)
	return out, err
}

// sample is one series' value of an instant query.
type sample struct {
	Labels map[string]string
	Value  float64
}

// query runs an instant query at t.
func (c *client) query(ctx context.Context, q string, t time.Time) ([]sample, error) {
	v := url.Values{"query": {q}, "time": {formatTime(t)}}
	var out struct {
		Data struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/query?"+v.Encode(), nil, nil, &out); err != nil {
		return nil, err
	}
	if out.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: want a vector, got a %s", q, out.Data.ResultType)
	}
	var res []sample
	for _, r := range out.Data.Result {
		f, err := parseValue(r.Value[1])
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", q, err)
		}
		res = append(res, sample{Labels: r.Metric, Value: f})
	}
	return res, nil
}

// point is one sample of a range query.
type point struct {
	T time.Time
	V float64
}

// series is one series of a range query.
type series struct {
	Labels map[string]string
	Points []point
}

// queryRange runs a range query.
func (c *client) queryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]series, error) {
	v := url.Values{"query": {q}, "start": {formatTime(start)}, "end": {formatTime(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	var out struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/query_range?"+v.Encode(), nil, nil, &out); err != nil {
		return nil, err
	}
	var res []series
	for _, r := range out.Data.Result {
		s := series{Labels: r.Metric}
		for _, p := range r.Values {
			ts, ok := p[0].(float64)
			if !ok {
				return nil, fmt.Errorf("query_range %q: timestamp %v is not a number", q, p[0])
			}
			f, err := parseValue(p[1])
			if err != nil {
				return nil, fmt.Errorf("query_range %q: %w", q, err)
			}
			s.Points = append(s.Points, point{T: time.UnixMilli(int64(math.Round(ts * 1000))), V: f})
		}
		res = append(res, s)
	}
	return res, nil
}

func parseValue(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("value %v is not a string", v)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q: %w", s, err)
	}
	return f, nil
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)
}
