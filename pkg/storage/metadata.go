package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/metadata"
)

// maxMetadataPerFamily bounds the distinct metadata kept per metric family.
const maxMetadataPerFamily = 10

// metricFamily is the metric family of a series whose metadata came without
// the family's name, as remote write 2.0 sends it: one copy per series, and
// Prometheus' receiver passes no MetricFamilyName. Metadata is served by
// family, as Prometheus' /api/v1/metadata serves what its targets expose, so
// the series of a classic histogram (foo_bucket, foo_sum, foo_count), a
// summary (foo, foo_sum, foo_count), a gauge histogram (foo_bucket,
// foo_gsum, foo_gcount) and an info metric (foo_info) belong to family foo:
// the suffixes scrape.isSeriesPartOfFamily accepts for those types. A float
// series is cut, a native histogram never (its name is its family's).
// Counters keep _total: the Prometheus text and protobuf formats name the
// family with it; only an OpenMetrics target names it without, which the
// series alone cannot tell.
func metricFamily(series string, typ model.MetricType, float bool) string {
	if !float {
		return series
	}
	var suffixes []string
	switch typ {
	case model.MetricTypeHistogram:
		suffixes = []string{"_bucket", "_sum", "_count"}
	case model.MetricTypeSummary:
		suffixes = []string{"_sum", "_count"}
	case model.MetricTypeGaugeHistogram:
		suffixes = []string{"_bucket", "_gsum", "_gcount"}
	case model.MetricTypeInfo:
		suffixes = []string{"_info"}
	}
	for _, suf := range suffixes {
		if f, ok := strings.CutSuffix(series, suf); ok && f != "" {
			return f
		}
	}
	return series
}

// metadataLocked returns the metadata of a family, reading it from Pebble on
// first use. The caller holds th.metaMu.
func (db *DB) metadataLocked(th *tenantHead, family string) ([]metadata.Metadata, error) {
	if list, ok := th.metadata[family]; ok {
		return list, nil
	}
	v, closer, err := db.pdb.Get(metadataKey(th.id, family))
	if errors.Is(err, pebble.ErrNotFound) {
		th.metadata[family] = nil
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read metadata of %q: %w", family, err)
	}
	defer closer.Close()
	list, err := decodeMetadata(v)
	if err != nil {
		return nil, fmt.Errorf("metadata of %q: %w", family, err)
	}
	th.metadata[family] = list
	return list, nil
}

// Metadata returns the metadata of the tenant in ctx by metric family, as
// Prometheus' /api/v1/metadata does: all families, or only metric if it is
// not empty; limit bounds the families and limitPerMetric the entries per
// family (0 or less: no bound).
func (db *DB) Metadata(ctx context.Context, metric string, limit, limitPerMetric int) (map[string][]metadata.Metadata, error) {
	out := map[string][]metadata.Metadata{}
	th := db.tenantFor(ctx)
	if th == nil {
		return out, nil
	}
	p := TenantPrefix(th.id, kindMetadata)
	lower, upper := p, PrefixEnd(p)
	if metric != "" {
		lower = metadataKey(th.id, metric)
		upper = PrefixEnd(lower)
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("read metadata: %w", err)
	}
	defer it.Close()
	var families []string
	for it.First(); it.Valid(); it.Next() {
		family := string(it.Key()[len(p):])
		if metric != "" && family != metric {
			continue
		}
		list, err := decodeMetadata(it.Value())
		if err != nil {
			return nil, fmt.Errorf("metadata of %q: %w", family, err)
		}
		if limitPerMetric > 0 && len(list) > limitPerMetric {
			list = list[:limitPerMetric]
		}
		out[family] = list
		families = append(families, family)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("read metadata: %w", err)
	}
	if limit > 0 && len(families) > limit {
		sort.Strings(families)
		for _, f := range families[limit:] {
			delete(out, f)
		}
	}
	return out, nil
}
