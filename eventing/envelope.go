package eventing

import (
	"encoding/json"
	"time"

	"github.com/ordertrail/ordertrail/domain"
)

// OrderStreamPrefix starts the name of every order stream; subscriptions
// filter $all on it server-side.
const OrderStreamPrefix = "order-"

// OrderStream returns the stream that holds one order's events.
func OrderStream(orderID string) string { return OrderStreamPrefix + orderID }

// Metadata is stored as an event's custom metadata (JSON). The $-prefixed
// keys follow EventStoreDB's conventions.
type Metadata struct {
	SchemaVersion int    `json:"schemaVersion"`
	CorrelationID string `json:"$correlationId,omitempty"`
	CausationID   string `json:"$causationId,omitempty"`
	CommandID     string `json:"commandId,omitempty"`
	Actor         string `json:"actor,omitempty"`
}

// Envelope is a stored event read back from the store, decoded into its
// current shape.
type Envelope struct {
	EventID    string          // UUID of the stored event
	Stream     string          // stream name, e.g. "order-…"
	Revision   uint64          // position in its stream, from 0
	Position   uint64          // commit position in $all
	Type       string          // stored event type
	RecordedAt time.Time       // when the store committed it
	Metadata   Metadata        // decoded custom metadata (upcast)
	RawMeta    json.RawMessage // custom metadata as stored
	Data       json.RawMessage // event data after upcasting
	Event      domain.Event    // decoded event; nil when DecodeErr is set
	DecodeErr  error           // why the event could not be decoded, if it could not
}
