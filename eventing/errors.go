package eventing

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Conditions reported by the eventing package. Client errors of the event
// store are translated into these at this boundary; the original error
// stays in the chain for logs.
var (
	// ErrNotFound reports a stream (an order) that does not exist or was
	// deleted.
	ErrNotFound = errors.New("eventing: not found")
	// ErrConflict reports a write that lost an optimistic-concurrency
	// check. Errors of this kind are also *ConflictError.
	ErrConflict = errors.New("eventing: concurrency conflict")
	// ErrUnavailable reports a store that could not be reached, was not the
	// leader or did not answer in time. The outcome of a write that failed
	// this way is unknown: retry it with the same command ID.
	ErrUnavailable = errors.New("eventing: event store unavailable")
)

// ConflictError is the data of a lost optimistic-concurrency check:
// the stream, the revision the writer expected and the one the store had
// ("no_stream" when the stream did not exist, "" when unknown).
type ConflictError struct {
	Stream   string
	Expected string
	Actual   string
}

// Error describes the conflict.
func (e *ConflictError) Error() string {
	actual := e.Actual
	if actual == "" {
		actual = "unknown"
	}
	return fmt.Sprintf("conflict on stream %s: expected revision %s, actual %s", e.Stream, e.Expected, actual)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// storeError translates an error of the esdb client into this package's
// conditions, wrapped with the operation and stream: "append order-1: ...".
func storeError(op, stream string, err error) error {
	if err == nil {
		return nil
	}
	what := op
	if stream != "" {
		what += " " + stream
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	var esErr *esdb.Error
	if !errors.As(err, &esErr) || esErr.Code() == esdb.ErrorCodeUnknown {
		// Some client calls return gRPC errors as they are.
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
			return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
		case codes.NotFound:
			return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	switch esErr.Code() {
	case esdb.ErrorCodeWrongExpectedVersion:
		expected, actual := parseWrongExpected(esErr)
		return fmt.Errorf("%s: %w", what, &ConflictError{Stream: stream, Expected: expected, Actual: actual})
	case esdb.ErrorCodeResourceNotFound, esdb.ErrorCodeStreamDeleted:
		return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
	case esdb.ErrorUnavailable, esdb.ErrorCodeDeadlineExceeded, esdb.ErrorCodeNotLeader,
		esdb.ErrorCodeConnectionClosed, esdb.ErrorAborted:
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// isStoreCode reports whether err is an esdb error with the given code.
func isStoreCode(err error, code esdb.ErrorCode) bool {
	var esErr *esdb.Error
	return errors.As(err, &esErr) && esErr.Code() == code
}

// parseWrongExpected reads the revisions out of the client's
// WrongExpectedVersion message ("expecting 'X' but got 'Y'"), the only place
// the client exposes them. It is for error reports only, never for control
// flow; anything unexpected yields "".
func parseWrongExpected(err *esdb.Error) (expected, actual string) {
	if err.Err() == nil {
		return "", ""
	}
	msg := err.Err().Error()
	_, rest, ok := strings.Cut(msg, "expecting '")
	if !ok {
		return "", ""
	}
	expected, rest, ok = strings.Cut(rest, "' but got '")
	if !ok {
		return "", ""
	}
	actual, _, ok = strings.Cut(rest, "'")
	if !ok {
		return expected, ""
	}
	return expected, actual
}
