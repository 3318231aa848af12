package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DecodeJSON reads the body of POST /api/v1/events: one event object, or
// {"events":[…]}. It is strict: unknown fields, fields given twice, values
// of the wrong type, strings and keys that are not valid UTF-8 and JSON
// nested deeper than l.MaxJSONDepth are errors naming the field.
// batch reports whether the body was the {"events":[…]} form. The events
// are not validated (see Validate); a zero Time means "when received".
func DecodeJSON(data []byte, l Limits) (evs []Event, batch bool, err error) {
	l = l.EnsureDefaults()
	if len(data) > l.MaxRequestBodySize {
		return nil, false, &FieldError{Field: "body", Rule: fmt.Sprintf("larger than %d bytes", l.MaxRequestBodySize)}
	}
	if err := CheckJSONDepth(data, l.MaxJSONDepth); err != nil {
		return nil, false, err
	}
	obj, err := decodeObject(data, "body")
	if err != nil {
		return nil, false, err
	}
	raw, ok := obj["events"]
	if !ok {
		e, err := decodeEvent(obj)
		if err != nil {
			return nil, false, err
		}
		return []Event{e}, false, nil
	}
	for k := range obj {
		if k != "events" {
			return nil, true, &FieldError{Field: k, Rule: `unknown field (a batch has only "events")`}
		}
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, true, &FieldError{Field: "events", Rule: "not an array of event objects"}
	}
	if len(items) == 0 {
		return nil, true, &FieldError{Field: "events", Rule: "empty"}
	}
	if len(items) > l.MaxBatch {
		return nil, true, &FieldError{Field: "events", Rule: fmt.Sprintf("%d events, more than %d", len(items), l.MaxBatch)}
	}
	evs = make([]Event, 0, len(items))
	for i, it := range items {
		prefix := fmt.Sprintf("events[%d]", i)
		o, err := decodeObject(it, prefix)
		if err != nil {
			return nil, true, err
		}
		e, err := decodeEvent(o)
		if err != nil {
			return nil, true, WithPrefix(prefix, err)
		}
		evs = append(evs, e)
	}
	return evs, true, nil
}

// decodeObject reads one JSON object strictly: a key given twice, or a key
// that is not valid UTF-8, is an error naming it (encoding/json would keep
// the last value, and replace invalid UTF-8 with U+FFFD). Values are kept
// raw, byte for byte. field names the object ("body" for the top level);
// keys are named field.key, or key at the top level.
func decodeObject(data []byte, field string) (map[string]json.RawMessage, error) {
	name := func(k string) string {
		if field == "body" {
			return k
		}
		return field + "." + k
	}
	notObject := func(err error) error {
		if se, ok := err.(*json.SyntaxError); ok {
			return &FieldError{Field: field, Rule: fmt.Sprintf("invalid JSON at offset %d: %v", se.Offset, se)}
		}
		return &FieldError{Field: field, Rule: "not a JSON object"}
	}
	d := json.NewDecoder(bytes.NewReader(data))
	tok, err := d.Token()
	if err != nil {
		return nil, notObject(err)
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '{' {
		return nil, notObject(nil)
	}
	obj := map[string]json.RawMessage{}
	for d.More() {
		before := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			return nil, notObject(err)
		}
		k, ok := tok.(string)
		if !ok {
			return nil, notObject(nil)
		}
		if !utf8.Valid(data[before:d.InputOffset()]) {
			return nil, &FieldError{Field: name(k), Rule: "key is not valid UTF-8"}
		}
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return nil, notObject(err)
		}
		if _, dup := obj[k]; dup {
			return nil, &FieldError{Field: name(k), Rule: "given twice"}
		}
		obj[k] = raw
	}
	if _, err := d.Token(); err != nil { // the closing brace
		return nil, notObject(err)
	}
	if d.More() {
		return nil, &FieldError{Field: field, Rule: "trailing data after the JSON object"}
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, &FieldError{Field: field, Rule: "trailing data after the JSON object"}
	}
	return obj, nil
}

// outputOnly are fields that the API returns but that a client may not set.
var outputOnly = map[string]bool{"id": true, "received_at": true, "window": true}

func decodeEvent(obj map[string]json.RawMessage) (Event, error) {
	var e Event
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		raw := obj[k]
		if isNull(raw) {
			continue
		}
		var err error
		switch k {
		case "name":
			e.Name, err = decodeString(k, raw)
		case "state":
			var s string
			if s, err = decodeString(k, raw); err == nil {
				e.State, err = ParseState(s)
			}
		case "timestamp":
			e.Time, err = ParseJSONTime(k, raw)
		case "attributes":
			e.Attributes, err = DecodeAttributes(raw, false)
		case "text":
			e.Text, err = decodeString(k, raw)
		case "url":
			e.URL, err = decodeString(k, raw)
		case "source":
			e.Source, err = decodeString(k, raw)
		case "idempotency_key":
			e.IdempotencyKey, err = decodeString(k, raw)
		case "start_id":
			e.StartID, err = decodeString(k, raw)
		case "start_key":
			e.StartKey, err = decodeString(k, raw)
		case "value":
			var v float64
			if err = json.Unmarshal(raw, &v); err != nil {
				err = &FieldError{Field: k, Rule: "not a number"}
			} else {
				e.Value = &v
			}
		default:
			if outputOnly[k] {
				return e, &FieldError{Field: k, Rule: "output only, set by the server"}
			}
			return e, &FieldError{Field: k, Rule: "unknown field"}
		}
		if err != nil {
			return e, err
		}
	}
	return e, nil
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

func decodeString(field string, raw json.RawMessage) (string, error) {
	if !utf8.Valid(raw) {
		return "", &FieldError{Field: field, Rule: "not valid UTF-8"}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &FieldError{Field: field, Rule: "not a string"}
	}
	return s, nil
}

// DecodeAttributes reads a JSON object of attributes. Strings are kept,
// numbers are rendered as written and booleans as "true"/"false". With
// lenient, null values are dropped and objects and arrays are kept as their
// compact JSON text; otherwise they are errors naming the attribute.
func DecodeAttributes(raw json.RawMessage, lenient bool) (map[string]string, error) {
	obj, err := decodeObject(raw, "attributes")
	if err != nil {
		return nil, err
	}
	if len(obj) == 0 {
		return nil, nil
	}
	attrs := make(map[string]string, len(obj))
	for k, v := range obj {
		if !utf8.Valid(v) {
			return nil, &FieldError{Field: "attributes." + k, Rule: "value is not valid UTF-8"}
		}
		s, err := ScalarString(v)
		if err != nil {
			if !lenient {
				return nil, &FieldError{Field: "attributes." + k, Rule: err.Error()}
			}
			if isNull(v) {
				continue
			}
			var buf bytes.Buffer
			if json.Compact(&buf, v) != nil {
				continue
			}
			s = buf.String()
		}
		attrs[k] = s
	}
	return attrs, nil
}

// InvalidUTF8 reports the first field of a JSON body (as a path: "text",
// "tags[2]", "data.x") whose key or string is not valid UTF-8, for
// decoders that read into structs (encoding/json replaces invalid UTF-8
// with U+FFFD silently); "" if data is valid UTF-8.
func InvalidUTF8(data []byte) string {
	if utf8.Valid(data) {
		return ""
	}
	var walk func(raw []byte, path string) string
	walk = func(raw []byte, path string) string {
		if utf8.Valid(raw) {
			return ""
		}
		raw = bytes.TrimSpace(raw)
		join := func(k string) string {
			if path == "" {
				return k
			}
			return path + "." + k
		}
		switch {
		case len(raw) > 0 && raw[0] == '{':
			d := json.NewDecoder(bytes.NewReader(raw))
			if _, err := d.Token(); err != nil {
				return path
			}
			for d.More() {
				before := d.InputOffset()
				tok, err := d.Token()
				if err != nil {
					return path
				}
				k, _ := tok.(string)
				if !utf8.Valid(raw[before:d.InputOffset()]) {
					return join(k)
				}
				var v json.RawMessage
				if err := d.Decode(&v); err != nil {
					return path
				}
				if f := walk(v, join(k)); f != "" {
					return f
				}
			}
		case len(raw) > 0 && raw[0] == '[':
			var items []json.RawMessage
			if json.Unmarshal(raw, &items) != nil {
				return path
			}
			for i, it := range items {
				if f := walk(it, fmt.Sprintf("%s[%d]", path, i)); f != "" {
					return f
				}
			}
		}
		if path == "" {
			return "body"
		}
		return path
	}
	return walk(data, "")
}

// ScalarString renders a JSON string, number or boolean as a string.
func ScalarString(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", fmt.Errorf("value must be a string, number or boolean")
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("invalid string")
		}
		return s, nil
	case c == 't' || c == 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return "", fmt.Errorf("value must be a string, number or boolean")
		}
		return strconv.FormatBool(b), nil
	case c == '-' || c >= '0' && c <= '9':
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", fmt.Errorf("invalid number")
		}
		return n.String(), nil
	}
	return "", fmt.Errorf("value must be a string, number or boolean")
}

// ParseJSONTime reads a timestamp given as a JSON string (RFC 3339 with a
// zone, or digits of Unix seconds/milliseconds) or a JSON number of Unix
// seconds or milliseconds (see ParseTime).
func ParseJSONTime(field string, raw json.RawMessage) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, &FieldError{Field: field, Rule: "invalid string"}
		}
		return ParseTime(field, s)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return time.Time{}, &FieldError{Field: field, Rule: "not an RFC 3339 string or a number of Unix seconds or milliseconds"}
	}
	return ParseTime(field, n.String())
}

// unixMillisThreshold separates Unix seconds from milliseconds: 1e11
// seconds is the year 5138, 1e11 milliseconds is March 1973.
const unixMillisThreshold = 1e11

// ParseTime reads a timestamp: RFC 3339 with a zone ("2026-01-02T15:04:05Z",
// "…+05:30"), or a number of Unix seconds (below 1e11, fractions allowed) or
// milliseconds (1e11 and above). A time without a zone is an error: it is
// ambiguous.
func ParseTime(field, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, &FieldError{Field: field, Rule: "empty"}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e15 {
			return time.Time{}, &FieldError{Field: field, Rule: fmt.Sprintf("%s is not a Unix time in seconds or milliseconds", s)}
		}
		if f >= unixMillisThreshold {
			ms := math.Round(f)
			return time.UnixMilli(int64(ms)).UTC(), nil
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02"} {
		if _, err2 := time.Parse(layout, s); err2 == nil {
			return time.Time{}, &FieldError{Field: field, Rule: fmt.Sprintf("%q has no time zone; use RFC 3339 with Z or an offset such as +05:30", s)}
		}
	}
	return time.Time{}, &FieldError{Field: field, Rule: fmt.Sprintf("%q is not RFC 3339 (2026-01-02T15:04:05Z) or Unix seconds or milliseconds", s)}
}

// CheckJSONDepth returns an error if data nests arrays and objects deeper
// than max. It only counts brackets outside strings, so it is linear and
// does not allocate; malformed JSON is left to the decoder.
func CheckJSONDepth(data []byte, max int) error {
	depth := 0
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				return &FieldError{Field: "body", Rule: fmt.Sprintf("JSON nested deeper than %d levels", max)}
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}
