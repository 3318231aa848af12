package kayenta

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/levitated/levitated/pkg/analysis"
	"github.com/levitated/levitated/pkg/storage"
)

// Key kinds of this package, named in pkg/storage's keyspace.go, in the
// canary-analysis range storage.OwnerAnalysis (FORMAT.md).
const (
	kindConfig    = storage.KindCanaryConfig    // tid|50|config id                  -> config record
	kindExecution = storage.KindCanaryExecution // tid|51|execution id               -> execution record
	kindByApp     = storage.KindCanaryByApp     // tid|52|application|00|execution id -> empty
	kindPending   = storage.KindCanaryPending   // 0|53|tid(4)|execution id          -> empty (global: tenant 0)
	kindPairs     = storage.KindCanaryPairs     // tid|54|execution id               -> metric set pair list record

	// recordVersion is the version byte of the stored records
	// (storage.RecordCodec); the metric set pairs are read raw.
	recordVersion byte = 0x01
)

func key(tid uint32, kind byte, parts ...string) []byte {
	k := storage.TenantPrefix(tid, kind)
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}

func pendingKey(tid uint32, id string) []byte {
	k := storage.TenantPrefix(0, kindPending)
	k = binary.BigEndian.AppendUint32(k, tid)
	return append(k, id...)
}

// records is the version byte + JSON codec of the stored records.
var records = storage.RecordCodec{Owner: "kayenta"}

func encodeRecord(v any) ([]byte, error) { return records.Encode(v) }

func decodeRecord(b []byte, v any) error { return records.Decode(b, v) }

// configRecord is a stored canary config.
type configRecord struct {
	Config analysis.CanaryConfig `json:"config"`
}

// execution is a stored canary execution: everything the status response
// shows, and what the runner needs to run it again after a restart.
type execution struct {
	ID                        string                `json:"id"`
	Tenant                    string                `json:"tenant"`
	Application               string                `json:"application"`
	ParentPipelineExecutionID string                `json:"parentPipelineExecutionId,omitempty"`
	CanaryConfigID            string                `json:"canaryConfigId,omitempty"`
	ConfigurationAccountName  string                `json:"configurationAccountName,omitempty"`
	MetricsAccountName        string                `json:"metricsAccountName"`
	StorageAccountName        string                `json:"storageAccountName"`
	Config                    analysis.CanaryConfig `json:"config"`
	Request                   executionRequest      `json:"request"`

	Status      string                      `json:"status"` // an Orca ExecutionStatus
	FailedStage string                      `json:"failedStage,omitempty"`
	BuildTime   int64                       `json:"buildTime"`           // ms
	StartTime   int64                       `json:"startTime,omitempty"` // ms
	EndTime     int64                       `json:"endTime,omitempty"`   // ms
	Attempts    int                         `json:"attempts,omitempty"`
	Result      *analysis.CanaryJudgeResult `json:"result,omitempty"`
	HasPairs    bool                        `json:"hasPairs,omitempty"`
	Exception   *Exception                  `json:"exception,omitempty"`
}

// Orca's ExecutionStatus values this package uses.
const (
	statusNotStarted = "NOT_STARTED"
	statusRunning    = "RUNNING"
	statusSucceeded  = "SUCCEEDED"
	statusTerminal   = "TERMINAL"
)

func complete(status string) bool { return status == statusSucceeded || status == statusTerminal }

// errNotFound is returned by the getters for a missing key.
var errNotFound = errors.New("kayenta: not found")

func get(ns *storage.Namespace, k []byte, v any) error {
	err := ns.GetRecord(k, v)
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound
	}
	return err
}

func (s *Service) getConfig(tid uint32, id string) (analysis.CanaryConfig, error) {
	var r configRecord
	if err := get(s.ns, key(tid, kindConfig, id), &r); err != nil {
		return analysis.CanaryConfig{}, err
	}
	return r.Config, nil
}

func (s *Service) putConfig(tid uint32, cfg analysis.CanaryConfig) error {
	b, err := encodeRecord(configRecord{Config: cfg})
	if err != nil {
		return fmt.Errorf("encode canary config: %w", err)
	}
	if err := s.ns.Set(key(tid, kindConfig, cfg.ID), b, true); err != nil {
		return fmt.Errorf("store canary config: %w", err)
	}
	return nil
}

func (s *Service) deleteConfig(tid uint32, id string) error {
	if err := s.ns.Delete(key(tid, kindConfig, id), true); err != nil {
		return fmt.Errorf("delete canary config: %w", err)
	}
	return nil
}

// listConfigs returns every config of the tenant in key (id) order.
func (s *Service) listConfigs(ctx context.Context, tid uint32) ([]analysis.CanaryConfig, error) {
	lo := storage.TenantPrefix(tid, kindConfig)
	it, err := s.ns.NewIter(lo, storage.PrefixEnd(lo))
	if err != nil {
		return nil, fmt.Errorf("list canary configs: %w", err)
	}
	defer it.Close()
	var out []analysis.CanaryConfig
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var r configRecord
		if err := decodeRecord(it.Value(), &r); err != nil {
			return nil, fmt.Errorf("read canary config %q: %w", it.Key()[len(lo):], err)
		}
		out = append(out, r.Config)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("list canary configs: %w", err)
	}
	return out, nil
}

func (s *Service) getExecution(tid uint32, id string) (execution, error) {
	var e execution
	err := get(s.ns, key(tid, kindExecution, id), &e)
	return e, err
}

// createExecution stores a new execution and queues it, in one synced
// batch: once it returns, the execution will run, after a restart if need be.
func (s *Service) createExecution(tid uint32, e *execution) error {
	b, err := encodeRecord(e)
	if err != nil {
		return fmt.Errorf("encode canary execution: %w", err)
	}
	batch := s.ns.NewBatch()
	committed := false
	defer func() {
		if !committed {
			_ = batch.Close()
		}
	}()
	if err := batch.Set(key(tid, kindExecution, e.ID), b, nil); err != nil {
		return err
	}
	if err := batch.Set(key(tid, kindByApp, e.Application, e.ID), nil, nil); err != nil {
		return err
	}
	if err := batch.Set(pendingKey(tid, e.ID), nil, nil); err != nil {
		return err
	}
	committed = true // Commit owns the batch
	if err := s.ns.Commit(batch, true); err != nil {
		return fmt.Errorf("store canary execution: %w", err)
	}
	return nil
}

// updateExecution writes the state of a running execution. It is not
// synced: a crash only loses progress that is redone after the restart.
func (s *Service) updateExecution(tid uint32, e *execution) error {
	b, err := encodeRecord(e)
	if err != nil {
		return fmt.Errorf("encode canary execution: %w", err)
	}
	if err := s.ns.Set(key(tid, kindExecution, e.ID), b, false); err != nil {
		return fmt.Errorf("update canary execution: %w", err)
	}
	return nil
}

// finishExecution writes the final state, the metric set pairs (if any)
// and removes the execution from the queue, in one synced batch.
func (s *Service) finishExecution(tid uint32, e *execution, pairs []analysis.MetricSetPair) error {
	b, err := encodeRecord(e)
	if err != nil {
		return fmt.Errorf("encode canary execution: %w", err)
	}
	batch := s.ns.NewBatch()
	committed := false
	defer func() {
		if !committed {
			_ = batch.Close()
		}
	}()
	if err := batch.Set(key(tid, kindExecution, e.ID), b, nil); err != nil {
		return err
	}
	if e.HasPairs {
		pb, err := encodeRecord(pairs)
		if err != nil {
			return fmt.Errorf("encode metric set pairs: %w", err)
		}
		if err := batch.Set(key(tid, kindPairs, e.ID), pb, nil); err != nil {
			return err
		}
	}
	if err := batch.Delete(pendingKey(tid, e.ID), nil); err != nil {
		return err
	}
	committed = true // Commit owns the batch
	if err := s.ns.Commit(batch, true); err != nil {
		return fmt.Errorf("store canary result: %w", err)
	}
	return nil
}

// listExecutionIDs returns the ids of the tenant's executions of one
// application, newest first, skipping the first skip and returning at most
// limit.
func (s *Service) listExecutionIDs(ctx context.Context, tid uint32, application string, skip, limit int, keep func(id string) (bool, error)) ([]string, error) {
	lo := append(key(tid, kindByApp, application), 0)
	it, err := s.ns.NewIter(lo, storage.PrefixEnd(lo))
	if err != nil {
		return nil, fmt.Errorf("list canary executions: %w", err)
	}
	defer it.Close()
	var out []string
	for ok := it.Last(); ok && len(out) < limit; ok = it.Prev() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id := string(it.Key()[len(lo):])
		k, err := keep(id)
		if err != nil {
			return nil, err
		}
		if !k {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		out = append(out, id)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("list canary executions: %w", err)
	}
	return out, nil
}

// pendingExecutions returns the queue as left by the last run: executions
// accepted and not finished.
func (s *Service) pendingExecutions() ([]job, error) {
	lo := storage.TenantPrefix(0, kindPending)
	it, err := s.ns.NewIter(lo, storage.PrefixEnd(lo))
	if err != nil {
		return nil, fmt.Errorf("read the canary queue: %w", err)
	}
	defer it.Close()
	var out []job
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()[len(lo):]
		if len(k) < 5 {
			return nil, fmt.Errorf("read the canary queue: corrupt key %x", it.Key())
		}
		out = append(out, job{tid: binary.BigEndian.Uint32(k), id: string(k[4:])})
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("read the canary queue: %w", err)
	}
	return out, nil
}

func (s *Service) getPairs(tid uint32, id string) (json.RawMessage, error) {
	b, closer, err := s.ns.Get(key(tid, kindPairs, id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	if len(b) == 0 || b[0] != recordVersion {
		return nil, fmt.Errorf("kayenta: metric set pair record version is not %d", recordVersion)
	}
	return bytes.Clone(b[1:]), nil
}
