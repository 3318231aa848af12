package ingest

// writeErrorer is a store that can say it does not take writes now (a full
// disk, say).
type writeErrorer interface{ WriteError() error }

// unavailable returns the store's reason for refusing writes, checked
// before a body is read. A store that becomes unavailable during a request
// fails its append or commit with the same error, which the handler
// returns (storeerrors.go).
func (h *RemoteWriteHandler) unavailable() error {
	if we, ok := h.store.(writeErrorer); ok {
		return we.WriteError()
	}
	return nil
}
