package storage

import (
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
)

// symbolTable interns the labels of a tenant's series, a label (a name
// and its value) at a time. A series keeps its labels as a short string of
// label ids (memSeries.syms: a uvarint id per label, in label order), ~8
// bytes for peer-bench's seven labels instead of a ~120-byte labels.Labels
// of its own (Prometheus' default stringlabels build copies every name and
// value into each series). A label is held as Prometheus' stringlabels
// encode it (each string preceded by its length), so that the comparison
// of every write's look-up (hashStripe.find) compares a series' labels
// with the write's with one memequal per label and no decoding
// (labelsFormatMatches; else label by label). Labels are built from the
// ids only where a caller needs a labels.Labels (a query's series, an
// error's message); sorting and sharding read the ids.
//
// Ids are counted: a series holds one reference per label. When retention
// removes series (tenantHead.remove), the labels no series holds any more
// are queued; seal gives the queue the reader and holder epochs of the
// removal, and collect frees the ids of a sealed batch once every reader
// and holder that may still read a removed series' ids has finished (a
// reader: rangeHead, the exemplar querier; a holder: an appender, a
// checkpoint). A freed id is reused, so the table holds at most the labels
// of the live series plus those removed within one grace period: it stays
// bounded under churn (TestSymbolTableBoundedUnderChurn). A label taken
// again before its id is freed keeps its id.
type symbolTable struct {
	mu sync.Mutex
	// ids finds a label's id by its encoding; guarded by mu.
	ids map[string]uint32
	// refs counts, by id, the series holding the label; the top bit marks
	// an id queued or sealed for freeing. Guarded by mu.
	refs []uint32
	// free are ids that can be given to a new label; guarded by mu.
	free []uint32
	// queued are ids whose count fell to 0 since the last seal; sealed
	// the batches waiting for their grace. Guarded by mu.
	queued []uint32
	sealed []symbolBatch
	// pages maps ids to encoded labels, read without locks. A slot is
	// written under mu when its id is given out, which is before any
	// series holding the id is published, and again only when the id is
	// reused, after every reader that could read it has finished.
	pages atomic.Pointer[[]*symbolPage]
}

// symbolQueued marks, in refs, an id waiting to be freed. A label is held
// by at most 2^31-1 series (a tenant holds far fewer in memory).
const symbolQueued = 1 << 31

const (
	symbolPageBits = 10
	symbolPageSize = 1 << symbolPageBits
)

type symbolPage [symbolPageSize]string

// slotOf is the slot of id in pages.
func slotOf(pages []*symbolPage, id uint32) *string {
	return &pages[id>>symbolPageBits][id&(symbolPageSize-1)]
}

// symbolBatch is a seal's ids, freed once the oldest reader holds epoch
// readers or a later one and the oldest holder holds holders or a later one.
type symbolBatch struct {
	readers, holders uint64
	ids              []uint32
}

// appendLabelString appends s as stringlabels encodes a name or a value:
// its length in one byte below 255, else 255 and three bytes little-endian.
func appendLabelString(b []byte, s string) []byte {
	if n := len(s); n < 255 {
		b = append(b, byte(n))
	} else {
		b = append(b, 255, byte(n), byte(n>>8), byte(n>>16))
	}
	return append(b, s...)
}

// appendLabel appends l as stringlabels encodes a label: its name, then
// its value.
func appendLabel(b []byte, l labels.Label) []byte {
	return appendLabelString(appendLabelString(b, l.Name), l.Value)
}

// labelString decodes the string appendLabelString wrote at p[i:].
func labelString(p string, i int) (string, int) {
	n := int(p[i])
	i++
	if n == 255 {
		n = int(p[i]) | int(p[i+1])<<8 | int(p[i+2])<<16
		i += 3
	}
	return p[i : i+n], i + n
}

// splitLabel returns the name and value of an encoded label.
func splitLabel(p string) (name, value string) {
	name, i := labelString(p, 0)
	value, _ = labelString(p, i)
	return name, value
}

// labelsFormatMatches tells whether labels.Labels.Bytes gives the labels
// as appendLabelString writes them, one after the other (the stringlabels
// build of this Prometheus version): equal then compares the encoded
// labels with the bytes. Checked once; otherwise equal compares label by
// label.
var labelsFormatMatches = func() bool {
	ls := labels.FromStrings("a", "", "b", strings.Repeat("v", 300), strings.Repeat("n", 70000), "x")
	var want []byte
	ls.Range(func(l labels.Label) {
		want = appendLabel(want, l)
	})
	return string(ls.Bytes(nil)) == string(want) && ls.ByteSize() == uint64(len(want))
}()

// labelsOfData is the labels whose stringlabels encoding is data: a
// labels.Labels of this build is that string alone (labelsFromData checks
// it), and Prometheus offers no constructor from the encoding. It saves a
// query the building of every series' labels label by label.
func labelsOfData(data string) labels.Labels {
	return *(*labels.Labels)(unsafe.Pointer(&data))
}

// labelsFromData tells whether labelsOfData makes labels: a labels.Labels
// has the size of a string, and labels made so from appendLabelString's
// encoding are equal to, and read as, labels built by Prometheus' API.
var labelsFromData = func() bool {
	if !labelsFormatMatches || unsafe.Sizeof(labels.Labels{}) != unsafe.Sizeof("") {
		return false
	}
	want := labels.FromStrings("__name__", "up", "a", "", "b", strings.Repeat("v", 300))
	var data []byte
	want.Range(func(l labels.Label) {
		data = appendLabel(data, l)
	})
	got := labelsOfData(string(data))
	return labels.Equal(got, want) && got.Hash() == want.Hash() && got.Len() == 3 && got.Get("b") == want.Get("b") && got.String() == want.String()
}()

func newSymbolTable() *symbolTable {
	t := &symbolTable{ids: map[string]uint32{}}
	t.pages.Store(&[]*symbolPage{})
	return t
}

// intern returns the encoding of ls, taking a reference to each of its
// labels (labels new to the table are copied: ls may alias a request's
// buffer).
func (t *symbolTable) intern(ls labels.Labels) string {
	var buf [32]byte
	var lb [256]byte
	b := buf[:0]
	t.mu.Lock()
	ls.Range(func(l labels.Label) {
		p := appendLabel(lb[:0], l)
		b = binary.AppendUvarint(b, uint64(t.take(p)))
	})
	t.mu.Unlock()
	return string(b)
}

// take returns the id of the encoded label p, given out if it is new,
// with one more reference. The caller holds mu.
func (t *symbolTable) take(p []byte) uint32 {
	if id, ok := t.ids[string(p)]; ok {
		t.refs[id]++
		return id
	}
	s := string(p)
	var id uint32
	if n := len(t.free); n > 0 {
		id = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		id = uint32(len(t.refs))
		t.refs = append(t.refs, 0)
		pages := *t.pages.Load()
		if int(id>>symbolPageBits) >= len(pages) {
			grown := append(pages[:len(pages):len(pages)], new(symbolPage))
			t.pages.Store(&grown)
		}
	}
	*slotOf(*t.pages.Load(), id) = s
	t.ids[s] = id
	t.refs[id] = 1
	return id
}

// release drops the references of removed series' encodings, queueing
// the ids no series holds any more.
func (t *symbolTable) release(encs []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, enc := range encs {
		for i := 0; i < len(enc); {
			var id uint32
			id, i = uvarintAt(enc, i)
			t.refs[id]--
			if t.refs[id] == 0 {
				t.refs[id] = symbolQueued
				t.queued = append(t.queued, id)
			}
		}
	}
}

// hasQueued reports whether release queued ids since the last seal.
func (t *symbolTable) hasQueued() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queued) > 0
}

// seal gives the queued ids the epochs after which no reader or holder
// can read them: taken (readerEpochs.advance) after the series holding
// them left the registry and the index.
func (t *symbolTable) seal(readers, holders uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queued) == 0 {
		return
	}
	t.sealed = append(t.sealed, symbolBatch{readers: readers, holders: holders, ids: t.queued})
	t.queued = nil
}

// collect frees the ids of the sealed batches whose readers and holders
// have all finished (safeReaders and safeHolders are the oldest epochs
// still held), unless a series took the label again meanwhile. It returns
// the number of ids freed.
func (t *symbolTable) collect(safeReaders, safeHolders uint64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for len(t.sealed) > 0 && t.sealed[0].readers <= safeReaders && t.sealed[0].holders <= safeHolders {
		pages := *t.pages.Load()
		for _, id := range t.sealed[0].ids {
			if t.refs[id] != symbolQueued {
				t.refs[id] &^= symbolQueued // taken again
				continue
			}
			slot := slotOf(pages, id)
			delete(t.ids, *slot)
			*slot = ""
			t.refs[id] = 0
			t.free = append(t.free, id)
			n++
		}
		t.sealed[0] = symbolBatch{}
		t.sealed = t.sealed[1:]
	}
	return n
}

// stats returns the number of labels held and of id slots allocated.
func (t *symbolTable) stats() (held, slots int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ids), len(t.refs)
}

// uvarintAt decodes the uvarint at enc[i:], returning it and the index
// after it. Encodings are made by intern: never malformed.
func uvarintAt(enc string, i int) (uint32, int) {
	c := enc[i]
	if c < 0x80 {
		return uint32(c), i + 1
	}
	x := uint32(c & 0x7f)
	for s := uint(7); ; s += 7 {
		i++
		c = enc[i]
		if c < 0x80 {
			return x | uint32(c)<<s, i + 1
		}
		x |= uint32(c&0x7f) << s
	}
}

func (t *symbolTable) loadPages() []*symbolPage { return *t.pages.Load() }

// labelAt returns the encoded label of the id at enc[i:] and the index
// after it.
func labelAt(pages []*symbolPage, enc string, i int) (string, int) {
	var id uint32
	if c := enc[i]; c < 0x80 {
		id, i = uint32(c), i+1
	} else {
		id, i = uvarintAt(enc, i)
	}
	return *slotOf(pages, id), i
}

// pairAt returns the label at enc[i:] and the index after it.
func pairAt(pages []*symbolPage, enc string, i int) (name, value string, next int) {
	p, next := labelAt(pages, enc, i)
	name, value = splitLabel(p)
	return name, value, next
}

// equal reports whether enc encodes ls, without building labels. It is
// the check of every write's look-up of its series (hashStripe.find):
// with labelsFormatMatches, a memequal per label against ls's bytes.
func (t *symbolTable) equal(enc string, ls labels.Labels) bool {
	pages := t.loadPages()
	var buf [256]byte // most label sets; larger ones go label by label
	if labelsFormatMatches && ls.ByteSize() <= uint64(len(buf)) {
		data := ls.Bytes(buf[:0])
		off := 0
		for i := 0; i < len(enc); {
			var p string
			p, i = labelAt(pages, enc, i)
			if len(data)-off < len(p) || string(data[off:off+len(p)]) != p {
				return false
			}
			off += len(p)
		}
		return off == len(data)
	}
	i, ok := 0, true
	ls.Range(func(l labels.Label) {
		if !ok || i >= len(enc) {
			ok = false
			return
		}
		var name, value string
		name, value, i = pairAt(pages, enc, i)
		ok = name == l.Name && value == l.Value
	})
	return ok && i == len(enc)
}

// compare orders two encodings as labels.Compare orders their labels
// (the sign of its result). Equal ids are equal labels.
func (t *symbolTable) compare(a, b string) int {
	pages := t.loadPages()
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		var x, y uint32
		x, i = uvarintAt(a, i)
		y, j = uvarintAt(b, j)
		if x != y {
			an, av := splitLabel(*slotOf(pages, x))
			bn, bv := splitLabel(*slotOf(pages, y))
			if c := strings.Compare(an, bn); c != 0 {
				return c
			}
			return strings.Compare(av, bv)
		}
	}
	switch {
	case i < len(a):
		return 1
	case j < len(b):
		return -1
	}
	return 0
}

// labels builds the labels of enc (one allocation, of their size). With
// labelsFromData, the labels' encoded strings are copied one after the
// other and the result is the labels; otherwise they are built with b
// (which may be nil).
func (t *symbolTable) labels(enc string, b *labels.ScratchBuilder) labels.Labels {
	pages := t.loadPages()
	if labelsFromData {
		var ps [16]string
		n, size := 0, 0
		for i := 0; i < len(enc) && n < len(ps); n++ {
			ps[n], i = labelAt(pages, enc, i)
			size += len(ps[n])
		}
		if n < len(ps) {
			data := make([]byte, 0, size)
			for _, p := range ps[:n] {
				data = append(data, p...)
			}
			return labelsOfData(unsafe.String(unsafe.SliceData(data), len(data)))
		}
	}
	if b == nil {
		sb := labels.NewScratchBuilder(len(enc))
		b = &sb
	}
	b.Reset()
	for i := 0; i < len(enc); {
		var name, value string
		name, value, i = pairAt(pages, enc, i)
		b.Add(name, value)
	}
	return b.Labels()
}

// pairs appends the labels of enc to dst, their strings the table's.
func (t *symbolTable) pairs(dst []labels.Label, enc string) []labels.Label {
	pages := t.loadPages()
	for i := 0; i < len(enc); {
		var l labels.Label
		l.Name, l.Value, i = pairAt(pages, enc, i)
		dst = append(dst, l)
	}
	return dst
}

// get returns the value of the label name in enc, "" if it has none.
func (t *symbolTable) get(enc, name string) string {
	pages := t.loadPages()
	for i := 0; i < len(enc); {
		var n, v string
		n, v, i = pairAt(pages, enc, i)
		if n == name {
			return v
		}
	}
	return ""
}

// stableHash is labels.StableHash of enc's labels: xxhash of every name
// and value, each followed by 0xff.
func (t *symbolTable) stableHash(enc string) uint64 {
	var buf [1024]byte
	b := buf[:0]
	pages := t.loadPages()
	for i := 0; i < len(enc); {
		var n, v string
		n, v, i = pairAt(pages, enc, i)
		b = append(b, n...)
		b = append(b, 0xff)
		b = append(b, v...)
		b = append(b, 0xff)
	}
	return xxhash.Sum64(b)
}

// appendRecordLabels appends enc's labels as encodeLabels writes them.
func (t *symbolTable) appendRecordLabels(b []byte, enc string) []byte {
	n := 0
	for i := 0; i < len(enc); n++ {
		_, i = uvarintAt(enc, i)
	}
	b = binary.AppendUvarint(b, uint64(n))
	pages := t.loadPages()
	for i := 0; i < len(enc); {
		var name, value string
		name, value, i = pairAt(pages, enc, i)
		b = appendString(b, name)
		b = appendString(b, value)
	}
	return b
}
