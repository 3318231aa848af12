package ingest

import "errors"

// writeErrorer is a store that can say it does not take writes now (a full
// disk, say), with an error that has an HTTPStatus() int method (503) and
// a RetryAfterSeconds() int.
type writeErrorer interface{ WriteError() error }

// unavailable returns the store's reason for refusing writes, checked
// before a body is read. A store that becomes unavailable during a request
// fails its commit with the same error: remote write 1.0 answers it with
// its status; remote write 2.0, stored by Prometheus' receiver, answers
// 500, which senders retry as well.
func (h *RemoteWriteHandler) unavailable() error {
	we, ok := h.store.(writeErrorer)
	if !ok {
		return nil
	}
	if err := we.WriteError(); err != nil && withStatus(err) {
		return err
	}
	return nil
}

// withStatus reports whether err carries its own HTTP status.
func withStatus(err error) bool {
	var s interface{ HTTPStatus() int }
	return errors.As(err, &s)
}
