package exporter

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Exporter sends batches of records to one tracing backend.
//
// Contract: a Queue calls Export and Shutdown from a single goroutine, never
// concurrently. Export must honour ctx: it returns promptly once ctx is done,
// whatever the backend does. Export must not keep or modify the batch after it
// returns. An error that is worth retrying is wrapped with Retryable (a
// refused connection, a 5xx, a 429); the Queue then retries with backoff. Any
// other error drops the batch. Shutdown releases the exporter's resources;
// Export is not called after it.
type Exporter interface {
	Export(ctx context.Context, batch []*Record) error
	Shutdown(ctx context.Context) error
}

// RetryableError marks an export failure that may succeed if tried again.
type RetryableError struct {
	Err error
	// After is how long the backend asked to wait (Retry-After), zero when
	// it did not say.
	After time.Duration
}

// Error returns the wrapped error's text.
func (e *RetryableError) Error() string { return fmt.Sprintf("retryable: %v", e.Err) }

// Unwrap returns the wrapped error.
func (e *RetryableError) Unwrap() error { return e.Err }

// Retryable wraps err as worth retrying, after the given delay if non-zero.
func Retryable(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return &RetryableError{Err: err, After: after}
}

// IsRetryable reports whether err is worth retrying, and after how long the
// backend asked to wait.
func IsRetryable(err error) (bool, time.Duration) {
	var re *RetryableError
	if errors.As(err, &re) {
		return true, re.After
	}
	return false, 0
}

// PartialError reports a batch the backend accepted except for Rejected of
// its spans (OTLP partial success). The Queue counts the batch's records as
// exported and the rejected spans as dropped with ReasonPartialRejected; it
// does not retry.
type PartialError struct {
	Rejected int
	Message  string
}

// Error describes the partial success.
func (e *PartialError) Error() string {
	return fmt.Sprintf("backend rejected %d spans: %s", e.Rejected, e.Message)
}

// IsPartial reports whether err is a partial success, and how many spans
// were rejected.
func IsPartial(err error) (int, bool) {
	var pe *PartialError
	if errors.As(err, &pe) {
		return pe.Rejected, true
	}
	return 0, false
}
