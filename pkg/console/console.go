// Package console serves levitated's web console: the single-page app built
// from web/ (TypeScript, bundled with esbuild by `npm run build` there) and
// committed in dist/, so that building levitated needs no Node.
//
// The page shell and its assets are public: they hold no data. Every datum
// the console shows comes from levitated's API, with the token the person
// signed in with, so the console can do nothing that token cannot.
package console

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// Pages are the paths the console's router answers; each serves the app's
// index.html. /graph is the Prometheus UI's query page, so its deep links
// (/graph?g0.expr=…) open in the Query page.
var Pages = []string{"/", "/graph", "/query", "/changes", "/analyses", "/status", "/signin"}

// pagePrefixes are pages with an id after them: /changes/ID, /analyses/ID.
var pagePrefixes = []string{"/changes/", "/analyses/"}

// Handler serves the console.
type Handler struct {
	index  []byte
	csp    string // the pages' Content-Security-Policy
	assets map[string]asset
}

type asset struct {
	body  []byte
	gz    []byte // gzip of body, served to clients that accept it
	ctype string
	etag  string
}

// New reads the embedded bundle.
func New() (*Handler, error) {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil, fmt.Errorf("console bundle: %w", err)
	}
	h := &Handler{assets: map[string]asset{}}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		_, _ = zw.Write(b)
		if err := zw.Close(); err != nil {
			return err
		}
		h.assets["/"+p] = asset{body: b, gz: gz.Bytes(), ctype: contentType(p), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console bundle: %w", err)
	}
	idx, ok := h.assets["/index.html"]
	if !ok {
		return nil, fmt.Errorf("console bundle: no index.html in pkg/console/dist (run npm run build in web/)")
	}
	h.index = idx.body
	// The app loads only its own script and style and talks only to this
	// origin; the one inline script (web/src/boot.ts, which sends the
	// page's first requests before the bundle is fetched) is allowed by
	// its hash. 'wasm-unsafe-eval' lets it compile WebAssembly (the
	// many-series lines' raster, web/src/chart/wasmlines.ts; it allows
	// no eval of JavaScript).
	h.csp = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'" + scriptHashes(h.index) + "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self'; frame-ancestors 'none'"
	return h, nil
}

// scriptHashes lists the CSP hash sources (" 'sha256-…'") of the inline
// scripts of an HTML page: the text of each <script> without attributes.
func scriptHashes(page []byte) string {
	var out strings.Builder
	const open, end = "<script>", "</script>"
	for rest := page; ; {
		i := bytes.Index(rest, []byte(open))
		if i < 0 {
			return out.String()
		}
		rest = rest[i+len(open):]
		j := bytes.Index(rest, []byte(end))
		if j < 0 {
			return out.String()
		}
		sum := sha256.Sum256(rest[:j])
		out.WriteString(" 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'")
		rest = rest[j+len(end):]
	}
}

// Paths are the URL paths the console answers, as http.ServeMux patterns
// (without a method): its pages and the files of its bundle. A server
// mounts each for GET, so that other paths and methods keep their 404 and
// 405.
func (h *Handler) Paths() []string {
	out := []string{"/{$}"}
	for _, p := range Pages[1:] {
		out = append(out, p)
	}
	for _, p := range pagePrefixes {
		out = append(out, p+"{id}")
	}
	for p := range h.assets {
		if p != "/index.html" {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func isPage(p string) bool {
	for _, pg := range Pages {
		if p == pg {
			return true
		}
	}
	for _, pre := range pagePrefixes {
		if rest, ok := strings.CutPrefix(p, pre); ok && rest != "" && !strings.Contains(rest, "/") {
			return true
		}
	}
	return false
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	if isPage(r.URL.Path) {
		hdr.Set("Content-Type", "text/html; charset=utf-8")
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("Content-Security-Policy", h.csp)
		hdr.Set("X-Frame-Options", "DENY")
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(h.index))
		return
	}
	a, ok := h.assets[r.URL.Path]
	if !ok || r.URL.Path == "/index.html" {
		http.NotFound(w, r)
		return
	}
	hdr.Set("Content-Type", a.ctype)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("Vary", "Accept-Encoding")
	body, etag := a.body, a.etag
	if acceptsGzip(r) {
		hdr.Set("Content-Encoding", "gzip")
		body, etag = a.gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
	}
	hdr.Set("ETag", etag)
	http.ServeContent(w, r, path.Base(r.URL.Path), time.Time{}, bytes.NewReader(body))
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) == "gzip" && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".html":
		return "text/html; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	return "application/octet-stream"
}
