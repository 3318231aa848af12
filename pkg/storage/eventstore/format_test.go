package eventstore

import (
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/events"
)

// TestKeyLayoutGolden pins the on-disk layout documented in FORMAT.md. If it
// fails, the format changed: existing databases would be misread. Change
// FORMAT.md, add a migration, then update the expected bytes.
func TestKeyLayoutGolden(t *testing.T) {
	id := eventID{ts: uint64(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()), seq: 42}
	require.Equal(t, "1898b5d9b3d68000000000000000002a", hex.EncodeToString(id.bytes()))
	require.Equal(t, "32cbbmdjqq0000000000000058", id.String())
	parsed, err := parseID("id", id.String())
	require.NoError(t, err)
	require.Equal(t, id, parsed)

	require.Equal(t, "00000007"+"40"+"1898b5d9b3d68000000000000000002a", hex.EncodeToString(eventKey(7, id)))
	require.Equal(t, "00000007"+"41"+hex.EncodeToString([]byte("run-1")), hex.EncodeToString(idemKey(7, "run-1")))
	require.Equal(t, "00000007"+"42"+hex.EncodeToString([]byte("deploy"))+"00"+"1898b5d9b3d68000000000000000002a",
		hex.EncodeToString(openKey(7, "deploy", id)))
	require.Equal(t, "00000007"+"43"+"1898b5d9b3d68000000000000000002a", hex.EncodeToString(windowKey(7, id)))

	v := 3.0
	rec := encodeRecord(eventRecord{Name: "deploy", State: "start", Attributes: map[string]string{"service": "api"},
		Value: &v, Key: "run-1", Received: 1})
	require.Equal(t, "\x01"+`{"name":"deploy","state":"start","attributes":{"service":"api"},"idempotency_key":"run-1","value":3,"received_unix_nano":1}`, string(rec))
	wr := encodeRecord(windowRecord{Name: "deploy", StopID: "x", End: 5})
	require.Equal(t, "\x01"+`{"name":"deploy","stop_id":"x","end_unix_nano":5}`, string(wr))
	var fp [32]byte
	fp[0] = 0xff
	require.Equal(t, "01"+"1898b5d9b3d68000000000000000002a"+"ff"+"00000000000000000000000000000000000000000000000000000000000000",
		hex.EncodeToString(encodeIdem(id, fp)))
}

// TestStoredKeys checks the keys an append really writes, against the layout.
func TestStoredKeys(t *testing.T) {
	s, _, db := newStore(t)
	e := ev("deploy", events.StateStart, 0, "service", "api")
	e.IdempotencyKey = "k"
	start := appendOne(t, s, 9, e)
	sid, err := parseID("id", start.ID)
	require.NoError(t, err)
	hexKeys := func() []string {
		var out []string
		for _, k := range keys(t, db) {
			out = append(out, hex.EncodeToString(k))
		}
		return out
	}
	require.Equal(t, []string{
		hex.EncodeToString(eventKey(9, sid)),
		hex.EncodeToString(idemKey(9, "k")),
		hex.EncodeToString(openKey(9, "deploy", sid)),
		hex.EncodeToString(windowKey(9, sid)),
	}, hexKeys())
	stop := appendOne(t, s, 9, ev("deploy", events.StateStop, 10, "service", "api"))
	pid, err := parseID("id", stop.ID)
	require.NoError(t, err)
	require.Equal(t, []string{
		hex.EncodeToString(eventKey(9, sid)),
		hex.EncodeToString(eventKey(9, pid)),
		hex.EncodeToString(idemKey(9, "k")),
		hex.EncodeToString(windowKey(9, sid)),
	}, hexKeys(), "the stop deletes the open entry")
	v, closer, err := db.Get(windowKey(9, sid))
	require.NoError(t, err)
	defer closer.Close()
	require.Equal(t, "\x01"+`{"name":"deploy","attributes":{"service":"api"},"stop_id":"`+stop.ID+`","end_unix_nano":`+
		strconv.FormatInt(stop.Time.UnixNano(), 10)+`}`, string(v))
}
