package server

import (
	"fmt"
	"net/http"
)

// This file wires the store's write health (pkg/storage, guardfs.go) into
// the server: /-/ready turns 503 naming the cause while the disk refuses
// writes, and back to 200 when it takes them again; a store that failed
// for good ends Run, so the process exits and replays its write-ahead log
// at the next start. Write errors carry their own status (HTTPStatus,
// GRPCStatus: 503 / UNAVAILABLE).

// readyHandler answers /-/ready.
func (s *Server) readyHandler(w http.ResponseWriter, r *http.Request) {
	if err := s.db.WriteError(); err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "levitated is not ready: %v\n", err)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, "levitated is Ready.\n")
}

// storageFailed is closed when the store failed for good.
func (s *Server) storageFailed() <-chan struct{} { return s.db.Failed() }

// storageFailure is the error Run ends with after storageFailed.
func (s *Server) storageFailure() error {
	return fmt.Errorf("stopping: %w", s.db.WriteError())
}
