package eventstore

import (
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/levitated/levitated/pkg/events"
	"github.com/levitated/levitated/pkg/storage"
)

// Key kinds of the event store, named in pkg/storage's keyspace.go (its
// range is storage.OwnerEvents; see FORMAT.md).
const (
	kindEvent  = storage.KindEvent       // tenant | kind | time | seq          → eventRecord
	kindIdem   = storage.KindEventIdem   // tenant | kind | idempotency key      → idemRecord
	kindOpen   = storage.KindEventOpen   // tenant | kind | name 0x00 | time|seq → empty
	kindWindow = storage.KindEventWindow // tenant | kind | time | seq (of start) → windowRecord
)

// recordVersion is the first byte of the idempotency records, the one
// value not stored as a JSON record.
const recordVersion byte = 1

// records is the version byte + JSON codec of the event and window records.
var records = storage.RecordCodec{Owner: "eventstore"}

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

func prefix(tenant uint32, kind byte) []byte { return storage.TenantPrefix(tenant, kind) }

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
	b, err := records.Encode(v)
	if err != nil {
		// Records hold only strings, maps of strings and numbers.
		panic(err.Error())
	}
	return b
}

func decodeRecord(b []byte, v any) error { return records.Decode(b, v) }

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
