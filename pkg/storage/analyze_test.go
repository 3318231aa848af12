package storage

import (
	"fmt"
	"log/slog"
	"os"
	"sort"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

// TestAnalyzeDir prints the stored bytes per sample of each metric name of
// the default tenant in $ANALYZE_DIR (a data directory), to see where the
// space goes. Skipped without it.
func TestAnalyzeDir(t *testing.T) {
	dir := os.Getenv("ANALYZE_DIR")
	if dir == "" {
		t.Skip("set ANALYZE_DIR to a data directory")
	}
	db, err := Open(dir, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	th := db.tenants["anonymous"]
	if th == nil {
		t.Fatal("no default tenant")
	}
	bytesBy, samplesBy := map[string]int{}, map[string]int{}
	p := TenantPrefix(th.id, kindChunk)
	it, err := db.pdb.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for it.SeekGE(p); it.Valid() && hasPrefix(it.Key(), p); it.Next() {
		kp, err := parseChunkKey(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		name := th.symbols.get(th.getByRef(kp.sid).syms, labels.MetricName)
		enc, _, data, err := decodeChunkValue(it.Value(), kp.minT)
		if err != nil {
			t.Fatal(err)
		}
		c, err := openChunk(enc, append([]byte(nil), data...), kp.minT)
		if err != nil {
			t.Fatal(err)
		}
		bytesBy[name] += len(it.Key()) + len(it.Value())
		samplesBy[name] += c.NumSamples()
	}
	var names []string
	tb, ts := 0, 0
	for n := range bytesBy {
		names = append(names, n)
		tb += bytesBy[n]
		ts += samplesBy[n]
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("%-40s %9d samples %6.2f B/sample before block compression\n", n, samplesBy[n], float64(bytesBy[n])/float64(samplesBy[n]))
	}
	fmt.Printf("total %d samples %.2f B/sample before block compression\n", ts, float64(tb)/float64(ts))
}
