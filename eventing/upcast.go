package eventing

import (
	"bytes"
	"encoding/json"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/ordertrail/ordertrail/domain"
)

// Upcaster rewrites the stored data of one event from the schema version it
// is keyed by to the next version. It is a pure function of its input.
type Upcaster func(data json.RawMessage) (json.RawMessage, error)

// UpcastKey names the stored shape an Upcaster reads: an event type at a
// schema version.
type UpcastKey struct {
	Type    string
	Version int
}

// Upcasters is the table of every upcaster. The current schema version of a
// type is one more than the last version in its unbroken chain from 1.
type Upcasters map[UpcastKey]Upcaster

// DefaultUpcasters returns the upcasters for ordertrail's stored events.
// legacyCurrency is the ISO 4217 currency of orders created by the original
// service, whose events carry no currency.
func DefaultUpcasters(legacyCurrency string) Upcasters {
	return Upcasters{
		{Type: domain.TypeOrderCreated, Version: 1}: upcastOrderCreatedV1(legacyCurrency),
	}
}

// orderCreatedV1 is the OrderCreated shape written by the original
// TypeScript service: the amount in major units as a JSON number, no
// currency and no items.
type orderCreatedV1 struct {
	OrderID    *string          `json:"orderId"`
	CustomerID *string          `json:"customerId"`
	Amount     *json.RawMessage `json:"amount"`
}

// upcastOrderCreatedV1 converts v1 to v2: it adds the legacy currency and an empty
// item list and turns the amount into minor units exactly, rejecting more
// fractional digits than the currency has.
func upcastOrderCreatedV1(currency string) Upcaster {
	return func(data json.RawMessage) (json.RawMessage, error) {
		var v1 orderCreatedV1
		if err := unmarshalObject(data, &v1); err != nil {
			return nil, err
		}
		switch {
		case v1.OrderID == nil || *v1.OrderID == "":
			return nil, fmt.Errorf("OrderCreated v1: orderId is missing")
		case v1.CustomerID == nil:
			return nil, fmt.Errorf("OrderCreated v1: customerId is missing")
		case v1.Amount == nil:
			return nil, fmt.Errorf("OrderCreated v1: amount is missing")
		}
		amount := bytes.TrimSpace(*v1.Amount)
		// Only a JSON number literal: not a string, not null.
		if len(amount) == 0 || (amount[0] != '-' && (amount[0] < '0' || amount[0] > '9')) {
			return nil, fmt.Errorf("OrderCreated v1: amount %s is not a JSON number", amount)
		}
		total, err := domain.ParseMoney(string(amount), currency)
		if err != nil {
			return nil, fmt.Errorf("OrderCreated v1: %w", err)
		}
		return json.Marshal(domain.OrderCreated{
			OrderID:    *v1.OrderID,
			CustomerID: *v1.CustomerID,
			Currency:   currency,
			Items:      []domain.Line{},
			Total:      total.Amount,
		})
	}
}

// unmarshalObject decodes data, which must be one JSON object, into v.
// It uses the v2 decoder, which is several times faster than
// encoding/json's on event payloads and stricter: member names match
// exactly, and duplicate names or invalid UTF-8 are errors, so such an
// event is poison instead of being read one way or another.
func unmarshalObject(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return fmt.Errorf("data is not a JSON object")
	}
	return jsonv2.Unmarshal(data, v)
}
