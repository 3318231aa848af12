// Package memlimit sizes the Go heap to the memory limit of the process'
// cgroup, as GOMEMLIMIT would: in a Kubernetes pod with a memory limit the
// garbage collector then works harder as the heap nears the limit, instead
// of the kernel killing the process. It also sets the collector's target
// percent (GOGC) to DefaultGCPercent unless GOGC is set.
package memlimit

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction of the cgroup limit given to the Go runtime; the rest is for
// memory the runtime does not count (Pebble's cgo-free caches are Go
// memory, but thread stacks, mmapped files and fragmentation are not).
const Fraction = 0.9

// unlimited is the cgroup v1 "no limit" (page-rounded MaxInt64) and above.
const unlimited = math.MaxInt64 &^ (1<<12 - 1)

// Limit returns the memory limit of the process' cgroup in bytes, and the
// file it was read from; 0 if there is none. root is "/" except in tests.
// Both cgroup v2 (memory.max, the lowest on the path up to the root) and
// v1 (memory.limit_in_bytes of the memory controller) are read.
func Limit(root string) (int64, string, error) {
	f, err := os.Open(path.Join(root, "proc/self/cgroup"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, "", nil
		}
		return 0, "", err
	}
	defer f.Close()
	var best int64
	var src string
	take := func(file string) error {
		n, ok, err := readLimit(file)
		if err != nil || !ok {
			return err
		}
		if best == 0 || n < best {
			best, src = n, file
		}
		return nil
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		p := path.Clean("/" + parts[2])
		switch {
		case parts[0] == "0" && parts[1] == "":
			// v2: the limit of every cgroup on the path applies.
			for dir := p; ; dir = path.Dir(dir) {
				if err := take(path.Join(root, "sys/fs/cgroup", dir, "memory.max")); err != nil {
					return 0, "", err
				}
				if dir == "/" {
					break
				}
			}
		case hasController(parts[1], "memory"):
			// v1: the cgroup's own directory, or the mount's root when
			// the container sees only its own cgroup there.
			for _, dir := range []string{p, "/"} {
				if err := take(path.Join(root, "sys/fs/cgroup/memory", dir, "memory.limit_in_bytes")); err != nil {
					return 0, "", err
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, "", err
	}
	return best, src, nil
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// readLimit reads a limit file: false if it is missing or says there is no
// limit ("max", or v1's page-rounded MaxInt64).
func readLimit(file string) (int64, bool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return 0, false, nil
		}
		return 0, false, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %q is not a number of bytes", file, s)
	}
	if n <= 0 || n >= unlimited {
		return 0, false, nil
	}
	return n, true, nil
}

// Decision is what Apply did.
type Decision struct {
	// Limit is the Go memory limit set (0: none was set).
	Limit int64
	// CgroupLimit and Source are the cgroup's limit and its file (0 and ""
	// if there is none).
	CgroupLimit int64
	Source      string
	// Reason says why, in words for the log.
	Reason string
}

// Apply sets the Go memory limit to Fraction of the cgroup's limit, unless
// GOMEMLIMIT is set in env (the operator's choice stands) or there is no
// limit. getenv is os.Getenv except in tests; set is debug.SetMemoryLimit.
func Apply(root string, getenv func(string) string, set func(int64) int64) (Decision, error) {
	if v := getenv("GOMEMLIMIT"); v != "" {
		return Decision{Reason: "GOMEMLIMIT=" + v + " is set"}, nil
	}
	n, src, err := Limit(root)
	if err != nil {
		return Decision{}, fmt.Errorf("read the cgroup memory limit: %w", err)
	}
	if n == 0 {
		return Decision{Reason: "no cgroup memory limit"}, nil
	}
	d := Decision{Limit: int64(float64(n) * Fraction), CgroupLimit: n, Source: src}
	d.Reason = fmt.Sprintf("%.0f%% of the cgroup memory limit", Fraction*100)
	if set == nil {
		set = debug.SetMemoryLimit
	}
	set(d.Limit)
	return d, nil
}

// DefaultGCPercent is the garbage collector's target when GOGC is not set:
// 30, VictoriaMetrics' default (app/victoria-metrics/main.go,
// cgroup.SetGOGC(30)). levitated's heap is mostly long-lived (series,
// chunks, postings), so Go's 100 doubled the process for garbage it did
// not have to keep: at 100k series the peak RSS during ingest is 378 MiB
// with 30 against 498–501 with 100. Go's 100 was the default while
// the remote-write receiver's buffers were garbage (30 then cost 22 % more
// ingest CPU); with them pooled, 30 costs what 100 cost before (1.69 CPU-s
// per million samples against 1.69–1.97 in the same hour; bench/RESULTS.md,
// "Memory at 100k series").
const DefaultGCPercent = 30

// ApplyGCPercent sets the garbage collector's target to DefaultGCPercent
// unless GOGC is set in env (the operator's choice stands). It returns the
// percent in effect and why. set is debug.SetGCPercent except in tests.
func ApplyGCPercent(getenv func(string) string, set func(int) int) (int, string) {
	if v := getenv("GOGC"); v != "" {
		return -1, "GOGC=" + v + " is set"
	}
	if set == nil {
		set = debug.SetGCPercent
	}
	set(DefaultGCPercent)
	return DefaultGCPercent, "default (GOGC is not set)"
}
