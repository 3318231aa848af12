package ingest

import (
	"errors"
	"io"
	"sync"
)

// Remote-write bodies are read into and decoded into pooled buffers: on
// peer-bench's 100k-series ingest the compressed body (io.ReadAll growing
// its slice) and its snappy-decoded form were about 10 of every 15 bytes
// the server allocated. A buffer goes back to its pool only when the
// request is done with it: nothing kept after the request aliases it
// (labels, metadata and exemplars are copied into strings).
var (
	compressedBufs sync.Pool // *[]byte
	decodedBufs    sync.Pool // *[]byte
)

// maxPooledBuf is the largest buffer kept for reuse; a larger request's
// buffer is left to the garbage collector.
const maxPooledBuf = MaxDecodedBodyBytes

// getBuf returns a pooled buffer of length n, or a new one a quarter
// larger than n if the pooled one is too small, so that the next requests
// of about the same size fit. A buffer too small is dropped, not put back:
// the pool then holds at most one buffer per request in flight (putting
// it back grew the pool by one per miss between collections, and the live
// heap and Go's heap goal with it: 1.5 GiB peak RSS at 100k series).
func getBuf(p *sync.Pool, n int) *[]byte {
	if b, ok := p.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, n+n/4)
	return &b
}

func putBuf(p *sync.Pool, b *[]byte) {
	if b == nil || cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	p.Put(b)
}

// readLimited reads r's body of declared length size (-1 when unknown)
// into a pooled buffer, reading at most limit+1 bytes so that a body over
// the limit is seen as such. The buffer goes back with putBuf.
func readLimited(r io.Reader, size, limit int64) (*[]byte, error) {
	if size < 0 || size > limit {
		// Unknown or too large a length: read as before, bounded.
		b, err := io.ReadAll(io.LimitReader(r, limit+1))
		return &b, err
	}
	buf := getBuf(&compressedBufs, int(size))
	if _, err := io.ReadFull(r, *buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		*buf = (*buf)[:0]
		return buf, err
	}
	// net/http ends a body at its Content-Length; another reader may not:
	// read what follows, up to the limit, so the caller's check sees it.
	var probe [1]byte
	if n, err := io.ReadFull(r, probe[:]); n == 0 {
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return buf, err
	}
	*buf = append(*buf, probe[0])
	rest, err := io.ReadAll(io.LimitReader(r, limit-size))
	*buf = append(*buf, rest...)
	return buf, err
}
