package server

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/matrixcodec"
)

// TestGzipMinimum: the query routes' gzip writer sends an answer of under
// minGzipBytes in all as it is, with the status the handler wrote, and
// compresses one that reaches it, also when the bytes that reach it come
// in several writes (the held ones first, in order); deflate and the
// other routes' gzip compress every answer, as Prometheus' handler does,
// and an answer compressed already passes through.
func TestGzipMinimum(t *testing.T) {
	for _, c := range []struct {
		name     string
		encoding string
		fast     bool
		status   int // 0: the handler writes none
		writes   []int
		wantGzip bool
	}{
		{"nothing written", "gzip", true, 0, nil, false},
		{"a 204", "gzip", true, http.StatusNoContent, nil, false},
		{"one small write", "gzip", true, http.StatusOK, []int{300}, false},
		{"a small 400", "gzip", true, http.StatusBadRequest, []int{120}, false},
		{"just under", "gzip", true, http.StatusOK, []int{minGzipBytes - 1}, false},
		{"small writes just under", "gzip", true, http.StatusOK, []int{500, 500, minGzipBytes - 1001}, false},
		{"exactly the minimum", "gzip", true, http.StatusOK, []int{minGzipBytes}, true},
		{"writes that reach it", "gzip", true, http.StatusOK, []int{400, 400, 400}, true},
		{"a large 422 without WriteHeader's 200", "gzip", true, http.StatusUnprocessableEntity, []int{5000}, true},
		{"a large answer, no status written", "gzip", true, 0, []int{3000}, true},
		{"deflate, small", "deflate", true, http.StatusOK, []int{100}, true},
		{"the other routes, small", "gzip", false, http.StatusOK, []int{100}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			for i, n := range c.writes {
				body = append(body, bytes.Repeat([]byte{byte('a' + i)}, n)...)
			}
			rec := httptest.NewRecorder()
			g := &gzipResponseWriter{ResponseWriter: rec, encoding: c.encoding, fast: c.fast}
			g.Header().Set("Content-Type", "application/json")
			if c.status != 0 {
				g.WriteHeader(c.status)
				g.WriteHeader(http.StatusTeapot) // superfluous, as net/http: the first stands
			}
			off := 0
			for _, n := range c.writes {
				// The writer may not keep p: the caller reuses it.
				p := append([]byte(nil), body[off:off+n]...)
				got, err := g.Write(p)
				require.NoError(t, err)
				require.Equal(t, n, got)
				for i := range p {
					p[i] = 'Z'
				}
				off += n
			}
			g.close()

			wantStatus := c.status
			if wantStatus == 0 {
				wantStatus = http.StatusOK
			}
			require.Equal(t, wantStatus, rec.Code)
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			got := rec.Body.Bytes()
			if !c.wantGzip {
				require.Empty(t, rec.Header().Get("Content-Encoding"))
				require.Equal(t, string(body), string(got))
				return
			}
			require.Equal(t, c.encoding, rec.Header().Get("Content-Encoding"))
			require.Empty(t, rec.Header().Get("Content-Length"))
			var r io.Reader
			if c.encoding == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(got))
				require.NoError(t, err)
				r = zr
			} else {
				zr, err := zlib.NewReader(bytes.NewReader(got))
				require.NoError(t, err)
				r = zr
			}
			plain, err := io.ReadAll(r)
			require.NoError(t, err)
			require.Equal(t, string(body), string(plain))
		})
	}

	// An answer compressed already is sent as it is, however small.
	rec := httptest.NewRecorder()
	g := &gzipResponseWriter{ResponseWriter: rec, encoding: "gzip", fast: true}
	g.Header().Set("Content-Type", matrixcodec.MediaTypeGzip)
	g.WriteHeader(http.StatusOK)
	_, err := g.Write([]byte("gz"))
	require.NoError(t, err)
	g.close()
	require.Empty(t, rec.Header().Get("Content-Encoding"))
	require.Equal(t, "gz", rec.Body.String())
	require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), matrixcodec.MediaTypeGzip))
}
