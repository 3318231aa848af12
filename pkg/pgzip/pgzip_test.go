package pgzip

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/flate"
)

// TestRoundTrip: what Writer writes, in any mix of small and large writes,
// at any level and on any number of cores, Go's gzip reader reads back as
// one member, CRC and size checked.
func TestRoundTrip(t *testing.T) {
	defer func(p, b int) { ParallelBytes, blockBytes = p, b }(ParallelBytes, blockBytes)
	ParallelBytes, blockBytes = 50_000, 7_000
	rng := rand.New(rand.NewPCG(1, 2))
	text := func(n int) []byte { // JSON-like, compressible, with repeats across blocks
		var b bytes.Buffer
		for b.Len() < n {
			fmt.Fprintf(&b, `[%d.%03d,"%v"],`, 1796514420+rng.IntN(100)*60, rng.IntN(1000), rng.Float64()*float64(rng.IntN(3)))
		}
		return b.Bytes()[:n]
	}
	random := make([]byte, 120_000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	for _, writes := range [][][]byte{
		nil,
		{{}},
		{text(100)},
		{text(50_000)},
		{text(400_000)},
		{text(10), text(300_000), text(5), text(2), text(60_000)},
		{random, text(3), random[:51_234]},
	} {
		for _, level := range []int{flate.BestSpeed, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly, flate.NoCompression} {
			for _, procs := range []int{1, 2, 4} {
				old := runtime.GOMAXPROCS(procs)
				var out bytes.Buffer
				z, err := NewWriter(&out, level)
				if err != nil {
					t.Fatal(err)
				}
				var want []byte
				for _, p := range writes {
					n, err := z.Write(p)
					if err != nil || n != len(p) {
						t.Fatalf("write: %d, %v", n, err)
					}
					want = append(want, p...)
				}
				if err := z.Close(); err != nil {
					t.Fatal(err)
				}
				runtime.GOMAXPROCS(old)
				r, err := gzip.NewReader(&out)
				if err != nil {
					t.Fatal(err)
				}
				r.Multistream(false)
				got, err := io.ReadAll(r)
				if err != nil {
					t.Fatalf("level %d on %d cores, %d writes: %v", level, procs, len(writes), err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("level %d on %d cores: %d bytes back, want %d", level, procs, len(got), len(want))
				}
				if rest, _ := io.ReadAll(&out); len(rest) != 0 {
					t.Fatalf("%d bytes after the member", len(rest))
				}
			}
		}
	}
}

func TestLevel(t *testing.T) {
	if _, err := NewWriter(io.Discard, 10); err == nil {
		t.Fatal("level 10 accepted")
	}
}

// BenchmarkWrite: a 4 MB JSON answer written at once.
func BenchmarkWrite(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var data bytes.Buffer
	for data.Len() < 4<<20 {
		fmt.Fprintf(&data, `[%d,"%v"],`, 1796514420+rng.IntN(121)*60, rng.Float64())
	}
	b.SetBytes(int64(data.Len()))
	for _, parallel := range []bool{false, true} {
		b.Run(fmt.Sprintf("parallel=%v", parallel), func(b *testing.B) {
			defer func(p int) { ParallelBytes = p }(ParallelBytes)
			if !parallel {
				ParallelBytes = 1 << 40
			}
			for b.Loop() {
				z, _ := NewWriter(io.Discard, flate.BestSpeed)
				_, _ = z.Write(data.Bytes())
				_ = z.Close()
			}
		})
	}
}
