package matrixcodec

import (
	"bytes"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/prometheus/promql"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// JSONCodec is Prometheus' JSON codec (v1.JSONCodec), byte for byte, that
// encodes the series of a large matrix on all cores: each goroutine
// encodes a run of consecutive series as Prometheus' own encoder of a
// matrix (registered by web/api/v1 with jsoniter) does, with matrixWriter,
// which formats each distinct timestamp and value of a run once, and the
// runs are joined with the commas that encoder writes between series. A
// range query of a thousand series over 121 steps spent more time
// formatting its floats than computing them. Install it in the place of v1.JSONCodec
// (API.ClearCodecs, then InstallCodec first): it is the default codec.
type JSONCodec struct{}

// ContentType implements v1.Codec.
func (JSONCodec) ContentType() v1.MIMEType { return v1.JSONCodec{}.ContentType() }

// CanEncode implements v1.Codec: everything, as v1.JSONCodec.
func (JSONCodec) CanEncode(*v1.Response) bool { return true }

// parallelPoints is the fewest points of a matrix encoded on more than one
// goroutine (a variable for tests); smaller ones are v1.JSONCodec's.
var parallelPoints = 20000

// runsPerWorker is how many runs a matrix is cut into per worker.
const runsPerWorker = 4

// resultMark is where the matrix goes in the response encoded with an
// empty one: a JSON string cannot hold it unescaped, and "data" comes
// before "warnings" and "infos".
var resultMark = []byte(`"result":[]`)

// Encode implements v1.Codec.
func (JSONCodec) Encode(resp *v1.Response) ([]byte, error) {
	d, ok := resp.Data.(*v1.QueryData)
	workers := runtime.GOMAXPROCS(0)
	if !ok || workers < 2 {
		return encodeLent(resp)
	}
	m, ok := d.Result.(promql.Matrix)
	if !ok || len(m) < 2 {
		return encodeLent(resp)
	}
	points := 0
	for _, s := range m {
		points += len(s.Floats) + 8*len(s.Histograms)
	}
	if points < parallelPoints {
		return encodeLent(resp)
	}
	// The response with an empty matrix, to put the runs into.
	empty := *d
	empty.Result = promql.Matrix{}
	shell := *resp
	shell.Data = &empty
	head, err := v1.JSONCodec{}.Encode(&shell)
	if err != nil {
		return nil, err
	}
	at := bytes.Index(head, resultMark)
	if at < 0 {
		return v1.JSONCodec{}.Encode(resp)
	}
	at += len(resultMark) - 1 // between [ and ]
	// Runs of about equal points, in order, more runs than workers: a
	// worker that is slow (another goroutine on its core, a collection)
	// leaves its next runs to the others.
	nruns := min(runsPerWorker*workers, len(m))
	runs := make([][]byte, nruns)
	errs := make([]error, nruns)
	parts := make([]promql.Matrix, nruns)
	lo, done := 0, 0
	for w := range nruns {
		hi := lo
		if w == nruns-1 {
			hi = len(m)
		} else {
			target := points * (w + 1) / nruns
			for hi < len(m) && (hi == lo || done < target) {
				done += len(m[hi].Floats) + 8*len(m[hi].Histograms)
				hi++
			}
		}
		parts[w] = m[lo:hi]
		lo = hi
	}
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(workers, nruns) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				w := int(next.Add(1) - 1)
				if w >= nruns {
					return
				}
				if len(parts[w]) > 0 {
					runs[w], errs[w] = encodeRun(parts[w], points/nruns)
				}
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, r := range runs {
			if r != nil {
				runBufs.Put(&r)
			}
		}
	}()
	size := len(head)
	for w, r := range runs {
		if errs[w] != nil {
			return nil, errs[w]
		}
		size += len(r)
	}
	out := lend(size)
	out = append(out, head[:at]...)
	first := true
	for _, r := range runs {
		if len(r) < 2 {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, r[1:len(r)-1]...) // without the run's [ and ]
	}
	return append(out, head[at:]...), nil
}

// encodeLent is v1.JSONCodec's Encode (jsoniter's Marshal with its
// standard-library configuration: the same stream, the same bytes) into
// a lent buffer: Marshal copies the stream's bytes into a new slice, which
// was a fifth of what a range query of one series allocated.
func encodeLent(resp *v1.Response) ([]byte, error) {
	cfg := jsoniter.ConfigCompatibleWithStandardLibrary
	stream := cfg.BorrowStream(nil)
	defer cfg.ReturnStream(stream)
	stream.WriteVal(resp)
	if stream.Error != nil {
		return nil, stream.Error
	}
	b := stream.Buffer()
	return append(lend(len(b)), b...), nil
}

// answers are buffers of answers Encode made, given back by Recycle; lent
// are those handed out and not given back, the latest lentMax: an answer
// written by a writer that does not recycle is dropped from it in time,
// and is garbage as any other.
var (
	answers sync.Pool // of *[]byte
	lentMu  sync.Mutex
	lent    []*[]byte
)

const lentMax = 8

// lend returns an empty buffer of at least size bytes for an answer,
// noted as lent.
func lend(size int) []byte {
	var out []byte
	if b, ok := answers.Get().(*[]byte); ok && cap(*b) >= size {
		out = (*b)[:0]
	} else {
		out = make([]byte, 0, size)
	}
	lentMu.Lock()
	if len(lent) == lentMax {
		lent = append(lent[:0], lent[1:]...)
	}
	lent = append(lent, &out)
	lentMu.Unlock()
	return out
}

// Recycle gives back the buffer of p if p is an answer Encode returned
// and has not been given back: the writer of the response calls it once
// p is written and nothing refers to it (Prometheus' API writes an
// answer with one Write and drops it). The 4 MB answer of a range query
// of 1,000 series was a third of what it allocated, and the collector's
// cost is by the byte (GOGC is 30). Any other p is left alone.
func Recycle(p []byte) {
	if cap(p) == 0 {
		return
	}
	lentMu.Lock()
	defer lentMu.Unlock()
	for i, b := range lent {
		if unsafe.SliceData(*b) == unsafe.SliceData(p) {
			lent = append(lent[:i], lent[i+1:]...)
			answers.Put(b)
			return
		}
	}
}

// runBufs are the buffers runs are encoded into, reused from answer to
// answer: a 4 MB answer grown by appends allocated three times its size,
// and the garbage collector's cost is by the byte (GOGC is 30).
var runBufs sync.Pool

// encodeRun encodes part, a matrix of about points points, as Prometheus'
// encoder of a matrix does (appendMatrix) into a buffer from runBufs.
func encodeRun(part promql.Matrix, points int) ([]byte, error) {
	var buf []byte
	if b, ok := runBufs.Get().(*[]byte); ok {
		buf = (*b)[:0]
	}
	if want := points*40 + len(part)*256; cap(buf) < want {
		buf = make([]byte, 0, want)
	}
	return appendMatrix(buf, part)
}
