// Package pgzip writes gzip (RFC 1952) whose large writes are compressed
// on all cores: a write of ParallelBytes or more is cut into blocks, each
// block is deflated on its own goroutine with the 32 KiB before it as its
// dictionary and ended with a sync flush (a byte-aligned, non-final
// deflate block), and the blocks are written in order. The result is one
// gzip member with one deflate stream, which any gzip reader decodes;
// klauspost/compress/pgzip does the same for streams, this is the part of
// it a response written in one piece needs. Small writes go through one
// deflate writer, as gzip.Writer's do.
package pgzip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/flate"
)

// ParallelBytes is the smallest write compressed in blocks on all cores
// (a variable for tests).
var ParallelBytes = 1 << 20

// blockBytes is the size of a block (a variable for tests): each block
// also encodes its 32 KiB dictionary again, 6 % more work at 512 KiB.
var blockBytes = 512 << 10

// dictBytes is how much of the data before a block is its dictionary:
// deflate's window.
const dictBytes = 32 << 10

// Writer is a gzip writer; its zero value is not usable (NewWriter).
type Writer struct {
	w       io.Writer
	level   int
	crc     uint32
	size    uint32
	header  bool
	seq     *flate.Writer // small writes since the last large one
	closed  bool
	err     error
	workers int
}

// NewWriter returns a Writer compressing at level (flate's levels; 1 is
// gzip's best speed) into w.
func NewWriter(w io.Writer, level int) (*Writer, error) {
	if level < flate.HuffmanOnly || level > flate.BestCompression {
		return nil, errors.New("pgzip: invalid compression level")
	}
	return &Writer{w: w, level: level, workers: runtime.GOMAXPROCS(0)}, nil
}

// writers are deflate writers to reuse, by level (from HuffmanOnly, -2).
var writers [flate.BestCompression + 3]sync.Pool

func (z *Writer) flateWriter(w io.Writer, dict []byte) *flate.Writer {
	if fw, ok := writers[z.level+2].Get().(*flate.Writer); ok {
		fw.ResetDict(w, dict)
		return fw
	}
	fw, err := flate.NewWriterDict(w, z.level, dict)
	if err != nil { // the level was checked
		panic(err)
	}
	return fw
}

func (z *Writer) writeHeader() error {
	if z.header {
		return nil
	}
	z.header = true
	// ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL OS=unknown, as gzip.Writer.
	h := [10]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}
	switch z.level {
	case flate.BestCompression:
		h[8] = 2
	case flate.BestSpeed:
		h[8] = 4
	}
	_, err := z.w.Write(h[:])
	return err
}

// Write compresses p.
func (z *Writer) Write(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	if z.closed {
		return 0, errors.New("pgzip: write after close")
	}
	if z.err = z.writeHeader(); z.err != nil {
		return 0, z.err
	}
	z.crc = crc32.Update(z.crc, crc32.IEEETable, p)
	z.size += uint32(len(p))
	if len(p) < ParallelBytes || z.workers < 2 || z.level == flate.HuffmanOnly || z.level == flate.NoCompression {
		if z.seq == nil {
			z.seq = z.flateWriter(z.w, nil)
		}
		n, err := z.seq.Write(p)
		z.err = err
		return n, err
	}
	if z.seq != nil {
		// End the small writes' blocks on a byte boundary, not final.
		if z.err = z.seq.Flush(); z.err != nil {
			return 0, z.err
		}
		writers[z.level+2].Put(z.seq)
		z.seq = nil
	}
	if z.err = z.parallel(p); z.err != nil {
		return 0, z.err
	}
	return len(p), nil
}

// parallel writes p's blocks, deflated on z.workers goroutines. The
// worker that finishes the next block to write writes it, and any after it
// already done: a block goes out as soon as those before it have, so that
// the reader can inflate it while the rest are compressed. (The caller
// waiting for each block in turn was woken only when a worker stopped: a
// goroutine readied by a running one waits for its P, and both were busy
// until the last block; an answer of 4 MB went out in one burst at the
// end.)
func (z *Writer) parallel(p []byte) error {
	n := (len(p) + blockBytes - 1) / blockBytes
	var (
		mu      sync.Mutex
		out     = make([]*bytes.Buffer, n) // done and not yet written
		written int                        // blocks written
		err     error                      // the first error, of a block or a write
		wg      sync.WaitGroup
		next    atomic.Int64
	)
	for range min(z.workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				mu.Lock()
				failed := err != nil
				mu.Unlock()
				if i >= n || failed {
					return
				}
				lo, hi := i*blockBytes, min((i+1)*blockBytes, len(p))
				dict := p[max(lo-dictBytes, 0):lo]
				buf, _ := blocks.Get().(*bytes.Buffer)
				if buf == nil {
					buf = new(bytes.Buffer)
				}
				buf.Reset()
				buf.Grow((hi - lo) / 2)
				fw := z.flateWriter(buf, dict)
				_, berr := fw.Write(p[lo:hi])
				if berr == nil {
					berr = fw.Flush()
				}
				writers[z.level+2].Put(fw)
				mu.Lock()
				out[i] = buf
				if berr != nil && err == nil {
					err = berr
				}
				for written < n && out[written] != nil {
					if err == nil {
						_, err = z.w.Write(out[written].Bytes())
					}
					blocks.Put(out[written])
					out[written] = nil
					written++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return err
}

// blocks are the buffers of compressed blocks, reused.
var blocks sync.Pool // of *bytes.Buffer

// Close ends the deflate stream with a final block and writes gzip's
// trailer; it does not close the underlying writer.
func (z *Writer) Close() error {
	if z.err != nil {
		return z.err
	}
	if z.closed {
		return nil
	}
	z.closed = true
	if z.err = z.writeHeader(); z.err != nil {
		return z.err
	}
	if z.seq == nil {
		z.seq = z.flateWriter(z.w, nil)
	}
	if z.err = z.seq.Close(); z.err != nil {
		return z.err
	}
	writers[z.level+2].Put(z.seq)
	z.seq = nil
	var t [8]byte
	binary.LittleEndian.PutUint32(t[:4], z.crc)
	binary.LittleEndian.PutUint32(t[4:], z.size)
	_, z.err = z.w.Write(t[:])
	return z.err
}
