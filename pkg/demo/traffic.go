package demo

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// The service the demo rolls out, labelled as Prometheus' Kubernetes pod
// discovery with a labelmap labels an Argo Rollouts canary's pods (or,
// with ControllerFlagger, a Flagger canary's: see podNaming).
const (
	service    = "checkout"
	namespace  = "shop"
	stableHash = "6d8b7c9f4b"
	canaryHash = "7f5c4d8b9c"
	// promotedPrimaryHash is the pod-template hash of Flagger's primary
	// once the canary's spec is copied to it: not the canary's, since the
	// primary's template has its own selector label (app=checkout-primary).
	promotedPrimaryHash = "5c8f6b7d9f"
	oldVersion          = "1.4.0"
	newVersion          = "1.5.0"

	// tick is the simulated scrape interval.
	tick = 10 * time.Second
	// requestsPerSecond is the service's whole traffic.
	requestsPerSecond = 120.0
)

// Latency histogram bucket bounds, in seconds.
var buckets = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// health is how a pod behaves: its 5xx ratio and its log-normal latency
// (median and sigma).
type health struct {
	errorRatio float64
	median     float64
	sigma      float64
}

var (
	healthy   = health{errorRatio: 0.005, median: 0.06, sigma: 0.5} // p99 ≈ 0.19 s
	regressed = health{errorRatio: 0.05, median: 0.09, sigma: 0.75} // p99 ≈ 0.51 s
)

// The rollout controllers whose pods the demo can play.
const (
	// ControllerArgoRollouts: one Rollout, whose stable and canary
	// ReplicaSets name their pods checkout-<hash>-<id> and label them
	// rollouts-pod-template-hash (rollouts_pod_template_hash once
	// labelmapped).
	ControllerArgoRollouts = "argo-rollouts"
	// ControllerFlagger: the Deployment checkout is Flagger's canary (pods
	// checkout-<hash>-<id>, app=checkout) and Flagger's copy of it the
	// primary (pods checkout-primary-<hash>-<id>, app=checkout-primary:
	// Flagger suffixes the selector label); both carry the Deployment
	// controller's pod-template-hash (pod_template_hash).
	ControllerFlagger = "flagger"
)

// Controllers are the values of Options.Controller.
var Controllers = []string{ControllerArgoRollouts, ControllerFlagger}

// pod is one pod's series: cumulative counters carried from tick to tick.
type pod struct {
	name, track, hash, version string
	// app is the pod's app label; hashLabel the name of its pod-template
	// hash label.
	app, hashLabel string

	ok, errs, sum, count float64
	bucketCounts         []float64
}

// newPod makes a pod of the stable side (primary is true: the stable
// ReplicaSet, Flagger's primary) or of the canary, named and labelled as
// the controller's pods are.
func newPod(controller string, primary bool, suffix, track, hash, version string) *pod {
	p := &pod{name: service + "-" + hash + "-" + suffix, track: track, hash: hash, version: version,
		app: service, hashLabel: "rollouts_pod_template_hash", bucketCounts: make([]float64, len(buckets)+1)}
	if controller == ControllerFlagger {
		p.hashLabel = "pod_template_hash"
		if primary {
			p.name = service + "-primary-" + hash + "-" + suffix
			p.app = service + "-primary"
		}
	}
	return p
}

func (p *pod) labels(name string, extra ...string) []prompb.Label {
	ls := []prompb.Label{
		{Name: "__name__", Value: name},
		{Name: "app", Value: p.app},
		{Name: "job", Value: namespace + "/" + service},
		{Name: "namespace", Value: namespace},
		{Name: "pod", Value: p.name},
		{Name: p.hashLabel, Value: p.hash},
		{Name: "service", Value: service},
		{Name: "track", Value: p.track},
		{Name: "version", Value: p.version},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		ls = append(ls, prompb.Label{Name: extra[i], Value: extra[i+1]})
	}
	slices.SortFunc(ls, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) })
	return ls
}

// traffic generates the service's RED metrics tick by tick: request
// counters by code and a latency histogram per pod, with the traffic split
// by the canary weight.
type traffic struct {
	rng        *rand.Rand
	controller string
	stable     []*pod
	base       *pod // the baseline: the stable version, started with the canary
	canary     *pod
	weight     int    // canary weight in percent; 0 before and after the rollout
	canaryH    health // the canary's behaviour at the current stage
	// series collects the samples of the current batch, keyed by the
	// series' position.
	series map[string]*prompb.TimeSeries
	order  []string
}

func newTraffic(seed uint64, controller string) *traffic {
	t := &traffic{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), controller: controller, canaryH: healthy}
	for _, suffix := range []string{"x2k9p", "m4r7t", "z8c1v"} {
		t.stable = append(t.stable, newPod(controller, true, suffix, "stable", stableHash, oldVersion))
	}
	return t
}

// startCanary adds the canary pod and the baseline pod (the stable
// version's pod template, started at the same time, so that the judge
// compares pods of the same age and load).
func (t *traffic) startCanary() {
	t.canary = newPod(t.controller, false, "q7w4z", "canary", canaryHash, newVersion)
	t.base = newPod(t.controller, true, "b5n2k", "baseline", stableHash, oldVersion)
}

// promote makes the canary's version the stable one: new stable pods of the
// canary's template take all traffic (Argo Rollouts' canary ReplicaSet
// becomes the stable one; Flagger copies the canary's spec to the primary);
// the old pods are gone.
func (t *traffic) promote() {
	t.stable = nil
	hash := canaryHash
	if t.controller == ControllerFlagger {
		hash = promotedPrimaryHash
	}
	for _, suffix := range []string{"h3j6d", "p9s2f", "w5g8l"} {
		t.stable = append(t.stable, newPod(t.controller, true, suffix, "stable", hash, newVersion))
	}
	t.canary, t.base, t.weight = nil, nil, 0
}

// rollback removes the canary and the baseline: the stable pods take all
// traffic again.
func (t *traffic) rollback() {
	t.canary, t.base, t.weight = nil, nil, 0
}

// run generates the samples of [from, to), one per tick.
func (t *traffic) run(from, to time.Time) {
	for ts := from; ts.Before(to); ts = ts.Add(tick) {
		t.step(ts)
	}
}

func (t *traffic) step(ts time.Time) {
	canaryShare := float64(t.weight) / 100
	rest := 1 - canaryShare
	type share struct {
		p *pod
		s float64
		h health
	}
	var shares []share
	if t.canary == nil {
		for _, p := range t.stable {
			shares = append(shares, share{p, 1 / float64(len(t.stable)), healthy})
		}
	} else {
		// The stable pods and the baseline pod split what the canary does
		// not take, per pod.
		n := float64(len(t.stable) + 1)
		for _, p := range t.stable {
			shares = append(shares, share{p, rest / n, healthy})
		}
		shares = append(shares, share{t.base, rest / n, healthy}, share{t.canary, canaryShare, t.canaryH})
	}
	for _, s := range shares {
		t.observe(s.p, s.s, s.h, ts)
	}
}

// observe adds one tick of traffic to a pod's counters, request by
// request (each request's latency drawn from the pod's log-normal
// distribution, each one failing with the pod's error ratio), and records
// the samples.
func (t *traffic) observe(p *pod, share float64, h health, ts time.Time) {
	n := int(math.Round(max(requestsPerSecond*tick.Seconds()*share*(1+0.05*t.rng.NormFloat64()), 0)))
	for range n {
		if t.rng.Float64() < h.errorRatio {
			p.errs++
		} else {
			p.ok++
		}
		d := h.median * math.Exp(h.sigma*t.rng.NormFloat64())
		i, _ := slices.BinarySearch(buckets, d)
		p.bucketCounts[i]++ // counted in its bucket; made cumulative below
		p.sum += d
		p.count++
	}

	ms := ts.UnixMilli()
	t.add(p, ms, p.ok, "http_requests_total", "code", "200")
	t.add(p, ms, p.errs, "http_requests_total", "code", "500")
	cum := 0.0
	for i, le := range buckets {
		cum += p.bucketCounts[i]
		t.add(p, ms, cum, "http_request_duration_seconds_bucket", "le", formatLE(le))
	}
	t.add(p, ms, p.count, "http_request_duration_seconds_bucket", "le", "+Inf")
	t.add(p, ms, p.sum, "http_request_duration_seconds_sum")
	t.add(p, ms, p.count, "http_request_duration_seconds_count")
}

func (t *traffic) add(p *pod, ms int64, v float64, name string, extra ...string) {
	key := p.name + "\xff" + name
	for _, e := range extra {
		key += "\xff" + e
	}
	if t.series == nil {
		t.series = map[string]*prompb.TimeSeries{}
	}
	s, ok := t.series[key]
	if !ok {
		s = &prompb.TimeSeries{Labels: p.labels(name, extra...)}
		t.series[key] = s
		t.order = append(t.order, key)
	}
	s.Samples = append(s.Samples, prompb.Sample{Value: v, Timestamp: ms})
}

// flush returns the samples collected since the last flush as a remote
// write request.
func (t *traffic) flush() *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	for _, k := range t.order {
		req.Timeseries = append(req.Timeseries, *t.series[k])
	}
	t.series, t.order = nil, nil
	return req
}

func formatLE(le float64) string {
	return strconv.FormatFloat(le, 'f', -1, 64)
}
