package events

import (
	"fmt"
	"math"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits bound the size of an event. The zero value of a field means the
// default (see DefaultLimits).
type Limits struct {
	MaxNameBytes       int // default 128
	MaxAttributes      int // default 64
	MaxKeyBytes        int // default 128
	MaxValueBytes      int // default 4096
	MaxTextBytes       int // default 65536
	MaxURLBytes        int // default 2048
	MaxSourceBytes     int // default 256
	MaxIdempotencyKey  int // default 256
	MaxBatch           int // default 1000 events per request
	MaxFuture          time.Duration
	MaxJSONDepth       int // default 8
	MaxRequestBodySize int // default 1 MiB
}

// DefaultLimits returns the limits levitated applies by default.
func DefaultLimits() Limits {
	return Limits{
		MaxNameBytes:       128,
		MaxAttributes:      64,
		MaxKeyBytes:        128,
		MaxValueBytes:      4096,
		MaxTextBytes:       65536,
		MaxURLBytes:        2048,
		MaxSourceBytes:     256,
		MaxIdempotencyKey:  256,
		MaxBatch:           1000,
		MaxFuture:          10 * time.Minute,
		MaxJSONDepth:       8,
		MaxRequestBodySize: 1 << 20,
	}
}

// EnsureDefaults fills zero fields with DefaultLimits.
func (l Limits) EnsureDefaults() Limits {
	d := DefaultLimits()
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.MaxNameBytes, d.MaxNameBytes)
	set(&l.MaxAttributes, d.MaxAttributes)
	set(&l.MaxKeyBytes, d.MaxKeyBytes)
	set(&l.MaxValueBytes, d.MaxValueBytes)
	set(&l.MaxTextBytes, d.MaxTextBytes)
	set(&l.MaxURLBytes, d.MaxURLBytes)
	set(&l.MaxSourceBytes, d.MaxSourceBytes)
	set(&l.MaxIdempotencyKey, d.MaxIdempotencyKey)
	set(&l.MaxBatch, d.MaxBatch)
	set(&l.MaxJSONDepth, d.MaxJSONDepth)
	set(&l.MaxRequestBodySize, d.MaxRequestBodySize)
	if l.MaxFuture <= 0 {
		l.MaxFuture = d.MaxFuture
	}
	return l
}

// Label names an attribute may not use, because the event series use them.
const (
	LabelEventName  = "event_name"
	LabelEventState = "event_state"
)

// Validate checks the static rules of an event (everything but its time
// against the clock; see CheckTime). The error is a *FieldError naming the
// first field that breaks a rule. Output-only fields are ignored.
func Validate(e *Event, l Limits) error {
	l = l.EnsureDefaults()
	if err := validateName(e.Name, l); err != nil {
		return err
	}
	if e.State != StateStart && e.State != StateStop {
		return &FieldError{Field: "state", Rule: `required, "start" or "stop"`}
	}
	if err := ValidateAttributes(e.Attributes, l); err != nil {
		return err
	}
	if len(e.Text) > l.MaxTextBytes {
		return &FieldError{Field: "text", Rule: fmt.Sprintf("longer than %d bytes", l.MaxTextBytes)}
	}
	if !utf8.ValidString(e.Text) {
		return &FieldError{Field: "text", Rule: "not valid UTF-8"}
	}
	if e.URL != "" {
		if len(e.URL) > l.MaxURLBytes {
			return &FieldError{Field: "url", Rule: fmt.Sprintf("longer than %d bytes", l.MaxURLBytes)}
		}
		u, err := url.Parse(e.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &FieldError{Field: "url", Rule: "not an absolute http or https URL"}
		}
	}
	if err := validatePrintable("source", e.Source, l.MaxSourceBytes); err != nil {
		return err
	}
	if err := validatePrintable("idempotency_key", e.IdempotencyKey, l.MaxIdempotencyKey); err != nil {
		return err
	}
	if e.Value != nil && (math.IsNaN(*e.Value) || math.IsInf(*e.Value, 0)) {
		return &FieldError{Field: "value", Rule: "not a finite number"}
	}
	if e.State == StateStart {
		if e.StartID != "" {
			return &FieldError{Field: "start_id", Rule: "only allowed on a stop"}
		}
		if e.StartKey != "" {
			return &FieldError{Field: "start_key", Rule: "only allowed on a stop"}
		}
	}
	if e.StartID != "" && e.StartKey != "" {
		return &FieldError{Field: "start_key", Rule: "give start_id or start_key, not both"}
	}
	if err := validatePrintable("start_id", e.StartID, 64); err != nil {
		return err
	}
	return validatePrintable("start_key", e.StartKey, l.MaxIdempotencyKey)
}

func validateName(name string, l Limits) error {
	if name == "" {
		return &FieldError{Field: "name", Rule: "required"}
	}
	if len(name) > l.MaxNameBytes {
		return &FieldError{Field: "name", Rule: fmt.Sprintf("longer than %d bytes", l.MaxNameBytes)}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.:/", c) >= 0) {
			return &FieldError{Field: "name", Rule: fmt.Sprintf("%q has a character other than letters, digits and _-.:/", name)}
		}
	}
	return nil
}

// ValidateAttributes checks attribute keys and values.
func ValidateAttributes(attrs map[string]string, l Limits) error {
	l = l.EnsureDefaults()
	if len(attrs) > l.MaxAttributes {
		return &FieldError{Field: "attributes", Rule: fmt.Sprintf("%d attributes, more than %d", len(attrs), l.MaxAttributes)}
	}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same field every time
	for _, k := range keys {
		if err := ValidateAttributeKey(k, l); err != nil {
			return err
		}
		v := attrs[k]
		f := "attributes." + k
		switch {
		case v == "":
			return &FieldError{Field: f, Rule: "empty value (an empty label value is no label)"}
		case len(v) > l.MaxValueBytes:
			return &FieldError{Field: f, Rule: fmt.Sprintf("value longer than %d bytes", l.MaxValueBytes)}
		case !utf8.ValidString(v):
			return &FieldError{Field: f, Rule: "value is not valid UTF-8"}
		}
	}
	return nil
}

// ValidateAttributeKey checks that k can be a label of the event series.
func ValidateAttributeKey(k string, l Limits) error {
	l = l.EnsureDefaults()
	f := "attributes." + k
	if k == "" {
		return &FieldError{Field: "attributes", Rule: "empty key"}
	}
	if len(k) > l.MaxKeyBytes {
		return &FieldError{Field: "attributes." + k[:l.MaxKeyBytes] + "…", Rule: fmt.Sprintf("key longer than %d bytes", l.MaxKeyBytes)}
	}
	if !IsLabelName(k) {
		return &FieldError{Field: f, Rule: "key is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"}
	}
	if strings.HasPrefix(k, "__") {
		return &FieldError{Field: f, Rule: "keys starting with __ are reserved"}
	}
	if k == LabelEventName || k == LabelEventState {
		return &FieldError{Field: f, Rule: "reserved: the event series use this label"}
	}
	return nil
}

// IsLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]*.
func IsLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func validatePrintable(field, s string, max int) error {
	if len(s) > max {
		return &FieldError{Field: field, Rule: fmt.Sprintf("longer than %d bytes", max)}
	}
	if !utf8.ValidString(s) {
		return &FieldError{Field: field, Rule: "not valid UTF-8"}
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return &FieldError{Field: field, Rule: fmt.Sprintf("contains the control character %q", r)}
		}
	}
	return nil
}

// CheckTime checks t against the clock: no more than maxFuture after now,
// and not before now-retention (when retention > 0).
func CheckTime(field string, t, now time.Time, maxFuture, retention time.Duration) error {
	if t.After(now.Add(maxFuture)) {
		return &FieldError{Field: field, Rule: fmt.Sprintf("%s is more than %s in the future (limit %s)",
			t.UTC().Format(time.RFC3339Nano), maxFuture, maxFuture)}
	}
	if retention > 0 && t.Before(now.Add(-retention)) {
		return &FieldError{Field: field, Rule: fmt.Sprintf("%s is older than the retention of %s",
			t.UTC().Format(time.RFC3339Nano), retention)}
	}
	return nil
}
