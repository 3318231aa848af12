package console

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestPagesServeTheApp(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	index, err := dist.ReadFile("dist/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/", "/graph", "/query", "/changes", "/changes/01ABC", "/analyses", "/analyses/01XYZ", "/status", "/signin"} {
		w := get(t, h, http.MethodGet, p)
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), index) {
			t.Errorf("GET %s: %d, body is the index: %v", p, w.Code, bytes.Equal(w.Body.Bytes(), index))
		}
		if !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: no CSP", p)
		}
	}
	for _, p := range []string{"/nope", "/changes/a/b", "/index.html", "/api/v1/query", "/app.js/x", "/-/healthy"} {
		if w := get(t, h, http.MethodGet, p); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
	}
	if w := get(t, h, http.MethodPost, "/query"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /query: %d, want 405", w.Code)
	}
}

// TestInlineScriptAllowedByHash: index.html runs web/src/boot.ts inline,
// and the pages' Content-Security-Policy allows exactly that script by its
// hash (no 'unsafe-inline' for scripts): a browser would otherwise refuse
// it without a word, and the page would only be slower.
func TestInlineScriptAllowedByHash(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	index, _ := dist.ReadFile("dist/index.html")
	_, rest, ok := strings.Cut(string(index), "<script>")
	script, _, ok2 := strings.Cut(rest, "</script>")
	if !ok || !ok2 || !strings.Contains(script, "__lvBoot") {
		t.Fatal("index.html has no inline boot script")
	}
	sum := sha256.Sum256([]byte(script))
	csp := get(t, h, http.MethodGet, "/query").Header().Get("Content-Security-Policy")
	// 'wasm-unsafe-eval': WebAssembly may be compiled (the many-series
	// lines' raster, web/src/chart/wasmlines.ts), not JavaScript evaluated.
	want := "script-src 'self' 'wasm-unsafe-eval' 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "';"
	if !strings.Contains(csp, want) || strings.Count(csp, "sha256-") != 1 || strings.Contains(csp, "'unsafe-eval'") || strings.Contains(csp, "script-src 'self' 'unsafe-inline'") {
		t.Errorf("CSP %q, want it to hold %q and no other hash", csp, want)
	}
	if got := scriptHashes([]byte("<script>a</script><script src=x></script><script>b</script>")); strings.Count(got, "sha256-") != 2 {
		t.Errorf("scriptHashes of two inline scripts and one with src: %q", got)
	}
}

func TestAssetsGzipAndETag(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	want, err := dist.ReadFile("dist/app.js")
	if err != nil {
		t.Fatal(err)
	}
	plain := get(t, h, http.MethodGet, "/app.js")
	if plain.Code != http.StatusOK || !bytes.Equal(plain.Body.Bytes(), want) || plain.Header().Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("GET /app.js: %d %q", plain.Code, plain.Header().Get("Content-Type"))
	}
	gz := get(t, h, http.MethodGet, "/app.js", "Accept-Encoding", "gzip, deflate")
	if gz.Header().Get("Content-Encoding") != "gzip" {
		t.Fatal("no gzip for a client that accepts it")
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("gzip body differs from app.js (%v)", err)
	}
	if w := get(t, h, http.MethodGet, "/app.js", "If-None-Match", plain.Header().Get("ETag")); w.Code != http.StatusNotModified {
		t.Errorf("revalidation: %d, want 304", w.Code)
	}
	if w := get(t, h, http.MethodGet, "/app.js", "Accept-Encoding", "gzip;q=0"); w.Header().Get("Content-Encoding") != "" {
		t.Error("gzip sent to a client that refuses it")
	}
	mux := http.NewServeMux()
	for _, p := range h.Paths() {
		mux.Handle("GET "+p, h)
	}
	for _, p := range []string{"/", "/query", "/changes/x", "/app.js"} {
		if w := get(t, mux, http.MethodGet, p); w.Code != http.StatusOK {
			t.Errorf("mounted at its Paths, GET %s: %d", p, w.Code)
		}
	}
	if w := get(t, mux, http.MethodGet, "/other"); w.Code != http.StatusNotFound {
		t.Errorf("GET /other through the mux: %d", w.Code)
	}
}

// TestBundleMatchesSources rebuilds the console from web/ and expects
// exactly the committed dist/, as the generated-proto check does for
// api/proto. It needs Node and web/node_modules (npm ci in web/); .ci/run
// provides both, elsewhere it skips.
func TestBundleMatchesSources(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed: the bundle check needs Node (see web/README.md)")
	}
	web, _ := filepath.Abs("../../web")
	if _, err := os.Stat(filepath.Join(web, "node_modules", "esbuild")); err != nil {
		t.Skip("web/node_modules missing: run npm ci in web/ for the bundle check")
	}
	out := t.TempDir()
	cmd := exec.Command(node, "build.mjs", out)
	cmd.Dir = web
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm run build: %v\n%s", err, b)
	}
	entries, err := dist.ReadDir("dist")
	if err != nil {
		t.Fatal(err)
	}
	built, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(built) != len(entries) {
		t.Errorf("the build writes %d files, dist holds %d", len(built), len(entries))
	}
	for _, e := range entries {
		committed, _ := dist.ReadFile("dist/" + e.Name())
		fresh, err := os.ReadFile(filepath.Join(out, e.Name()))
		if err != nil || !bytes.Equal(committed, fresh) {
			t.Errorf("pkg/console/dist/%s does not match its sources: run `npm ci && npm run build` in web/ and commit it", e.Name())
		}
	}
}
