package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/prometheus/model/metadata"
)

// maxMetadataPerFamily bounds the distinct metadata kept per metric family.
const maxMetadataPerFamily = 10

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
	lower, upper := p, prefixEnd(p)
	if metric != "" {
		lower = metadataKey(th.id, metric)
		upper = prefixEnd(lower)
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
