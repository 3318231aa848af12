package queryshard

import (
	"sync"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/levitated/levitated/pkg/rollup"
)

// topCacheSize is how many range queries' texts topCache holds: a few
// Grafana dashboards' panels. Beyond it an entry is dropped at random.
const topCacheSize = 512

// topCache holds, by query text, the tree and rollup plan of the range
// queries that are a range function or a selector alone (a top plan):
// parsing was 10–12 µs of the ~0.3 ms a query of one series costs the
// server (Prometheus' parser; VictoriaMetrics caches its parsed queries
// too), and a dashboard asks the same texts over and over. Only these are
// cached because only their trees are never changed after parsing: the
// plan reads the selector, and the tree is the query's Statement; a query
// with an aggregation is rewritten (rewrite), and one on the engine is
// parsed by the engine. Both are read by concurrent queries, so neither
// may be written to: parser.Expr and rollup.Plan are not after parsing and
// compiling. The parser is the engine's, fixed at New, so a text parses to
// the same tree (or the same error: errors are not cached) every time.
type topCache struct {
	mu sync.Mutex
	m  map[string]topEntry
}

type topEntry struct {
	statement parser.Expr
	plan      *rollup.Plan
}

func (c *topCache) get(qs string) (topEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[qs]
	return t, ok
}

func (c *topCache) put(qs string, t topEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]topEntry)
	}
	if len(c.m) >= topCacheSize {
		for k := range c.m { // the map's order: an entry at random
			delete(c.m, k)
			break
		}
	}
	c.m[qs] = t
}
