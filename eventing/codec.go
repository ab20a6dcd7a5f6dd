package eventing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/domain"
)

// DecodeError reports a stored event that could not be turned into a
// domain event. It names the event so that it can be found and repaired.
type DecodeError struct {
	Stream   string
	Revision uint64
	Type     string
	Err      error
}

// Error names the event and says why it could not be decoded.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode event %s@%d (%s): %v", e.Stream, e.Revision, e.Type, e.Err)
}

// Unwrap returns the cause, such as domain.ErrInvalidAmount.
func (e *DecodeError) Unwrap() error { return e.Err }

// Codec turns domain events into stored events and back, upcasting old
// shapes to the current schema on the way in. It is safe for concurrent use.
type Codec struct {
	upcasters Upcasters
	current   map[string]int // event type -> current schema version
}

// NewCodec returns a codec that upcasts with the given table, usually
// DefaultUpcasters.
func NewCodec(upcasters Upcasters) *Codec {
	c := &Codec{upcasters: upcasters, current: make(map[string]int, len(domain.EventTypes))}
	for _, t := range domain.EventTypes {
		v := 1
		for upcasters[UpcastKey{Type: t, Version: v}] != nil {
			v++
		}
		c.current[t] = v
	}
	return c
}

// SchemaVersion returns the version in which eventType is written now.
func (c *Codec) SchemaVersion(eventType string) int {
	if v, ok := c.current[eventType]; ok {
		return v
	}
	return 1
}

// Encode serializes e for appending, with meta as its custom metadata; the
// schema version in meta is set to the current version of e's type.
func (c *Codec) Encode(id uuid.UUID, e domain.Event, meta Metadata) (esdb.EventData, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return esdb.EventData{}, fmt.Errorf("encode %s: %w", e.EventType(), err)
	}
	meta.SchemaVersion = c.SchemaVersion(e.EventType())
	rawMeta, err := json.Marshal(meta)
	if err != nil {
		return esdb.EventData{}, fmt.Errorf("encode %s metadata: %w", e.EventType(), err)
	}
	return esdb.EventData{
		EventID:     id,
		EventType:   e.EventType(),
		ContentType: esdb.ContentTypeJson,
		Data:        data,
		Metadata:    rawMeta,
	}, nil
}

// DecodeResolved decodes the original event of a read or subscription
// result. See Decode.
func (c *Codec) DecodeResolved(re *esdb.ResolvedEvent) (Envelope, error) {
	if re == nil || re.OriginalEvent() == nil {
		err := &DecodeError{Err: errors.New("no event")}
		return Envelope{DecodeErr: err}, err
	}
	return c.Decode(re.OriginalEvent())
}

// Decode turns a stored event into an Envelope in its current shape. On
// failure the Envelope still carries what is known about the event, its
// DecodeErr is set, and the same *DecodeError is returned.
func (c *Codec) Decode(r *esdb.RecordedEvent) (Envelope, error) {
	env := Envelope{
		EventID:    r.EventID.String(),
		Stream:     r.StreamID,
		Revision:   r.EventNumber,
		Position:   r.Position.Commit,
		Type:       r.EventType,
		RecordedAt: r.CreatedDate,
		RawMeta:    json.RawMessage(r.UserMetadata),
		Data:       json.RawMessage(r.Data),
	}
	if err := c.decode(&env); err != nil {
		derr := &DecodeError{Stream: r.StreamID, Revision: r.EventNumber, Type: r.EventType, Err: err}
		env.Event, env.DecodeErr = nil, derr
		return env, derr
	}
	return env, nil
}

// storedMeta is Metadata as read, telling a missing schema version apart
// from an explicit one.
type storedMeta struct {
	Metadata
	SchemaVersion *int `json:"schemaVersion"`
}

func (c *Codec) decode(env *Envelope) error {
	version := 1
	if len(bytes.TrimSpace(env.RawMeta)) > 0 {
		var m storedMeta
		if err := unmarshalObject(env.RawMeta, &m); err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		env.Metadata = m.Metadata
		if m.SchemaVersion != nil {
			version = *m.SchemaVersion
		}
	}
	current, ok := c.current[env.Type]
	if !ok {
		return fmt.Errorf("%w: %q", domain.ErrUnknownEventType, env.Type)
	}
	if version < 1 || version > current {
		return fmt.Errorf("schema version %d of %s is not between 1 and %d", version, env.Type, current)
	}
	data := env.Data
	for ; version < current; version++ {
		up, err := c.upcasters[UpcastKey{Type: env.Type, Version: version}](data)
		if err != nil {
			return fmt.Errorf("upcast from version %d: %w", version, err)
		}
		data = up
	}
	e := domain.NewEvent(env.Type)
	if err := unmarshalObject(data, e); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	env.Data, env.Event, env.Metadata.SchemaVersion = data, e, current
	return nil
}
