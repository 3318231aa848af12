package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/levitated/levitated/pkg/auth"
	"github.com/levitated/levitated/pkg/storage"
)

// SnapshotsDir is the directory under the data directory that snapshots
// are written to, as Prometheus' <data-dir>/snapshots.
const SnapshotsDir = "snapshots"

// snapshotResult is the data of POST /api/v1/admin/snapshot's answer:
// Prometheus' name, and the directory on the server's machine.
type snapshotResult struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
}

// snapshot writes a consistent copy of the store (samples and events of
// every tenant; storage.DB.Snapshot) to <data-dir>/snapshots/<name>, with
// the token file when it lives in the data directory, so that a levitated
// started on that directory holds every write acknowledged before the
// request and the same tokens. The name is Prometheus' (UTC time and a
// random suffix). 503 while the disk refuses writes.
func (s *Server) snapshot(r *http.Request) (any, error) {
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	name := time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(suffix[:])
	parent, err := filepath.Abs(filepath.Join(s.opts.DataDir, SnapshotsDir))
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return nil, &statusError{http.StatusServiceUnavailable, fmt.Errorf("snapshot: %w", err)}
	}
	dir := filepath.Join(parent, name)
	if err := s.db.Snapshot(r.Context(), dir); err != nil {
		if errors.Is(err, storage.ErrUnavailable) {
			return nil, &statusError{http.StatusServiceUnavailable, fmt.Errorf("snapshot: %w", err)}
		}
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if s.opts.Security.TokenFile == "" {
		if err := copyFile(filepath.Join(s.opts.DataDir, auth.TokenFileName), filepath.Join(dir, auth.TokenFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("snapshot: copy the token file: %w", err)
		}
	}
	s.logger.Info("snapshot written", "dir", dir)
	return snapshotResult{Name: name, Dir: dir}, nil
}

// copyFile copies src to dst (which must not exist) with src's mode, and
// syncs it.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
