package eventstore

import (
	"bytes"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/levitated/levitated/pkg/events"
)

// Key kinds of the event store (0x40-0x4F is its range; see FORMAT.md).
const (
	kindEvent  byte = 0x40 // tenant | kind | time | seq          → eventRecord
	kindIdem   byte = 0x41 // tenant | kind | idempotency key      → idemRecord
	kindOpen   byte = 0x42 // tenant | kind | name 0x00 | time|seq → empty
	kindWindow byte = 0x43 // tenant | kind | time | seq (of start) → windowRecord

	kindFirst byte = 0x40
	kindLast  byte = 0x4F
)

// recordVersion is the first byte of every value the store writes.
const recordVersion byte = 1

// eventID is the time (Unix nanoseconds) and sequence number of an event.
// Its 16 big-endian bytes are the tail of the event's keys; its text form,
// the API id, is those bytes in lower-case base32hex: 26 characters that
// sort like the bytes.
type eventID struct {
	ts  uint64
	seq uint64
}

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

func (id eventID) bytes() []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], id.ts)
	binary.BigEndian.PutUint64(b[8:], id.seq)
	return b[:]
}

func (id eventID) String() string { return idEncoding.EncodeToString(id.bytes()) }

func (id eventID) time() time.Time { return time.Unix(0, int64(id.ts)).UTC() }

func idFromBytes(b []byte) eventID {
	return eventID{ts: binary.BigEndian.Uint64(b[:8]), seq: binary.BigEndian.Uint64(b[8:16])}
}

// parseID reads an API id; field names the field for the error.
func parseID(field, s string) (eventID, error) {
	b, err := idEncoding.DecodeString(s)
	if err != nil || len(b) != 16 || len(s) != 26 {
		return eventID{}, &events.FieldError{Field: field, Rule: fmt.Sprintf("%q is not an event id", s)}
	}
	return idFromBytes(b), nil
}

func prefix(tenant uint32, kind byte) []byte {
	b := make([]byte, 5, 64)
	binary.BigEndian.PutUint32(b, tenant)
	b[4] = kind
	return b
}

func eventKey(tenant uint32, id eventID) []byte {
	return append(prefix(tenant, kindEvent), id.bytes()...)
}

func windowKey(tenant uint32, start eventID) []byte {
	return append(prefix(tenant, kindWindow), start.bytes()...)
}

func idemKey(tenant uint32, key string) []byte {
	return append(prefix(tenant, kindIdem), key...)
}

func openPrefix(tenant uint32, name string) []byte {
	b := append(prefix(tenant, kindOpen), name...)
	return append(b, 0)
}

func openKey(tenant uint32, name string, start eventID) []byte {
	return append(openPrefix(tenant, name), start.bytes()...)
}

// timeKey is the key of kind at time ts with sequence 0: a bound for
// range scans and range deletions of the time-ordered kinds.
func timeKey(tenant uint32, kind byte, ts uint64) []byte {
	return append(prefix(tenant, kind), eventID{ts: ts}.bytes()...)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// eventRecord is the stored form of an event (the time and sequence are in
// the key).
type eventRecord struct {
	Name       string            `json:"name"`
	State      string            `json:"state"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Text       string            `json:"text,omitempty"`
	URL        string            `json:"url,omitempty"`
	Source     string            `json:"source,omitempty"`
	Key        string            `json:"idempotency_key,omitempty"`
	Value      *float64          `json:"value,omitempty"`
	StartID    string            `json:"start_id,omitempty"`
	Received   int64             `json:"received_unix_nano"`
}

// windowRecord is the stored form of a window, keyed by its start.
type windowRecord struct {
	Name       string            `json:"name"`
	Attributes map[string]string `json:"attributes,omitempty"`
	StopID     string            `json:"stop_id,omitempty"`
	End        int64             `json:"end_unix_nano,omitempty"`
}

func encodeRecord(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Records hold only strings, maps of strings and numbers.
		panic(fmt.Sprintf("eventstore: encode record: %v", err))
	}
	return append([]byte{recordVersion}, b...)
}

func decodeRecord(b []byte, v any) error {
	if len(b) == 0 || b[0] != recordVersion {
		return fmt.Errorf("eventstore: record version %v is not %d", b[:min(len(b), 1)], recordVersion)
	}
	if err := json.Unmarshal(b[1:], v); err != nil {
		return fmt.Errorf("eventstore: decode record: %w", err)
	}
	return nil
}

func recordOf(e *events.Event) eventRecord {
	return eventRecord{
		Name: e.Name, State: e.State.String(), Attributes: e.Attributes, Text: e.Text, URL: e.URL,
		Source: e.Source, Key: e.IdempotencyKey, Value: e.Value, StartID: e.StartID,
		Received: e.ReceivedAt.UnixNano(),
	}
}

func (r *eventRecord) event(id eventID) (events.Event, error) {
	st, err := events.ParseState(r.State)
	if err != nil {
		return events.Event{}, fmt.Errorf("eventstore: event %s: %w", id, err)
	}
	return events.Event{
		ID: id.String(), Name: r.Name, State: st, Time: id.time(), Attributes: r.Attributes,
		Text: r.Text, URL: r.URL, Source: r.Source, IdempotencyKey: r.Key, Value: r.Value,
		StartID: r.StartID, ReceivedAt: time.Unix(0, r.Received).UTC(),
	}, nil
}

// idemRecord: version, the 16 id bytes, the 32-byte fingerprint.
func encodeIdem(id eventID, fp [32]byte) []byte {
	b := append([]byte{recordVersion}, id.bytes()...)
	return append(b, fp[:]...)
}

func decodeIdem(b []byte) (eventID, [32]byte, error) {
	var fp [32]byte
	if len(b) != 1+16+32 || b[0] != recordVersion {
		return eventID{}, fp, fmt.Errorf("eventstore: bad idempotency record of %d bytes", len(b))
	}
	copy(fp[:], b[17:])
	return idFromBytes(b[1:17]), fp, nil
}
