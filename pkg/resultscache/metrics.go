package resultscache

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	queries        *prometheus.CounterVec
	stepsCached    prometheus.Counter
	stepsEvaluated prometheus.Counter
	invalidated    prometheus.Counter
	evicted        prometheus.Counter
	bytes          prometheus.Gauge
	entries        prometheus.Gauge

	// The same counts for Stats, under Cache.mu.
	stepsCachedN, stepsEvaluatedN int64
	queriesN                      map[string]int64
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levitated_query_results_cache_queries_total",
			Help: "Range queries by what the results cache did: uncacheable, bypassed (nocache=1), miss, partial, hit, fallback.",
		}, []string{"result"}),
		stepsCached: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levitated_query_results_cache_steps_cached_total",
			Help: "Steps of cacheable range queries served from the results cache.",
		}),
		stepsEvaluated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levitated_query_results_cache_steps_evaluated_total",
			Help: "Steps of cacheable range queries evaluated.",
		}),
		invalidated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levitated_query_results_cache_invalidated_total",
			Help: "Cached results dropped whole because a write or deletion reached every step they held.",
		}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levitated_query_results_cache_evicted_total",
			Help: "Cached results evicted to stay within the cache's size.",
		}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "levitated_query_results_cache_bytes",
			Help: "Estimated bytes of the cached results.",
		}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "levitated_query_results_cache_entries",
			Help: "Cached results.",
		}),
		queriesN: map[string]int64{},
	}
	if reg != nil {
		reg.MustRegister(m.queries, m.stepsCached, m.stepsEvaluated, m.invalidated, m.evicted, m.bytes, m.entries)
	}
	return m
}

func (c *Cache) count(result string, cached, evaluated int64) {
	c.mu.Lock()
	c.m.queriesN[result]++
	c.m.stepsCachedN += cached
	c.m.stepsEvaluatedN += evaluated
	c.mu.Unlock()
	c.m.queries.WithLabelValues(result).Inc()
	c.m.stepsCached.Add(float64(cached))
	c.m.stepsEvaluated.Add(float64(evaluated))
}
