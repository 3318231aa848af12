// Package storage is levitated's time-series database on Pebble, and the
// owner of the Pebble keyspace.
//
// A [DB] is a Prometheus storage.Storage (and AppendableV2,
// ExemplarQueryable) for every tenant: the tenant comes from each call's
// context. A commit is one Pebble batch written with pebble.Sync, so a
// returned Commit means the data is on disk. Samples live in memory as
// Prometheus chunkenc chunks until a checkpoint writes them to Pebble;
// reads are Prometheus' own tsdb.NewBlockQuerier over a per-tenant block
// reader (index, in-memory chunks, Pebble chunks). Keys are
// tenant-prefixed and day-partitioned, so retention deletes whole days.
// FORMAT.md describes every key and value; its golden test fails when the
// format changes.
//
// The package owns the keyspace (keyspace.go): every kind byte is declared
// there with its owner, and the other owners (the event store, the Kayenta
// store) get a [Namespace] over their own kinds — no package outside
// pkg/storage sees *pebble.DB (internal/lint checks it). Disk faults are
// handled here (guardfs.go): a full disk or a lost permission holds writes
// back and reports 503-worthy errors instead of letting Pebble panic.
//
// It must not know HTTP, gRPC, PromQL or the event model: it stores what
// it is given and tells Options.OnChange what became visible.
package storage
