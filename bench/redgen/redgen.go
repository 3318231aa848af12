// Package redgen generates deterministic RED-style series (request
// counters, latency histograms, CPU counters and gauges) for benchmarks and
// the demo. It follows the shape of ../shared/peer-bench's generator: 100
// series per instance, values a pure function of (series, step).
package redgen

import (
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/labels"
)

// SeriesPerInstance is the number of series of one instance.
const SeriesPerInstance = 100

var services = []string{
	"checkout", "cart", "users", "catalog", "search", "payments", "auth", "shipping",
	"inventory", "reviews", "recommendations", "notifications", "orders", "pricing",
	"ads", "gateway", "media", "profile", "billing", "analytics",
}

var leBounds = []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"}

type kind uint8

const (
	counter kind = iota
	bucket
	histSum
	cpuSeconds
	ratio
	gaugeInt
	constant
)

// Series is one generated series.
type Series struct {
	Labels labels.Labels
	kind   kind
	seed   uint64
	rate   float64
	value  float64
}

func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func unit(x uint64) float64 { return float64(x>>11) / float64(1<<53) }

func gauss(seed uint64, step int64, salt uint64) float64 {
	a := mix(seed ^ uint64(step)*0xd6e8feb86659fd93 ^ salt)
	u1 := max(unit(a), 1e-300)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*unit(mix(a)))
}

// Build returns n series, SeriesPerInstance per instance.
func Build(n int) []*Series {
	out := make([]*Series, 0, n)
	for inst := 0; len(out) < n; inst++ {
		svc := services[inst%len(services)]
		instance := fmt.Sprintf("10.%d.%d.%d:8080", 1+inst/62500, (inst/250)%250, inst%250+1)
		base := func(name string, extra ...string) labels.Labels {
			b := labels.NewScratchBuilder(8)
			b.Add("__name__", name)
			b.Add("instance", instance)
			b.Add("job", "api")
			b.Add("service", svc)
			for i := 0; i+1 < len(extra); i += 2 {
				b.Add(extra[i], extra[i+1])
			}
			b.Sort()
			return b.Labels()
		}
		seed := mix(uint64(inst) + 12345)
		add := func(s *Series) {
			if len(out) < n {
				s.seed = mix(seed ^ uint64(len(out)))
				out = append(out, s)
			}
		}
		for _, m := range []string{"GET", "POST"} {
			for r := 0; r < 5; r++ {
				for _, code := range []string{"200", "500"} {
					rate := 4 * math.Exp(0.8*gauss(seed, int64(r), uint64(len(out))))
					if code == "500" {
						rate *= 0.004
					}
					add(&Series{Labels: base("http_requests_total", "code", code, "method", m, "route", fmt.Sprintf("/api/%d", r)), kind: counter, rate: rate})
				}
			}
		}
		for r := 0; r < 5; r++ {
			rate := 4 * math.Exp(0.8*gauss(seed, int64(r), 98))
			for b, le := range leBounds {
				add(&Series{Labels: base("http_request_duration_seconds_bucket", "le", le, "route", fmt.Sprintf("/api/%d", r)), kind: bucket, rate: rate * float64(b+1) / float64(len(leBounds))})
			}
			add(&Series{Labels: base("http_request_duration_seconds_sum", "route", fmt.Sprintf("/api/%d", r)), kind: histSum, rate: rate * 0.05})
			add(&Series{Labels: base("http_request_duration_seconds_count", "route", fmt.Sprintf("/api/%d", r)), kind: counter, rate: rate})
		}
		for _, cpu := range []string{"0", "1"} {
			for _, mode := range []string{"user", "system", "idle"} {
				add(&Series{Labels: base("node_cpu_seconds_total", "cpu", cpu, "mode", mode), kind: cpuSeconds, rate: 0.3, value: 123456.78})
			}
		}
		for _, cpu := range []string{"0", "1"} {
			add(&Series{Labels: base("cpu_usage_ratio", "cpu", cpu), kind: ratio, rate: 0.2 + 0.5*unit(mix(seed+uint64(len(out))))})
		}
		for _, g := range []string{"go_goroutines", "process_open_fds", "http_requests_in_flight", "node_load1", "process_resident_memory_bytes"} {
			add(&Series{Labels: base(g), kind: gaugeInt, value: float64(50 + int(unit(mix(seed+uint64(len(g))))*400))})
		}
		add(&Series{Labels: base("up"), kind: constant, value: 1})
		add(&Series{Labels: base("process_start_time_seconds"), kind: constant, value: float64(1700000000 + inst)})
		for len(out)%SeriesPerInstance != 0 && len(out) < n {
			add(&Series{Labels: base("padding_gauge", "i", fmt.Sprint(len(out)%SeriesPerInstance)), kind: gaugeInt, value: 10})
		}
	}
	return out
}

// Next advances the series by one step and returns its value.
func (s *Series) Next(step int64) float64 {
	switch s.kind {
	case counter, bucket:
		mean := s.rate * 15 * math.Exp(0.2*gauss(s.seed, step, 1))
		if inc := math.Round(mean + math.Sqrt(mean)*gauss(s.seed, step, 2)); inc > 0 {
			s.value += inc
		}
	case histSum:
		s.value += s.rate * 15 * (1 + 0.3*gauss(s.seed, step, 1))
	case cpuSeconds:
		s.value = math.Round((s.value+15*s.rate*max(0, 1+0.3*gauss(s.seed, step, 1)))*100) / 100
	case ratio:
		if s.value == 0 {
			s.value = s.rate
		}
		s.value = math.Min(1, math.Max(0.0001, s.value+0.3*(s.rate-s.value)+0.05*gauss(s.seed, step, 1)))
	case gaugeInt:
		s.value = math.Max(0, s.value+math.Round(gauss(s.seed, step, 1)*3))
	}
	return s.value
}
