package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Key layout. Every key starts with a 4-byte big-endian tenant id and a kind
// byte; see FORMAT.md. Tenant 0 holds the global keys. Integers in keys are
// big-endian so that byte order is numeric order; signed integers (times,
// days) are stored offset-binary (sign bit flipped) for the same reason.
const (
	tenantIDLen = 4
	prefixLen   = tenantIDLen + 1

	// Per-tenant kinds, named in keyspace.go.
	kindSeries   = KindSeries   // tid|01|sid(8)                          -> labels
	kindChunk    = KindChunk    // tid|03|day(4)|sid(8)|minT(8)|part(8)  -> chunk
	kindWAL      = KindWAL      // tid|04|seq(8)                          -> WAL record
	kindExemplar = KindExemplar // tid|05|day(4)|sid(8)|t(8)              -> exemplar
	kindMetadata = KindMetadata // tid|06|metric family name             -> metadata list
	kindTenant   = KindTenant   // tid|07|name                            -> per-tenant state

	// Global kinds (tenant id 0).
	globalFormat     = KindGlobalFormat     // 0|01                -> format version string
	globalTenantName = KindGlobalTenantName // 0|02|name           -> tenant id (4)
	globalCheckpoint = KindGlobalCheckpoint // 0|03                -> WAL sequence covered by chunks (8)
)

// formatVersion is written once at creation and checked at every open.
const formatVersion = "levitated-tsdb-1"

// dayMillis is the width of a time partition. Chunks and exemplars are keyed
// by partition first, so that retention drops whole key ranges.
const dayMillis = 24 * 60 * 60 * 1000

// errCorruptKey is returned when a key does not decode.
var errCorruptKey = errors.New("storage: corrupt key")

func putTenantPrefix(b []byte, tid uint32, kind byte) []byte {
	b = binary.BigEndian.AppendUint32(b, tid)
	return append(b, kind)
}

// TenantPrefix returns the 5-byte prefix of all keys of one kind of one
// tenant. Other packages that share the Pebble database build their keys on it.
func TenantPrefix(tid uint32, kind byte) []byte {
	return putTenantPrefix(make([]byte, 0, 64), tid, kind)
}

func putInt64(b []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(v)^(1<<63))
}

func getInt64(b []byte) int64 {
	return int64(binary.BigEndian.Uint64(b) ^ (1 << 63))
}

func putInt32(b []byte, v int32) []byte {
	return binary.BigEndian.AppendUint32(b, uint32(v)^(1<<31))
}

func getInt32(b []byte) int32 {
	return int32(binary.BigEndian.Uint32(b) ^ (1 << 31))
}

// dayOf returns the partition of a timestamp in milliseconds.
func dayOf(t int64) int32 {
	d := t / dayMillis
	if t < 0 && t%dayMillis != 0 {
		d--
	}
	if d > math.MaxInt32 {
		return math.MaxInt32
	}
	if d < math.MinInt32 {
		return math.MinInt32
	}
	return int32(d)
}

func seriesKey(tid uint32, sid uint64) []byte {
	b := putTenantPrefix(make([]byte, 0, prefixLen+8), tid, kindSeries)
	return binary.BigEndian.AppendUint64(b, sid)
}

func walKey(tid uint32, seq uint64) []byte {
	b := putTenantPrefix(make([]byte, 0, prefixLen+8), tid, kindWAL)
	return binary.BigEndian.AppendUint64(b, seq)
}

const chunkKeyLen = prefixLen + 4 + 8 + 8 + 8

// chunkKey identifies one chunk: partition, series, first timestamp and part.
// In-order chunks have part 0; out-of-order chunks have the checkpoint
// sequence that wrote them, so that they never collide.
func chunkKey(tid uint32, sid uint64, minT int64, part uint64) []byte {
	return appendChunkKey(make([]byte, 0, chunkKeyLen), tid, sid, minT, part)
}

// appendChunkKey appends chunkKey's key to b.
func appendChunkKey(b []byte, tid uint32, sid uint64, minT int64, part uint64) []byte {
	b = putTenantPrefix(b, tid, kindChunk)
	b = putInt32(b, dayOf(minT))
	b = binary.BigEndian.AppendUint64(b, sid)
	b = putInt64(b, minT)
	return binary.BigEndian.AppendUint64(b, part)
}

// chunkSeriesPrefix is the prefix of all chunks of a series in one partition.
func chunkSeriesPrefix(tid uint32, day int32, sid uint64) []byte {
	b := putTenantPrefix(make([]byte, 0, prefixLen+12), tid, kindChunk)
	b = putInt32(b, day)
	return binary.BigEndian.AppendUint64(b, sid)
}

// chunkDayPrefix is the prefix of all chunks of one partition.
func chunkDayPrefix(tid uint32, day int32) []byte {
	b := putTenantPrefix(make([]byte, 0, prefixLen+4), tid, kindChunk)
	return putInt32(b, day)
}

type chunkKeyParts struct {
	tid  uint32
	day  int32
	sid  uint64
	minT int64
	part uint64
}

func parseChunkKey(k []byte) (chunkKeyParts, error) {
	if len(k) != chunkKeyLen || k[tenantIDLen] != kindChunk {
		return chunkKeyParts{}, fmt.Errorf("chunk key of %d bytes: %w", len(k), errCorruptKey)
	}
	p := chunkKeyParts{
		tid:  binary.BigEndian.Uint32(k),
		day:  getInt32(k[prefixLen:]),
		sid:  binary.BigEndian.Uint64(k[prefixLen+4:]),
		minT: getInt64(k[prefixLen+12:]),
		part: binary.BigEndian.Uint64(k[prefixLen+20:]),
	}
	if dayOf(p.minT) != p.day {
		return chunkKeyParts{}, fmt.Errorf("chunk key: time %d outside partition %d: %w", p.minT, p.day, errCorruptKey)
	}
	return p, nil
}

const exemplarKeyLen = prefixLen + 4 + 8 + 8

func exemplarKey(tid uint32, sid uint64, t int64) []byte {
	b := putTenantPrefix(make([]byte, 0, exemplarKeyLen), tid, kindExemplar)
	b = putInt32(b, dayOf(t))
	b = binary.BigEndian.AppendUint64(b, sid)
	return putInt64(b, t)
}

func exemplarSeriesPrefix(tid uint32, day int32, sid uint64) []byte {
	b := putTenantPrefix(make([]byte, 0, prefixLen+12), tid, kindExemplar)
	b = putInt32(b, day)
	return binary.BigEndian.AppendUint64(b, sid)
}

func exemplarDayPrefix(tid uint32, day int32) []byte {
	b := putTenantPrefix(make([]byte, 0, prefixLen+4), tid, kindExemplar)
	return putInt32(b, day)
}

func metadataKey(tid uint32, family string) []byte {
	b := putTenantPrefix(make([]byte, 0, prefixLen+len(family)), tid, kindMetadata)
	return append(b, family...)
}

func tenantStateKey(tid uint32, name string) []byte {
	b := putTenantPrefix(make([]byte, 0, prefixLen+len(name)), tid, kindTenant)
	return append(b, name...)
}

func globalKey(kind byte, suffix string) []byte {
	b := putTenantPrefix(make([]byte, 0, prefixLen+len(suffix)), 0, kind)
	return append(b, suffix...)
}
