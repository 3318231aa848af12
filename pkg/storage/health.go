package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrUnavailable matches (errors.Is) every error of a write refused because
// the store cannot write to its disk: the write was not made durable and may
// be retried. The error is a *FaultError.
var ErrUnavailable = errors.New("storage: unavailable")

// FaultError says why the store cannot write: the operation on a file that
// failed and the operating system's error. Fatal faults (a failed fsync, an
// I/O error, corruption) need a restart; the others (a full disk, a lost
// permission) clear by themselves once the cause is fixed.
type FaultError struct {
	Op    string // create, write, sync, rename, ...
	Path  string
	Err   error
	Fatal bool
	// Startup is set for a fault met while opening the store.
	Startup bool
}

func (e *FaultError) Error() string {
	what := "storage cannot write"
	if e.Fatal {
		what = "storage failed"
	}
	target := e.Op
	if e.Path != "" {
		target += " " + e.Path
	}
	return fmt.Sprintf("%s: %s: %v (%s)", what, target, errnoText(e.Err), e.Remedy())
}

// Remedy says what an operator does about the fault.
func (e *FaultError) Remedy() string {
	dir := e.Path
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = parentDir(e.Path)
	}
	switch {
	case e.Fatal && pebble.IsCorruptionError(e.Err):
		return "the file is corrupt: restore " + dir + " from a backup, or move it aside to start empty"
	case e.Fatal:
		return "restart levitated; every acknowledged write is replayed from the write-ahead log"
	case e.Startup && (errors.Is(e.Err, syscall.ENOSPC) || errors.Is(e.Err, syscall.EDQUOT)):
		return "free space on the filesystem of " + dir + ", then start levitated again"
	case e.Startup:
		return fmt.Sprintf("make %s writable by uid %d, then start levitated again", dir, os.Getuid())
	case errors.Is(e.Err, syscall.ENOSPC), errors.Is(e.Err, syscall.EDQUOT):
		return "free space on the filesystem of " + dir + "; writes resume by themselves"
	default:
		return fmt.Sprintf("make %s writable by uid %d again; writes resume by themselves", dir, os.Getuid())
	}
}

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *FaultError) Is(target error) bool { return target == ErrUnavailable }

func (e *FaultError) Unwrap() error { return e.Err }

// HTTPStatus is 503: senders retry.
func (e *FaultError) HTTPStatus() int { return 503 }

// RetryAfterSeconds is the Retry-After a refused write is answered with.
func (e *FaultError) RetryAfterSeconds() int { return 10 }

// GRPCStatus is UNAVAILABLE.
func (e *FaultError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}

func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

func parentDir(p string) string {
	for i := len(p) - 1; i > 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return p
}

// health tracks whether the store can write. Operations the guarded
// filesystem holds back (a full disk, a lost permission) put it in a fault
// until they all went through; a fatal fault is kept until the process
// ends. Each change is logged once, and a fault still present every
// faultLogInterval.
type health struct {
	logger *slog.Logger

	mu       sync.Mutex
	held     int         // operations held back
	fault    *FaultError // the latest cause while held > 0
	fatal    *FaultError
	faultCh  chan struct{} // closed when the next fault starts
	fatalCh  chan struct{} // closed at the fatal fault
	startup  bool          // faults are met while opening
	since    time.Time
	lastLog  time.Time
	refused  int // writes refused during the current fault
	episodes int
}

const faultLogInterval = 30 * time.Second

func newHealth(logger *slog.Logger) *health {
	return &health{logger: logger, faultCh: make(chan struct{}), fatalCh: make(chan struct{}), startup: true}
}

// opened marks the end of opening.
func (h *health) opened() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.startup = false
}

// err returns the fault that keeps the store from writing, or nil.
func (h *health) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fatal != nil {
		return h.fatal
	}
	if h.held > 0 {
		return h.fault
	}
	return nil
}

// refuse returns the current fault, counting a refused write.
func (h *health) refuse() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fatal != nil {
		return h.fatal
	}
	if h.held > 0 {
		h.refused++
		return h.fault
	}
	return nil
}

// faulted returns a channel closed when the store next enters a fault (or
// already closed if it is in one).
func (h *health) faulted() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.faultCh
}

func (h *health) fatalled() <-chan struct{} { return h.fatalCh }

// hold records an operation held back by fe.
func (h *health) hold(fe *FaultError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fe.Startup = h.startup
	h.fault = fe
	h.held++
	if h.held > 1 {
		return
	}
	h.episodes++
	h.since = time.Now()
	h.lastLog = h.since
	h.refused = 0
	select {
	case <-h.faultCh:
	default:
		close(h.faultCh)
	}
	if h.startup {
		return // Open returns it
	}
	h.logger.Error("storage cannot write; refusing writes until it can", "op", fe.Op, "path", fe.Path, "err", errnoText(fe.Err), "remedy", fe.Remedy())
}

// still records that an operation held back failed again with fe.
func (h *health) still(fe *FaultError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fe.Startup = h.startup
	h.fault = fe
	if time.Since(h.lastLog) >= faultLogInterval {
		h.lastLog = time.Now()
		h.logger.Error("storage still cannot write", "op", fe.Op, "path", fe.Path, "err", errnoText(fe.Err), "for", time.Since(h.since).Round(time.Second), "writes_refused", h.refused, "remedy", fe.Remedy())
	}
}

// release records that a held operation went through.
func (h *health) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held--
	if h.held > 0 {
		return
	}
	h.faultCh = make(chan struct{})
	if h.fatal == nil {
		h.logger.Info("storage can write again; accepting writes", "after", time.Since(h.since).Round(time.Millisecond), "writes_refused", h.refused)
	}
}

// die records a fatal fault. The first one is logged.
func (h *health) die(fe *FaultError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fatal != nil {
		return
	}
	fe.Fatal = true
	h.fatal = fe
	close(h.fatalCh)
	select {
	case <-h.faultCh:
	default:
		close(h.faultCh)
	}
	if h.startup {
		return // Open returns it
	}
	h.logger.Error("storage failed; refusing writes until restarted", "op", fe.Op, "path", fe.Path, "err", fe.Err, "remedy", fe.Remedy())
}

// park blocks the calling goroutine for good. Pebble's goroutines that hit
// a fatal fault end here instead of panicking with its locks held: the
// store refuses writes, and the process exits through the server's
// shutdown.
func park() { select {} }

// rateLimitedLog logs a message at most once per interval, with the number
// of repeats suppressed meanwhile.
type rateLimitedLog struct {
	logger   *slog.Logger
	interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (r *rateLimitedLog) log(level slog.Level, msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < r.interval {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	r.logger.Log(context.Background(), level, msg, args...)
}
