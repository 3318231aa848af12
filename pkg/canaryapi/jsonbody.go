package canaryapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
)

// secondsFields are the request's top-level string fields that also take a
// JSON number, as Kayenta's and Prometheus' APIs do: "step": 60 is
// "step": "60" (seconds), "start": 1714564800 is Unix seconds.
var secondsFields = map[string]bool{"step": true, "lookback": true, "baseline_offset": true, "start": true, "end": true}

// requestJSON is the REST request marshaler: grpc-gateway's protojson, as
// strict as before (unknown fields are errors), and readable when the body
// is wrong — a syntax error names its line, column and the field it
// follows, protojson's errors lose their "proto:" prefix, and the fields in
// secondsFields take numbers.
type requestJSON struct{ *runtime.JSONPb }

func (m requestJSON) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("request body: %w", err)
		}
		return m.Unmarshal(b, v)
	})
}

func (m requestJSON) Unmarshal(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return io.EOF // as the gateway's own decoder: an empty body is an empty request
	}
	fixed, err := normalizeRequest(data)
	if err != nil {
		return err
	}
	if err := m.JSONPb.Unmarshal(fixed, v); err != nil {
		return protoJSONError(err)
	}
	return nil
}

// frame is one open object or array while walking the body.
type frame struct {
	obj      bool
	key      string // the current key, in an object
	wantKey  bool
	index    int // the current index, in an array
	topLevel bool
}

// normalizeRequest checks that data is one JSON value, naming the position
// and field of a syntax error, and quotes numbers given to secondsFields.
func normalizeRequest(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*frame
	type span struct{ from, to int64 }
	var quote []span
	// path names the field being read; in an array, the last element read
	// (a syntax error comes after it).
	path := func() string {
		var parts []string
		for i, f := range stack {
			switch {
			case f.obj && f.key != "":
				parts = append(parts, f.key)
			case !f.obj && i == len(stack)-1 && f.index > 0:
				parts = append(parts, fmt.Sprintf("[%d]", f.index-1))
			case !f.obj:
				parts = append(parts, fmt.Sprintf("[%d]", f.index))
			}
		}
		return strings.ReplaceAll(strings.Join(parts, "."), ".[", "[")
	}
	// valueDone moves the enclosing container past a complete value.
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		f := stack[len(stack)-1]
		if f.obj {
			f.wantKey = true
		} else {
			f.index++
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, syntaxError(data, err, path())
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				stack = append(stack, &frame{obj: t == '{', wantKey: t == '{', topLevel: len(stack) == 0})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
			continue
		case string:
			if top != nil && top.obj && top.wantKey {
				top.key, top.wantKey = t, false
				continue
			}
		case json.Number:
			if top != nil && top.obj && top.topLevel && secondsFields[top.key] {
				end := dec.InputOffset()
				quote = append(quote, span{end - int64(len(t)), end})
			}
		}
		valueDone()
	}
	if len(quote) == 0 {
		return data, nil
	}
	out := make([]byte, 0, len(data)+2*len(quote))
	last := int64(0)
	for _, q := range quote {
		out = append(out, data[last:q.from]...)
		out = append(out, '"')
		out = append(out, data[q.from:q.to]...)
		out = append(out, '"')
		last = q.to
	}
	return append(out, data[last:]...), nil
}

// syntaxError turns encoding/json's error into one naming the line, the
// column and the field it follows, with a hint for the most common cause
// (an unescaped quote inside a string, as in "{version="stable"}").
func syntaxError(data []byte, err error, field string) error {
	var se *json.SyntaxError
	offset := int64(-1)
	if errors.As(err, &se) {
		offset = se.Offset
	}
	if offset < 0 {
		return fmt.Errorf("request body: invalid JSON: %v", err)
	}
	line, col := position(data, offset)
	where := ""
	if field != "" {
		where = fmt.Sprintf(" (after %q)", field)
	}
	msg := fmt.Sprintf("request body: invalid JSON at line %d, column %d%s: %v", line, col, where, err)
	if strings.Contains(err.Error(), "after object key:value pair") || strings.Contains(err.Error(), "after array element") {
		if prev := lastNonSpace(data[:min(offset, int64(len(data)))]); prev == '"' {
			msg += `; a double quote inside a string must be escaped: "{version=\"stable\"}"`
		}
	}
	return errors.New(msg)
}

func position(data []byte, offset int64) (line, col int) {
	offset = min(offset, int64(len(data)))
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

func lastNonSpace(b []byte) byte {
	s := bytes.TrimRight(b, " \t\r\n")
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

var protoJSONPos = regexp.MustCompile(`^proto:\s*(?:syntax error )?\(line (\d+):(\d+)\):\s*(.*)$`)

// protoJSONError rewrites protojson's "proto: (line 1:86): invalid value
// for string field step: 60" as "request body at line 1, column 86:
// invalid value for string field step: 60".
func protoJSONError(err error) error {
	msg := strings.ReplaceAll(err.Error(), "\u00a0", " ") // protojson randomizes spaces to discourage matching
	if m := protoJSONPos.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		return fmt.Errorf("request body at line %d, column %d: %s", line, col, m[3])
	}
	return fmt.Errorf("request body: %s", strings.TrimPrefix(msg, "proto: "))
}
