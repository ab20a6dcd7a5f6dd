package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"
)

// ErrInvalidScalar marks a scalar argument that does not parse: the
// client's mistake, answered as INVALID_INPUT.
var ErrInvalidScalar = errors.New("invalid scalar value")

// Position is a commit position in the event store's global log. It is a
// uint64 on the wire of EventStoreDB, so GraphQL carries it as a decimal
// string; inputs may also be given as non-negative integers.
type Position uint64

// MarshalGQL writes the position as a JSON string.
func (p Position) MarshalGQL(w io.Writer) {
	_, _ = io.WriteString(w, strconv.Quote(strconv.FormatUint(uint64(p), 10)))
}

// UnmarshalGQL reads a position from a decimal string or an integer.
func (p *Position) UnmarshalGQL(v any) error {
	switch v := v.(type) {
	case string:
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: position must be a non-negative integer, got %q", ErrInvalidScalar, v)
		}
		*p = Position(n)
	case int64:
		if v < 0 {
			return fmt.Errorf("%w: position must be non-negative, got %d", ErrInvalidScalar, v)
		}
		*p = Position(v)
	case int:
		if v < 0 {
			return fmt.Errorf("%w: position must be non-negative, got %d", ErrInvalidScalar, v)
		}
		*p = Position(v)
	case json.Number:
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return fmt.Errorf("%w: position must be a non-negative integer, got %s", ErrInvalidScalar, v)
		}
		*p = Position(n)
	default:
		return fmt.Errorf("%w: position must be a string or an integer, got %T", ErrInvalidScalar, v)
	}
	return nil
}

// JSON is a JSON value passed through as is, such as an event's data.
type JSON json.RawMessage

// MarshalGQL writes the raw JSON value.
func (j JSON) MarshalGQL(w io.Writer) {
	if len(j) == 0 {
		_, _ = io.WriteString(w, "null")
		return
	}
	_, _ = w.Write(j)
}

// UnmarshalGQL accepts any JSON value.
func (j *JSON) UnmarshalGQL(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("invalid JSON value: %w", err)
	}
	*j = b
	return nil
}

// UnmarshalTime reads a Time argument; a malformed one is ErrInvalidScalar.
func UnmarshalTime(v any) (time.Time, error) {
	t, err := graphql.UnmarshalTime(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", ErrInvalidScalar, err)
	}
	return t, nil
}

// MarshalTime writes a Time in RFC 3339 with nanoseconds, as gqlgen does.
func MarshalTime(t time.Time) graphql.Marshaler { return graphql.MarshalTime(t) }
