// Package integrity verifies the files of a Pebble data directory without
// changing them: the checksum of every record of the current MANIFEST and
// of every write-ahead log, and of every block of every table, read with
// Pebble's own readers (the ones `pebble manifest check`, `pebble wal dump`
// and `pebble sstable check` use), then a read-only open of the whole
// store that reads every key through the LSM.
//
// levitated runs ScanLogs before every start, so that a corrupt MANIFEST
// or write-ahead log refuses with one line naming the file, and a torn
// last write-ahead log (a write cut off by a crash or power loss) is
// logged with what was recovered and what was dropped; `levitated check`
// runs Check and prints the same findings.
package integrity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/batchrepr"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/wal"
)

// Severity says whether a finding keeps the store from starting.
type Severity int

const (
	// Warning: the store starts; something unacknowledged may have been
	// dropped (a torn tail).
	Warning Severity = iota + 1
	// Problem: the file is corrupt or missing; levitated refuses to start.
	Problem
)

func (s Severity) String() string {
	if s == Problem {
		return "PROBLEM"
	}
	return "WARNING"
}

// Finding is one thing found wrong with one file.
type Finding struct {
	Severity Severity
	Path     string
	// What is one line: what is wrong, with the counts.
	What string
	// Remedy is what the operator does about it.
	Remedy string
}

// Line is the finding on one line, as levitated logs and prints it.
func (f Finding) Line() string {
	return fmt.Sprintf("%s: %s: %s (%s)", f.Severity, f.Path, f.What, f.Remedy)
}

// Error makes a Problem usable as an error.
func (f Finding) Error() string { return f.Line() }

// LogStats are the counts of one write-ahead log or MANIFEST read.
type LogStats struct {
	Path string
	// Records are whole records read (batches of a write-ahead log,
	// version edits of a MANIFEST); Keys the keys of the batches.
	Records int
	Keys    int64
	// GoodBytes is where the last whole record ends; Size the file's size.
	GoodBytes int64
	Size      int64
	// Err is the error that ended reading, nil at a clean end.
	Err error
}

// Report is what Check or ScanLogs found.
type Report struct {
	Dir      string
	Manifest *LogStats
	WALs     []LogStats
	// Tables is the number of tables whose every block checksum was
	// verified, TableBlocks... their bytes.
	Tables     int
	TableBytes int64
	// Keys is the number of live keys read through a read-only open; -1
	// when the open was not tried.
	Keys     int64
	Findings []Finding
}

// Problems returns the findings that keep the store from starting.
func (r *Report) Problems() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Severity == Problem {
			out = append(out, f)
		}
	}
	return out
}

// Err returns the first problem as an error, or nil.
func (r *Report) Err() error {
	if p := r.Problems(); len(p) > 0 {
		return p[0]
	}
	return nil
}

func (r *Report) add(sev Severity, path, what, remedy string) {
	r.Findings = append(r.Findings, Finding{Severity: sev, Path: path, What: what, Remedy: remedy})
}

// restore is the remedy of a corrupt file that nothing can repair.
func restore(dir string) string {
	return "restore " + dir + " from a backup (levitated backup; docs/operations.md)"
}

// pebbleFileRE matches the names of Pebble's tables, logs and MANIFESTs.
var pebbleFileRE = regexp.MustCompile(`^(\d+\.(sst|log|blob)|\d+-\d+\.log|MANIFEST-\d+)$`)

// ScanLogs reads the current MANIFEST and every write-ahead log of dir
// with Pebble's record readers, as Pebble's open does, and reports
// corruption (a Problem) and a torn tail of the last log (a Warning with
// the counts). It reads nothing else and changes nothing. A directory
// without a store is an empty report.
func ScanLogs(fs vfs.FS, dir string) (*Report, error) {
	r := &Report{Dir: dir, Keys: -1}
	if fs == nil {
		fs = vfs.Default
	}
	if _, err := fs.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	desc, err := pebble.Peek(dir, fs)
	if err != nil {
		r.add(Problem, dir, "cannot find the current MANIFEST: "+oneLine(err), restore(dir))
		return r, nil
	}
	if !desc.Exists {
		for _, n := range names {
			if pebbleFileRE.MatchString(n) {
				r.add(Problem, dir, "holds store files ("+n+") but no current MANIFEST marker", restore(dir))
				return r, nil
			}
		}
		return r, nil
	}
	r.scanManifest(fs, desc.ManifestFilename)
	logs, err := wal.Scan(wal.Dir{FS: fs, Dirname: dir})
	if err != nil {
		return nil, fmt.Errorf("list write-ahead logs of %s: %w", dir, err)
	}
	for i, ll := range logs {
		r.scanWAL(fs, ll, i == len(logs)-1)
	}
	return r, nil
}

func (r *Report) scanManifest(fs vfs.FS, path string) {
	st := LogStats{Path: path}
	defer func() { r.Manifest = &st }()
	f, err := fs.Open(path)
	if err != nil {
		st.Err = err
		r.add(Problem, path, "cannot open the current MANIFEST: "+oneLine(err), restore(r.Dir))
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		st.Size = fi.Size()
	}
	rr := record.NewReader(f, 0)
	for {
		st.GoodBytes = rr.Offset()
		rec, err := rr.Next()
		if err == nil {
			_, err = io.Copy(io.Discard, rec)
		}
		if errors.Is(err, io.EOF) {
			st.GoodBytes = rr.Offset()
			break
		}
		if err != nil {
			st.Err = err
			break
		}
		st.Records++
	}
	switch {
	case st.Err == nil && st.Records == 0:
		r.add(Problem, path, "the MANIFEST holds no version edit", restore(r.Dir))
	case st.Err == nil:
	case errors.Is(st.Err, record.ErrUnexpectedEOF) && st.Records > 0:
		// Pebble syncs each edit; a torn last edit is a crash while one
		// was written, and Pebble ignores it.
		r.add(Warning, path, fmt.Sprintf("the MANIFEST ends in a torn record at byte %d of %d: %d version edits read, the last one, cut off, is ignored",
			st.GoodBytes, st.Size, st.Records), "nothing to do: it was never in force")
	default:
		r.add(Problem, path, fmt.Sprintf("the MANIFEST is corrupt at byte %d of %d (after %d whole version edits): %s",
			st.GoodBytes, st.Size, st.Records, oneLine(st.Err)), restore(r.Dir))
	}
}

func (r *Report) scanWAL(fs vfs.FS, ll wal.LogicalLog, last bool) {
	_, path := ll.SegmentLocation(ll.NumSegments() - 1)
	st := LogStats{Path: path}
	if sz, err := ll.PhysicalSize(); err == nil {
		st.Size = int64(sz)
	}
	rr := ll.OpenForRead()
	defer rr.Close()
	var buf bytes.Buffer
	for {
		rec, off, err := rr.NextRecord()
		st.GoodBytes = off.Physical + off.PreviousFilesBytes
		if err == nil {
			buf.Reset()
			_, err = io.Copy(&buf, rec)
		}
		if errors.Is(err, io.EOF) {
			st.GoodBytes = st.Size
			break
		}
		if err != nil {
			st.Err = err
			break
		}
		h, ok := batchrepr.ReadHeader(buf.Bytes())
		if !ok {
			st.Err = errors.New("a record too short to be a batch")
			break
		}
		st.Records++
		st.Keys += int64(h.Count)
	}
	r.WALs = append(r.WALs, st)
	switch {
	case st.Err == nil:
	case last && errors.Is(st.Err, record.ErrUnexpectedEOF):
		r.add(Warning, path, fmt.Sprintf("the last write-ahead log ends in a torn record at byte %d of %d: %d batches (%d keys) recovered from it, the %d bytes after the last whole batch dropped",
			st.GoodBytes, st.Size, st.Records, st.Keys, st.Size-st.GoodBytes),
			"what a crash or power loss leaves: a write cut off before it was synced, so never acknowledged; if the disk lost synced data instead, restore from a backup")
	default:
		what := "corrupt"
		if !last {
			what = "unreadable although a later log follows it"
		}
		r.add(Problem, path, fmt.Sprintf("write-ahead log %s at byte %d of %d (after %d whole batches, %d keys): %s",
			what, st.GoodBytes, st.Size, st.Records, st.Keys, oneLine(st.Err)),
			fmt.Sprintf("%s; or, to start with what is readable, truncate the file to %d bytes (truncate -s %d %s), losing the %d bytes after",
				restore(r.Dir), st.GoodBytes, st.GoodBytes, path, st.Size-st.GoodBytes))
	}
}

// Check runs ScanLogs, verifies the checksum of every block of every table
// (.sst) in dir, and, if all that is sound, opens the store read-only and
// reads every live key through the LSM, which also finds tables the
// MANIFEST names but that are missing. It changes nothing in dir. It
// refuses to check the directory of a running store (its files change
// under the check): check a stopped store or a backup.
func Check(ctx context.Context, dir string) (*Report, error) {
	fs := readOnlyFS{vfs.Default}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("check %s: not a directory", dir)
	}
	lock, err := pebble.LockDirectory(dir, fs)
	if err != nil {
		return nil, fmt.Errorf("check %s: a running levitated holds it (%v): stop it, or check a backup (levitated backup)", dir, oneLine(err))
	}
	defer lock.Close()
	r, err := ScanLogs(fs, dir)
	if err != nil {
		return nil, err
	}
	if r.Manifest == nil && len(r.Problems()) == 0 {
		r.add(Problem, dir, "holds no store (no MANIFEST): nothing was checked", "give the --data-dir of a levitated store or of a backup")
		return r, nil
	}
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		switch {
		case !pebbleFileRE.MatchString(n):
		case strings.HasSuffix(n, ".sst"):
			r.checkTable(ctx, fs, fs.PathJoin(dir, n))
		case strings.HasSuffix(n, ".blob"):
			r.add(Warning, fs.PathJoin(dir, n), "a blob file, which this check does not read", "report it: levitated does not write blob files")
		}
	}
	if len(r.Problems()) == 0 && r.Manifest != nil {
		r.readAll(ctx, fs, lock)
	}
	return r, nil
}

func (r *Report) checkTable(ctx context.Context, fs vfs.FS, path string) {
	f, err := fs.Open(path)
	if err != nil {
		r.add(Problem, path, "cannot open the table: "+oneLine(err), restore(r.Dir))
		return
	}
	readable, err := sstable.NewSimpleReadable(f)
	if err != nil {
		_ = f.Close()
		r.add(Problem, path, "cannot read the table: "+oneLine(err), restore(r.Dir))
		return
	}
	po := &pebble.Options{}
	po.EnsureDefaults()
	o := po.MakeReaderOptions()
	t, err := sstable.NewReader(ctx, readable, o)
	if err != nil {
		_ = readable.Close()
		r.add(Problem, path, "table corrupt: "+oneLine(err), restore(r.Dir))
		return
	}
	defer t.Close()
	if err := t.ValidateBlockChecksums(); err != nil {
		// The reader does not know the file's number; the path names it.
		r.add(Problem, path, "table corrupt: "+strings.Replace(oneLine(err), "file 000000: ", "", 1), restore(r.Dir))
		return
	}
	r.Tables++
	if fi, err := fs.Stat(path); err == nil {
		r.TableBytes += fi.Size()
	}
}

// readAll opens the store read-only, as levitated's start would (the
// MANIFEST's tables, the write-ahead logs replayed into memory) and reads
// every key.
func (r *Report) readAll(ctx context.Context, fs vfs.FS, lock *pebble.Lock) {
	var corrupt []pebble.DataCorruptionInfo
	opts := &pebble.Options{
		FS:       fs,
		ReadOnly: true,
		Lock:     lock,
		Logger:   quietLogger{},
		EventListener: &pebble.EventListener{
			DataCorruption: func(info pebble.DataCorruptionInfo) { corrupt = append(corrupt, info) },
		},
	}
	db, err := pebble.Open(r.Dir, opts)
	if err != nil {
		r.add(Problem, r.Dir, "Pebble cannot open the store: "+oneLine(err), restore(r.Dir))
		return
	}
	defer db.Close()
	it, err := db.NewIterWithContext(ctx, nil)
	if err != nil {
		r.add(Problem, r.Dir, "Pebble cannot read the store: "+oneLine(err), restore(r.Dir))
		return
	}
	var n int64
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		path := r.Dir
		if len(corrupt) > 0 {
			path = corrupt[0].Path
		}
		r.add(Problem, path, fmt.Sprintf("reading every key failed after %d keys: %s", n, oneLine(err)), restore(r.Dir))
		return
	}
	r.Keys = n
}

// quietLogger drops Pebble's logs; a fatal one becomes a panic of the
// calling goroutine (in a read-only open, only the checker's).
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// Summary is the report's one-line count of what was read.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", r.Dir)
	if r.Manifest != nil {
		fmt.Fprintf(&b, "MANIFEST %s (%d version edits), ", filepath.Base(r.Manifest.Path), r.Manifest.Records)
	}
	batches, keys := 0, int64(0)
	for _, w := range r.WALs {
		batches += w.Records
		keys += w.Keys
	}
	fmt.Fprintf(&b, "%d write-ahead logs (%d batches, %d keys), %d tables (%d bytes) checksums verified", len(r.WALs), batches, keys, r.Tables, r.TableBytes)
	if r.Keys >= 0 {
		fmt.Fprintf(&b, ", %d live keys read", r.Keys)
	}
	problems := len(r.Problems())
	fmt.Fprintf(&b, "; %d problems, %d warnings", problems, len(r.Findings)-problems)
	return b.String()
}

// oneLine is the first line of an error: Pebble's errors print their
// details and stacks on more.
func oneLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
