package events

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDecodeJSONOneAndBatch(t *testing.T) {
	evs, batch, err := DecodeJSON([]byte(`{"name":"deploy","state":"start","timestamp":"2026-01-15T17:57:22+05:30",
		"attributes":{"service":"api","replicas":3,"ratio":0.25,"canary":true},"text":"t","url":"https://x.example/1",
		"source":"ci","idempotency_key":"k","value":3}`), Limits{})
	require.NoError(t, err)
	require.False(t, batch)
	v := 3.0
	require.Equal(t, []Event{{
		Name: "deploy", State: StateStart, Time: time.Date(2026, 1, 15, 12, 27, 22, 0, time.UTC),
		Attributes: map[string]string{"service": "api", "replicas": "3", "ratio": "0.25", "canary": "true"},
		Text:       "t", URL: "https://x.example/1", Source: "ci", IdempotencyKey: "k", Value: &v,
	}}, normalizeTimes(evs))

	evs, batch, err = DecodeJSON([]byte(`{"events":[{"name":"a","state":"start","timestamp":1700000000},
		{"name":"a","state":"stop","timestamp":1700000000123,"start_key":"x"}]}`), Limits{})
	require.NoError(t, err)
	require.True(t, batch)
	require.Len(t, evs, 2)
	require.Equal(t, time.Unix(1700000000, 0).UTC(), evs[0].Time)
	require.Equal(t, time.UnixMilli(1700000000123).UTC(), evs[1].Time)
	require.Equal(t, "x", evs[1].StartKey)
}

func normalizeTimes(evs []Event) []Event {
	for i := range evs {
		evs[i].Time = evs[i].Time.UTC()
	}
	return evs
}

func TestDecodeJSONErrors(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 20) + "1" + strings.Repeat("}", 20)
	cases := []struct{ body, want string }{
		{`{"name":"deploy","state":"start","colour":"red"}`, "colour: unknown field"},
		{`{"events":[{"name":"a","state":"start"},{"name":"b","state":"start","bogus":1}]}`, "events[1].bogus: unknown field"},
		{`{"events":[],"x":1}`, `x: unknown field (a batch has only "events")`},
		{`{"events":[]}`, "events: empty"},
		{`{"name":"a","state":"begin"}`, `state: "begin" is not "start" or "stop"`},
		{`{"name":1}`, "name: not a string"},
		{`{"name":"a","attributes":{"x":{"y":1}}}`, "attributes.x: value must be a string, number or boolean"},
		{`{"name":"a","attributes":[1]}`, "attributes: not a JSON object"},
		{`{"name":"a","timestamp":"2026-01-15T17:57:22"}`, `timestamp: "2026-01-15T17:57:22" has no time zone; use RFC 3339 with Z or an offset such as +05:30`},
		{`{"name":"a","timestamp":"yesterday"}`, `timestamp: "yesterday" is not RFC 3339 (2026-01-02T15:04:05Z) or Unix seconds or milliseconds`},
		{`{"name":"a","timestamp":-5}`, "timestamp: -5 is not a Unix time in seconds or milliseconds"},
		{`{"name":"a","timestamp":true}`, "timestamp: not an RFC 3339 string or a number of Unix seconds or milliseconds"},
		{`{"name":"a","value":"x"}`, "value: not a number"},
		{`{"id":"abc","name":"a"}`, "id: output only, set by the server"},
		{deep, "body: JSON nested deeper than 8 levels"},
		{`[1,2]`, "body: not a JSON object"},
		{`{"name":"a"} {"name":"b"}`, "body: trailing data after the JSON object"},
		{`{"name":`, "body: not a JSON object"},
	}
	for _, tc := range cases {
		_, _, err := DecodeJSON([]byte(tc.body), Limits{})
		require.EqualError(t, err, tc.want, tc.body)
		var fe *FieldError
		require.ErrorAs(t, err, &fe)
	}
	_, _, err := DecodeJSON([]byte(`{"name":"`+strings.Repeat("x", 2<<20)+`"}`), Limits{})
	require.EqualError(t, err, "body: larger than 1048576 bytes")
}

func TestValidate(t *testing.T) {
	ok := func() Event {
		return Event{Name: "deploy", State: StateStart, Attributes: map[string]string{"service": "api"}}
	}
	nan := 0.0
	nan = nan / nan
	cases := []struct {
		mut  func(*Event)
		want string
	}{
		{func(e *Event) { e.Name = "" }, "name: required"},
		{func(e *Event) { e.Name = "deploy now" }, `name: "deploy now" has a character other than letters, digits and _-.:/`},
		{func(e *Event) { e.Name = strings.Repeat("a", 129) }, "name: longer than 128 bytes"},
		{func(e *Event) { e.State = 0 }, `state: required, "start" or "stop"`},
		{func(e *Event) { e.Attributes["service"] = strings.Repeat("x", 4097) }, "attributes.service: value longer than 4096 bytes"},
		{func(e *Event) { e.Attributes["service"] = strings.Repeat("x", 10<<20) }, "attributes.service: value longer than 4096 bytes"},
		{func(e *Event) { e.Attributes["service"] = "" }, "attributes.service: empty value (an empty label value is no label)"},
		{func(e *Event) { e.Attributes["service"] = "\xff" }, "attributes.service: value is not valid UTF-8"},
		{func(e *Event) { e.Attributes["my-key"] = "x" }, "attributes.my-key: key is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"},
		{func(e *Event) { e.Attributes["__name__"] = "x" }, "attributes.__name__: keys starting with __ are reserved"},
		{func(e *Event) { e.Attributes["event_state"] = "x" }, "attributes.event_state: reserved: the event series use this label"},
		{func(e *Event) { e.Attributes[""] = "x" }, "attributes: empty key"},
		{func(e *Event) { e.URL = "ftp://x" }, "url: not an absolute http or https URL"},
		{func(e *Event) { e.URL = "/relative" }, "url: not an absolute http or https URL"},
		{func(e *Event) { e.Text = strings.Repeat("x", 65537) }, "text: longer than 65536 bytes"},
		{func(e *Event) { e.IdempotencyKey = "a\nb" }, `idempotency_key: contains the control character '\n'`},
		{func(e *Event) { e.Value = &nan }, "value: not a finite number"},
		{func(e *Event) { e.StartID = "x" }, "start_id: only allowed on a stop"},
		{func(e *Event) { e.State = StateStop; e.StartID = "x"; e.StartKey = "y" }, "start_key: give start_id or start_key, not both"},
		{func(e *Event) {
			for i := 0; i < 65; i++ {
				e.Attributes["k"+strings.Repeat("x", i)] = "v"
			}
		}, "attributes: 66 attributes, more than 64"},
	}
	for _, tc := range cases {
		e := ok()
		tc.mut(&e)
		err := Validate(&e, Limits{})
		require.EqualError(t, err, tc.want)
	}
	e := ok()
	require.NoError(t, Validate(&e, Limits{}))
}

func TestCheckTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	require.NoError(t, CheckTime("timestamp", now.Add(9*time.Minute), now, 10*time.Minute, time.Hour))
	require.EqualError(t, CheckTime("timestamp", now.Add(24*time.Hour), now, 10*time.Minute, time.Hour),
		"timestamp: 2026-03-02T12:00:00Z is more than 10m0s in the future (limit 10m0s)")
	require.EqualError(t, CheckTime("timestamp", now.Add(-2*time.Hour), now, 10*time.Minute, time.Hour),
		"timestamp: 2026-03-01T10:00:00Z is older than the retention of 1h0m0s")
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-01-02T15:04:05Z":           time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC),
		"2026-01-02T15:04:05.5-02:00":    time.Date(2026, 1, 2, 17, 4, 5, 5e8, time.UTC),
		"1767366245":                     time.Unix(1767366245, 0),
		"1767366245.25":                  time.Unix(1767366245, 25e7),
		"1767366245123":                  time.UnixMilli(1767366245123),
		"  1767366245  ":                 time.Unix(1767366245, 0),
		"2026-01-02T15:04:05.123456789Z": time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC),
	} {
		got, err := ParseTime("t", in)
		require.NoError(t, err, in)
		require.True(t, want.Equal(got), "%s: %s != %s", in, got, want)
	}
}

func TestFingerprintIgnoresOutputFields(t *testing.T) {
	a := Event{Name: "a", State: StateStart, Attributes: map[string]string{"x": "1", "y": "2"}}
	b := a.Clone()
	b.ID, b.ReceivedAt, b.Window = "id", time.Now(), &Window{}
	require.Equal(t, Fingerprint(&a), Fingerprint(&b))
	b.Attributes["y"] = "3"
	require.NotEqual(t, Fingerprint(&a), Fingerprint(&b))
	c := a.Clone()
	c.Time = time.Unix(1, 0)
	require.NotEqual(t, Fingerprint(&a), Fingerprint(&c))
	// Attribute split points matter: {"ab":"c"} differs from {"a":"bc"}.
	d1 := Event{Name: "a", State: StateStart, Attributes: map[string]string{"ab": "c"}}
	d2 := Event{Name: "a", State: StateStart, Attributes: map[string]string{"a": "bc"}}
	require.NotEqual(t, Fingerprint(&d1), Fingerprint(&d2))
}

func TestEventLabels(t *testing.T) {
	e := Event{Name: "deploy", State: StateStop, Attributes: map[string]string{"service": "api", "a": "b"}}
	require.Equal(t, `{__name__="last9_change_events", a="b", event_name="deploy", event_state="stop", service="api"}`, EventLabels(&e).String())
	require.Equal(t, `{__name__="change_event_active", a="b", event_name="deploy", service="api"}`, WindowLabels(MetricActive, e.Name, e.Attributes).String())
	require.Equal(t, 2.0, e.SampleValue())
	e.State = StateStart
	require.Equal(t, 1.0, e.SampleValue())
}

// FuzzDecodeJSON checks that the decoder never panics, and that whatever it
// accepts and validates survives a round trip through JSON.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{
		`{"name":"deploy","state":"start","timestamp":"2026-01-15T17:57:22+05:30","attributes":{"service":"api","n":3,"b":true}}`,
		`{"events":[{"name":"a","state":"start","timestamp":1700000000},{"name":"a","state":"stop","timestamp":1700000000123,"start_key":"x"}]}`,
		`{"name":"a","state":"stop","value":2.5,"url":"https://x.example","text":"\u00e9","idempotency_key":"k"}`,
		`{"name":"a","attributes":{"x":{"y":[1,{"z":null}]}}}`,
		`{"events":[{}]}`, `[]`, `null`, `{"name":"a","timestamp":"1e3"}`, `{"a":"\"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, _, err := DecodeJSON(data, Limits{})
		if err != nil {
			var fe *FieldError
			if !errorsAs(err, &fe) {
				t.Fatalf("error %v is not a FieldError", err)
			}
			return
		}
		for _, e := range evs {
			if Validate(&e, Limits{}) != nil {
				continue
			}
			b, err := json.Marshal(map[string]any{"name": e.Name, "state": e.State.String(), "attributes": e.Attributes, "text": e.Text})
			if err != nil {
				t.Fatal(err)
			}
			again, _, err := DecodeJSON(b, Limits{})
			if err != nil {
				t.Fatalf("re-decode %s: %v", b, err)
			}
			if again[0].Name != e.Name || len(again[0].Attributes) != len(e.Attributes) || again[0].Text != e.Text {
				t.Fatalf("round trip changed %+v into %+v", e, again[0])
			}
		}
	})
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
