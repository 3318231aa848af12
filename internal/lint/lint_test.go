// Package lint holds the project's lint rules as Go tests, so that CI needs
// nothing but Go (as Pebble's internal/lint does).
package lint

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/levitated/levitated/"

// goFile is one non-generated Go file of the main module and its imports.
type goFile struct {
	path    string // relative to the repository root
	dir     string
	pkg     string // the package clause
	test    bool
	imports []string
}

func repoFiles(t *testing.T) []goFile {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var out []goFile
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			// compat/, tools/ and web/e2e are modules of their own; testdata holds fixtures.
			switch {
			case rel == "compat", rel == "tools", rel == filepath.Join("web", "e2e"), d.Name() == "node_modules", d.Name() == "testdata", strings.HasPrefix(d.Name(), "."):
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".pb.go") || strings.HasSuffix(p, ".pb.gw.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		g := goFile{path: rel, dir: filepath.Dir(rel), pkg: f.Name.Name, test: strings.HasSuffix(p, "_test.go")}
		for _, imp := range f.Imports {
			s, _ := strconv.Unquote(imp.Path.Value)
			g.imports = append(g.imports, s)
		}
		out = append(out, g)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 50 {
		t.Fatalf("found only %d Go files; is the walk rooted right?", len(out))
	}
	return out
}

// TestForbiddenImports: errors are wrapped with fmt.Errorf and %w, not
// pkg/errors; io/ioutil is deprecated; tests use require, not assert.
func TestForbiddenImports(t *testing.T) {
	forbidden := map[string]string{
		"github.com/pkg/errors":              "wrap errors with fmt.Errorf and %w",
		"io/ioutil":                          "use io and os",
		"github.com/stretchr/testify/assert": "use require",
	}
	for _, f := range repoFiles(t) {
		for _, imp := range f.imports {
			if why, ok := forbidden[imp]; ok {
				t.Errorf("%s imports %s: %s", f.path, imp, why)
			}
		}
	}
}

// TestFlagsOnlyInCmd: flags are read by the mains (cmd/ and the
// benchmarks' programs under bench/); packages take Options.
func TestFlagsOnlyInCmd(t *testing.T) {
	for _, f := range repoFiles(t) {
		if f.test || strings.HasPrefix(f.dir, "cmd") || f.pkg == "main" {
			continue
		}
		for _, imp := range f.imports {
			if imp == "flag" {
				t.Errorf("%s imports flag: only cmd/ reads flags; take an Options struct", f.path)
			}
		}
	}
}

// TestImportDirection: the event model at the bottom, storage and the
// judge above it, the server on top (STYLE.md §1).
func TestImportDirection(t *testing.T) {
	// package dir → levitated packages it must not import (prefixes).
	rules := map[string][]string{
		"pkg/events":  {"pkg/"},
		"pkg/tenant":  {"pkg/"},
		"pkg/console": {"pkg/"},
		// The console's binary encoding of matrices: Prometheus' codec
		// interface only.
		"pkg/matrixcodec": {"pkg/"},
		"pkg/analysis":    {"pkg/storage", "pkg/ingest", "pkg/server", "pkg/promql", "pkg/kayenta", "pkg/canaryapi", "pkg/rangequery"},
		"pkg/storage":     {"pkg/ingest", "pkg/server", "pkg/promql", "pkg/analysis", "pkg/kayenta", "pkg/canaryapi", "pkg/queryshard", "pkg/auth", "pkg/limits"},
		"pkg/ingest":      {"pkg/server", "pkg/promql", "pkg/analysis", "pkg/kayenta", "pkg/canaryapi", "pkg/storage", "pkg/eventapi", "pkg/events"},
		"pkg/promql":      {"pkg/server", "pkg/ingest", "pkg/analysis", "pkg/kayenta", "pkg/canaryapi"},
		"pkg/ruler":       {"pkg/server", "pkg/storage", "pkg/ingest", "pkg/promql", "pkg/analysis", "pkg/kayenta", "pkg/canaryapi", "pkg/queryshard", "pkg/limits"},
		"api/":            {"pkg/"},
		// Limits wrap the store, the event store and the engine through
		// the interfaces they declare: no package above them.
		"pkg/limits": {"pkg/server", "pkg/storage", "pkg/ingest", "pkg/promql", "pkg/analysis", "pkg/kayenta", "pkg/canaryapi", "pkg/ruler", "pkg/impact", "pkg/auth"},
		// Change intelligence reaches the judge only through the native
		// analysis service (an interface it declares), and the store only
		// through interfaces: no second judge, no keyspace of its own.
		"pkg/impact": {"pkg/storage", "pkg/ingest", "pkg/server", "pkg/promql", "pkg/kayenta", "pkg/canaryapi", "pkg/analysis"},
		// The Kubernetes watcher talks to levitated over its API, as any
		// sender of events does: it knows the event model only.
		"pkg/kubeevents": {"pkg/storage", "pkg/ingest", "pkg/server", "pkg/promql", "pkg/analysis", "pkg/kayenta", "pkg/canaryapi"},
		// Parallel gzip: klauspost's deflate only.
		"pkg/pgzip": {"pkg/"},
		// The XOR chunk encoder: Prometheus' chunkenc only.
		"pkg/xorchunk": {"pkg/"},
		// The Thanos StoreAPI reads through Prometheus' ChunkQueryable only.
		"pkg/storeapi": {"pkg/server", "pkg/storage", "pkg/ingest", "pkg/promql", "pkg/analysis", "pkg/kayenta", "pkg/canaryapi", "pkg/limits", "pkg/auth"},
		// The remote StoreAPI endpoints (--query.store) are a Prometheus
		// Queryable over Thanos' generated client: nothing of levitated but
		// the protos and the tenant of a call.
		"pkg/remotestore": {"pkg/server", "pkg/storage", "pkg/ingest", "pkg/promql", "pkg/analysis", "pkg/kayenta", "pkg/canaryapi", "pkg/limits", "pkg/auth", "pkg/storeapi", "pkg/queryshard", "pkg/resultscache", "pkg/ruler", "pkg/impact"},
		// The judge's range queries on the engine: Prometheus' engine and
		// storage interfaces only.
		"pkg/rangequery": {"pkg/"},
		// The two canary APIs share the judge's pipeline (analysis.Analyze)
		// and its range queries (pkg/rangequery), not each other.
		"pkg/canaryapi": {"pkg/kayenta", "pkg/storage", "pkg/ingest", "pkg/server", "pkg/promql", "pkg/impact"},
		"pkg/kayenta":   {"pkg/canaryapi", "pkg/ingest", "pkg/server", "pkg/promql", "pkg/impact"},
		// Metric ingest only (the rule of pkg/ingest above bans pkg/events):
		// the change-event API is its own package, which knows the event
		// model, the protos and the tenant of a call, and reaches the store
		// through the interface it declares.
		"pkg/eventapi": {"pkg/server", "pkg/storage", "pkg/ingest", "pkg/promql", "pkg/analysis", "pkg/kayenta", "pkg/canaryapi", "pkg/impact", "pkg/limits", "pkg/auth"},
		// One-pass rollups: Prometheus' engine types and storage
		// interfaces only.
		"pkg/rollup": {"pkg/"},
		// Ingest's right of way over background work knows no levitated
		// package.
		"pkg/yield": {"pkg/"},
	}
	for _, f := range repoFiles(t) {
		if f.test {
			continue
		}
		for dir, banned := range rules {
			if f.dir != dir && !strings.HasPrefix(f.dir+"/", dir+"/") && !(strings.HasSuffix(dir, "/") && strings.HasPrefix(f.dir+"/", dir)) {
				continue
			}
			for _, imp := range f.imports {
				rel, ok := strings.CutPrefix(imp, module)
				if !ok {
					continue
				}
				for _, b := range banned {
					// A package may import its own subpackages; everything but
					// the model and the protos may read the tenant.
					if strings.HasPrefix(rel, dir) || rel == "pkg/tenant" && dir != "pkg/tenant" && dir != "pkg/events" && dir != "api/" {
						continue
					}
					if dir == "pkg/storage" && strings.HasPrefix(rel, "pkg/storage") {
						continue
					}
					if dir == "pkg/storage" && strings.HasPrefix(f.dir, "pkg/storage/eventstore") && rel == "pkg/events" {
						continue
					}
					if strings.HasPrefix(rel, b) {
						t.Errorf("%s imports %s: %s must not depend on %s", f.path, rel, dir, b)
					}
				}
			}
		}
	}
}

// TestPebbleOnlyInStorage: pkg/storage owns the Pebble keyspace (its
// keyspace.go); every other package reaches its kinds through a
// storage.Namespace, never through Pebble itself. Tests and benchmarks
// may use Pebble's vfs for crash images.
func TestPebbleOnlyInStorage(t *testing.T) {
	for _, f := range repoFiles(t) {
		if f.test || f.dir == filepath.Join("pkg", "storage") || strings.HasPrefix(f.dir, filepath.Join("pkg", "storage")+string(filepath.Separator)) {
			continue
		}
		for _, imp := range f.imports {
			if strings.HasPrefix(imp, "github.com/cockroachdb/pebble") {
				t.Errorf("%s imports %s: only pkg/storage (and its subpackages) may use Pebble; take a storage.Namespace", f.path, imp)
			}
		}
	}
}
