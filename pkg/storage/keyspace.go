package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// This file names every kind byte of levitated's Pebble database and its
// owner, as CockroachDB's pkg/keys/constants.go does; no key is built
// elsewhere from a kind byte that is not declared here. pkg/storage owns
// the database: other packages get a Namespace over their own kinds and
// never the *pebble.DB. FORMAT.md lists the same table.
//
// A key is tid(4, big-endian) | kind(1) | the owner's suffix. Tenant 0
// holds the global keys.

// The kinds of pkg/storage (0x00-0x3F): see keys.go for their layout.
const (
	KindSeries   byte = 0x01
	KindChunk    byte = 0x03
	KindWAL      byte = 0x04
	KindExemplar byte = 0x05
	KindMetadata byte = 0x06
	KindTenant   byte = 0x07

	// Global kinds (tenant 0).
	KindGlobalFormat     byte = 0x01
	KindGlobalTenantName byte = 0x02
	KindGlobalCheckpoint byte = 0x03
)

// The kinds of the event store, pkg/storage/eventstore (0x40-0x4F):
// eventstore/FORMAT.md.
const (
	KindEvent       byte = 0x40 // tid|40|time|seq          -> event record
	KindEventIdem   byte = 0x41 // tid|41|idempotency key   -> id and fingerprint
	KindEventOpen   byte = 0x42 // tid|42|name 00|time|seq  -> empty: an open window
	KindEventWindow byte = 0x43 // tid|43|time|seq of start -> window record
)

// The kinds of the canary-analysis store, pkg/kayenta (0x50-0x5F):
// kayenta/FORMAT.md.
const (
	KindCanaryConfig    byte = 0x50 // tid|50|config id                     -> config record
	KindCanaryExecution byte = 0x51 // tid|51|execution id                  -> execution record
	KindCanaryByApp     byte = 0x52 // tid|52|application 00|execution id   -> empty
	KindCanaryPending   byte = 0x53 // 0|53|tid(4)|execution id (tenant 0)  -> empty
	KindCanaryPairs     byte = 0x54 // tid|54|execution id                  -> metric set pair list
)

// Owner is a package that keeps data in the database, with the range of
// kind bytes it owns.
type Owner struct {
	Name        string
	First, Last byte
}

// The owners of the kind ranges. A new owner takes a free range here and
// lists its kinds above.
var (
	OwnerStorage  = Owner{"storage", 0x00, 0x3F}
	OwnerEvents   = Owner{"eventstore", EventKindMin, EventKindMax}
	OwnerAnalysis = Owner{"kayenta", AnalysisKindMin, AnalysisKindMax}
	// Owners lists every owner, in key order.
	Owners = []Owner{OwnerStorage, OwnerEvents, OwnerAnalysis}
)

// EventKindMin and EventKindMax bound the event store's kinds.
const (
	EventKindMin byte = 0x40
	EventKindMax byte = 0x4F
	// AnalysisKindMin and AnalysisKindMax bound the analysis store's kinds.
	AnalysisKindMin byte = 0x50
	AnalysisKindMax byte = 0x5F
)

// Kind describes one kind byte: its owner, whether its keys are tenant 0's
// (global) or every tenant's, and what its keys hold.
type Kind struct {
	Byte   byte
	Owner  string
	Global bool
	Holds  string
}

// Kinds lists every kind byte above, in key order (global kinds first).
// FORMAT.md's "Every kind byte" table is this list; TestKindsTable fails
// when the two differ or when a Kind… constant of this file is missing.
var Kinds = []Kind{
	{KindGlobalFormat, "storage", true, "format version"},
	{KindGlobalTenantName, "storage", true, "tenant name -> tenant id"},
	{KindGlobalCheckpoint, "storage", true, "last write-ahead sequence covered by a checkpoint"},
	{KindCanaryPending, "kayenta", true, "pending canary executions (queue)"},
	{KindSeries, "storage", false, "series: labels and day range"},
	{KindChunk, "storage", false, "sample chunks"},
	{KindWAL, "storage", false, "write-ahead records"},
	{KindExemplar, "storage", false, "exemplars"},
	{KindMetadata, "storage", false, "metric metadata"},
	{KindTenant, "storage", false, "tenant state (oldest/newest sample time)"},
	{KindEvent, "eventstore", false, "change events"},
	{KindEventIdem, "eventstore", false, "idempotency keys of events"},
	{KindEventOpen, "eventstore", false, "open windows"},
	{KindEventWindow, "eventstore", false, "windows"},
	{KindCanaryConfig, "kayenta", false, "canary configs"},
	{KindCanaryExecution, "kayenta", false, "canary executions"},
	{KindCanaryByApp, "kayenta", false, "executions by application"},
	{KindCanaryPairs, "kayenta", false, "metric set pairs of an execution"},
}

// ErrNotFound is returned by Namespace.Get for a missing key.
var ErrNotFound = pebble.ErrNotFound

// PrefixEnd returns the smallest key greater than every key with prefix
// p, or nil if there is none (p is all 0xff).
func PrefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Namespace is an owner's part of the database: keys of its kinds, of
// every tenant. Every key written through it is checked to be the
// owner's; reads are bounded to it. It is safe for concurrent use.
type Namespace struct {
	db    *DB
	pdb   *pebble.DB
	owner Owner
}

// Namespace returns the namespace of owner, which must be one of Owners
// other than OwnerStorage.
func (db *DB) Namespace(owner Owner) (*Namespace, error) {
	for _, o := range Owners {
		if o == owner && o != OwnerStorage {
			return &Namespace{db: db, pdb: db.pdb, owner: owner}, nil
		}
	}
	return nil, fmt.Errorf("storage: %q is not an owner of a kind range", owner.Name)
}

// Owner is the namespace's owner.
func (n *Namespace) Owner() Owner { return n.owner }

// Prefix is the prefix of the keys of kind of tenant tid. It panics if
// kind is not the namespace's: keys are built from the constants above.
func (n *Namespace) Prefix(tid uint32, kind byte) []byte {
	if kind < n.owner.First || kind > n.owner.Last {
		panic(fmt.Sprintf("storage: kind %#x is not %s's (%#x-%#x)", kind, n.owner.Name, n.owner.First, n.owner.Last))
	}
	b := make([]byte, prefixLen, 64)
	binary.BigEndian.PutUint32(b, tid)
	b[tenantIDLen] = kind
	return b
}

// owns reports whether k is one of the namespace's keys.
func (n *Namespace) owns(k []byte) bool {
	return len(k) >= prefixLen && k[tenantIDLen] >= n.owner.First && k[tenantIDLen] <= n.owner.Last
}

func (n *Namespace) check(k []byte) error {
	if !n.owns(k) {
		return fmt.Errorf("storage: key %x is outside %s's kinds %#x-%#x", k[:min(len(k), prefixLen)], n.owner.Name, n.owner.First, n.owner.Last)
	}
	return nil
}

// checkBounds accepts [lo, hi) within one tenant's kinds of the namespace.
func (n *Namespace) checkBounds(lo, hi []byte) error {
	if err := n.check(lo); err != nil {
		return err
	}
	if hi == nil || len(hi) < prefixLen || !bytes.Equal(hi[:tenantIDLen], lo[:tenantIDLen]) ||
		hi[tenantIDLen] < n.owner.First || int(hi[tenantIDLen]) > int(n.owner.Last)+1 ||
		int(hi[tenantIDLen]) == int(n.owner.Last)+1 && len(hi) > prefixLen {
		return fmt.Errorf("storage: iterator bound %x leaves %s's kinds of tenant %x", hi, n.owner.Name, lo[:tenantIDLen])
	}
	return nil
}

// Get reads the value of k; ErrNotFound if there is none. The value is
// valid until closer is closed.
func (n *Namespace) Get(k []byte) (value []byte, closer io.Closer, err error) {
	if err := n.check(k); err != nil {
		return nil, nil, err
	}
	return n.pdb.Get(k)
}

// GetRecord decodes the record at k into v (see RecordCodec).
func (n *Namespace) GetRecord(k []byte, v any) error {
	b, closer, err := n.Get(k)
	if err != nil {
		return err
	}
	defer closer.Close()
	return n.Records().Decode(b, v)
}

// Records is the record codec of the namespace's owner.
func (n *Namespace) Records() RecordCodec { return RecordCodec{Owner: n.owner.Name} }

// Set writes k; with sync, it is durable when Set returns.
func (n *Namespace) Set(k, v []byte, sync bool) error {
	b := n.pdb.NewBatch()
	if err := b.Set(k, v, nil); err != nil {
		_ = b.Close()
		return err
	}
	return n.Commit(b, sync)
}

// Delete deletes k; with sync, durably.
func (n *Namespace) Delete(k []byte, sync bool) error {
	b := n.pdb.NewBatch()
	if err := b.Delete(k, nil); err != nil {
		_ = b.Close()
		return err
	}
	return n.Commit(b, sync)
}

// NewIter iterates [lo, hi), which must lie in one tenant's kinds of the
// namespace.
func (n *Namespace) NewIter(lo, hi []byte) (*pebble.Iterator, error) {
	if err := n.checkBounds(lo, hi); err != nil {
		return nil, err
	}
	return n.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
}

// NewBatch returns a write-only batch; commit it with Commit.
func (n *Namespace) NewBatch() *pebble.Batch { return n.pdb.NewBatch() }

// NewIndexedBatch returns a batch that reads its own writes over the
// database; commit it with Commit.
func (n *Namespace) NewIndexedBatch() *pebble.Batch { return n.pdb.NewIndexedBatch() }

// Commit checks that every key b writes is the namespace's, then commits
// it, and owns b (the caller does not close it). With sync it commits
// through the store's synced commit (CommitSync): durable when it returns
// nil, and a *FaultError at once while the disk refuses writes. A batch
// with a foreign key is not committed.
func (n *Namespace) Commit(b *pebble.Batch, sync bool) error {
	if !sync {
		if err := n.checkBatch(b); err != nil {
			_ = b.Close()
			return err
		}
		err := b.Commit(pebble.NoSync)
		_ = b.Close()
		return err
	}
	return n.CommitSync(b, nil)
}

// CommitSync checks b's keys as Commit does, then commits it with
// (*DB).CommitSync, which owns b and calls done (if not nil) with the
// commit's error once it completes.
func (n *Namespace) CommitSync(b *pebble.Batch, done func(error)) error {
	if err := n.checkBatch(b); err != nil {
		if done != nil {
			done(err)
		}
		_ = b.Close()
		return err
	}
	return n.db.CommitSync(b, done)
}

func (n *Namespace) checkBatch(b *pebble.Batch) error {
	r := b.Reader()
	for {
		kind, k, v, ok, err := r.Next()
		if err != nil {
			return fmt.Errorf("storage: read batch: %w", err)
		}
		if !ok {
			return nil
		}
		if err := n.check(k); err != nil {
			return err
		}
		if kind == pebble.InternalKeyKindRangeDelete {
			if err := n.checkBounds(k, v); err != nil {
				return err
			}
		}
	}
}

// Each calls fn with every key and value of the namespace, of every
// tenant, in key order, until fn returns false.
func (n *Namespace) Each(fn func(k, v []byte) bool) error {
	it, err := n.pdb.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if n.owns(it.Key()) && !fn(it.Key(), it.Value()) {
			break
		}
	}
	return it.Error()
}

// Tenants lists the tenants that have keys of the namespace's kinds, by
// seeking from one tenant's range to the next.
func (n *Namespace) Tenants() ([]uint32, error) {
	it, err := n.pdb.NewIter(nil)
	if err != nil {
		return nil, fmt.Errorf("list %s tenants: %w", n.owner.Name, err)
	}
	defer it.Close()
	var out []uint32
	t := uint64(0)
	for t <= math.MaxUint32 {
		if !it.SeekGE(TenantPrefix(uint32(t), n.owner.First)) {
			break
		}
		k := it.Key()
		if len(k) < prefixLen {
			t++
			continue
		}
		kt := uint64(binary.BigEndian.Uint32(k))
		if kt > t {
			t = kt
			continue
		}
		if n.owns(k) {
			out = append(out, uint32(t))
		}
		t++
	}
	return out, it.Error()
}

// recordVersion is the first byte of every record an owner stores.
const recordVersion byte = 1

// RecordCodec is the stored form of the owners' records: a version byte,
// then JSON. Owner prefixes its errors.
type RecordCodec struct{ Owner string }

// Encode is the stored form of v.
func (c RecordCodec) Encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: encode record: %w", c.Owner, err)
	}
	return append([]byte{recordVersion}, b...), nil
}

// Decode reads a record written by Encode into v.
func (c RecordCodec) Decode(b []byte, v any) error {
	if len(b) == 0 || b[0] != recordVersion {
		return fmt.Errorf("%s: record version %v is not %d", c.Owner, b[:min(len(b), 1)], recordVersion)
	}
	if err := json.Unmarshal(b[1:], v); err != nil {
		return fmt.Errorf("%s: decode record: %w", c.Owner, err)
	}
	return nil
}
