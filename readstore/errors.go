package readstore

import (
	"errors"
	"fmt"
)

// Conditions reported by the store; check them with errors.Is.
var (
	// ErrNotFound reports a read-model row that does not exist.
	ErrNotFound = errors.New("readstore: not found")
	// ErrBadCursor reports a pagination cursor that does not decode or does
	// not fit the query it is used with.
	ErrBadCursor = errors.New("readstore: bad cursor")
	// ErrBadQuery reports query arguments out of range.
	ErrBadQuery = errors.New("readstore: bad query")
	// ErrStale reports that the projection did not reach a position within
	// Options.WaitTimeout; the message says how far behind it is.
	ErrStale = errors.New("readstore: read model is stale")
	// ErrHalted is matched by every *HaltedError.
	ErrHalted = errors.New("readstore: projection halted")
	// ErrSlowSubscriber ends a subscription whose buffer filled up.
	ErrSlowSubscriber = errors.New("readstore: subscriber too slow, dropped")
	// ErrClosed ends calls and subscriptions on a closed store.
	ErrClosed = errors.New("readstore: store closed")
	// ErrExists is returned by OpenFresh when the file is already there.
	ErrExists = errors.New("readstore: database file already exists")
	// ErrBehind is returned by Live.Swap when the new store has not caught
	// up with the current one.
	ErrBehind = errors.New("readstore: new store is behind the current one")
)

// HaltedError reports a projection stopped at a poison event: everything
// before Position is applied and nothing after it, until Resume.
type HaltedError struct {
	Projection string
	Position   uint64 // position of the poison event
	Err        error  // why the event could not be applied
}

// Error implements error.
func (e *HaltedError) Error() string {
	return fmt.Sprintf("readstore: projection %s halted at position %d: %v", e.Projection, e.Position, e.Err)
}

// Unwrap returns the cause.
func (e *HaltedError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrHalted) true.
func (e *HaltedError) Is(target error) bool { return target == ErrHalted }

// poisonError is a deterministic failure to project one event: re-applying
// it fails the same way, so it is governed by the PoisonPolicy.
type poisonError struct{ msg string }

func (e *poisonError) Error() string { return e.msg }

func poisonf(format string, args ...any) error {
	return &poisonError{msg: fmt.Sprintf(format, args...)}
}
