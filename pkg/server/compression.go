package server

import (
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"

	"github.com/levitated/levitated/pkg/matrixcodec"
	"github.com/levitated/levitated/pkg/pgzip"
)

// withPooledGzip sits in front of Prometheus' API handlers and does the
// gzip compression their httputil.CompressionHandler would, with the same
// writer (klauspost's gzip at its default level) and so the same bytes and
// headers, but with writers taken from a pool: CompressionHandler makes a
// new gzip.Writer per request, about 1 MB of encoder state, which was 90 %
// of what a small query allocated and made the collector (GOGC 30 over a
// heap of series) run every few dozen requests. A request whose
// Accept-Encoding picks gzip is handed on without the header, so that
// Prometheus' handler passes the body through (it still adds its Vary);
// one that picks deflate (but with fast, below), or neither, is handed on
// unchanged, and so is every request Prometheus' router answers outside
// CompressionHandler: while the server is not ready (ready false; its
// 503) and in a method other than OPTIONS and those the route registers
// (methods; its 405).
//
// With fast (/api/v1/query and query_range), the answer is compressed at
// gzip's best speed instead, one of 1 MB or more in blocks on all cores
// (pkg/pgzip): the default level on one core took 46–57 ms for the 4 MB
// of a range query of 1,000 series, against 17–30 ms at best speed on one
// core (bench/RESULTS.md, "Rollups without aggregation"). Those bytes are
// not Prometheus'; they decompress to the same answer. VictoriaMetrics
// compresses its answers at best speed too (lib/httpserver). Those two
// routes give the JSON codec's answer buffers back once written
// (matrixcodec.Recycle), compressed or not: one whose Accept-Encoding
// picks deflate is compressed here too, as Prometheus' handler does it
// (zlib at its default level, the same bytes), since behind that handler
// the writer sees only the compressed bytes, not the answer. An answer
// that is compressed already (matrixcodec.MediaTypeGzip, the console's
// range queries: gzip inside, decompressed by the page) is sent as it is,
// without Content-Encoding: compressing its 0.1 MB again cost the server
// and the browser's network process CPU, next to the page it competes
// with, for no bytes saved. An answer of those two routes shorter than
// minGzipBytes in all is sent uncompressed, as gzip was not asked for.
func withPooledGzip(next http.Handler, ready func() bool, fast bool, methods ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ae, ok := r.Header["Accept-Encoding"]
		if !ready() || (r.Method != http.MethodOptions && !slices.Contains(methods, r.Method)) {
			next.ServeHTTP(w, r)
			return
		}
		var encoding string
		if ok {
			encoding = pickedEncoding(r.Header.Get("Accept-Encoding"))
		}
		if encoding == "" || (encoding == "deflate" && !fast) {
			if fast {
				w = recyclingWriter{w}
			}
			next.ServeHTTP(w, r)
			return
		}
		gw := &gzipResponseWriter{ResponseWriter: w, encoding: encoding, fast: fast}
		// The request is the server's own; the header is put back for
		// the wrappers outside.
		delete(r.Header, "Accept-Encoding")
		defer func() { r.Header["Accept-Encoding"] = ae }()
		next.ServeHTTP(gw, r)
		gw.close()
	})
}

// minGzipBytes is the least answer of the query routes that is gzipped:
// klauspost's gzhttp.DefaultMinSize, which VictoriaMetrics' server uses
// (lib/httpserver: gzhttp.NewWrapper at level 1, the default minimum).
// Below it the compressed answer fits in the same packet as the plain one
// and costs more CPU than the rest of a small query: 12 % of levitated's
// CPU on a one-series range query of 20 points at 1M series
// (bench/RESULTS.md, "Small answers sent uncompressed").
const minGzipBytes = 1024

var (
	gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}
	zlibWriters = sync.Pool{New: func() any { return zlib.NewWriter(nil) }}
)

// pickedEncoding is the encoding Prometheus' CompressionHandler would
// answer an Accept-Encoding of raw with: the first of gzip and deflate in
// the list (no quality values are weighed, as there), or "" for neither.
func pickedEncoding(raw string) string {
	for {
		encoding, rest, more := strings.Cut(raw, ",")
		switch encoding = strings.TrimSpace(encoding); encoding {
		case "gzip", "deflate":
			return encoding
		}
		if !more {
			return ""
		}
		raw = rest
	}
}

// gzipResponseWriter is httputil's compressedResponseWriter with a gzip
// writer, Prometheus' (gz) or the fast one (pg), or Prometheus' zlib writer
// (zl, for deflate), chosen when the answer's header is written (start):
// an answer compressed already is passed through (asIs). The fast gzip
// holds the status and the first bytes back (holding) until the answer
// reaches minGzipBytes, and sends them uncompressed if it ends before.
type gzipResponseWriter struct {
	http.ResponseWriter
	encoding string
	fast     bool
	started  bool
	asIs     bool
	holding  bool
	status   int    // held while holding, 0 if none was written
	held     []byte // the answer so far while holding
	gz       *gzip.Writer
	pg       *pgzip.Writer
	zl       *zlib.Writer
}

// start picks the writer once, by the answer's Content-Type.
func (g *gzipResponseWriter) start() {
	if g.started {
		return
	}
	g.started = true
	if g.Header().Get("Content-Type") == matrixcodec.MediaTypeGzip {
		g.asIs = true
		return
	}
	if g.fast && g.encoding == "gzip" {
		g.holding = true
		return
	}
	g.compress()
}

// compress sets Content-Encoding and takes the answer's writer.
func (g *gzipResponseWriter) compress() {
	g.Header().Set("Content-Encoding", g.encoding)
	switch {
	case g.encoding == "deflate":
		g.zl = zlibWriters.Get().(*zlib.Writer)
		g.zl.Reset(g.ResponseWriter)
	case g.fast:
		g.pg, _ = pgzip.NewWriter(g.ResponseWriter, flate.BestSpeed) // a valid level
	default:
		g.gz = gzipWriters.Get().(*gzip.Writer)
		g.gz.Reset(g.ResponseWriter)
	}
}

// release ends holding: the held status is written, and the held bytes
// are returned for the caller to write.
func (g *gzipResponseWriter) release(compressed bool) []byte {
	g.holding = false
	if compressed {
		g.Header().Del("Content-Length")
		g.compress()
	}
	if g.status != 0 {
		g.ResponseWriter.WriteHeader(g.status)
	}
	held := g.held
	g.held = nil
	return held
}

func (g *gzipResponseWriter) Write(p []byte) (int, error) {
	g.start()
	if g.asIs {
		return g.ResponseWriter.Write(p)
	}
	if g.holding {
		if len(g.held)+len(p) < minGzipBytes {
			g.held = append(g.held, p...)
			matrixcodec.Recycle(p)
			return len(p), nil
		}
		if held := g.release(true); len(held) > 0 {
			if _, err := g.pg.Write(held); err != nil {
				return 0, err
			}
		}
	}
	g.Header().Del("Content-Length")
	var (
		n   int
		err error
	)
	switch {
	case g.pg != nil:
		n, err = g.pg.Write(p)
	case g.zl != nil:
		n, err = g.zl.Write(p)
	default:
		return g.gz.Write(p)
	}
	// Compressed before Write returns: the answer's buffer goes back to
	// the JSON codec.
	matrixcodec.Recycle(p)
	return n, err
}

// recyclingWriter gives the answers written through it back to the JSON
// codec (matrixcodec.Recycle) once written.
type recyclingWriter struct{ http.ResponseWriter }

func (w recyclingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	matrixcodec.Recycle(p)
	return n, err
}

func (g *gzipResponseWriter) WriteHeader(statusCode int) {
	g.start()
	if g.holding {
		if g.status == 0 {
			g.status = statusCode
		}
		return
	}
	if !g.asIs {
		g.Header().Del("Content-Length")
	}
	g.ResponseWriter.WriteHeader(statusCode)
}

// close flushes and closes the stream as httputil's Close does, and
// returns the writer to its pool; an answer still held is written as it
// is.
func (g *gzipResponseWriter) close() {
	g.start()
	if g.asIs {
		return
	}
	if g.holding {
		if held := g.release(false); len(held) > 0 {
			_, _ = g.ResponseWriter.Write(held)
		}
		return
	}
	g.Header().Del("Content-Length")
	if g.pg != nil {
		_ = g.pg.Close()
		g.pg = nil
		return
	}
	if g.zl != nil {
		_ = g.zl.Flush()
		_ = g.zl.Close()
		g.zl.Reset(nil)
		zlibWriters.Put(g.zl)
		g.zl = nil
		return
	}
	_ = g.gz.Flush()
	_ = g.gz.Close()
	g.gz.Reset(nil)
	gzipWriters.Put(g.gz)
	g.gz = nil
}
