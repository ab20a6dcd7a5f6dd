package readstore

import (
	"encoding/json"
	"time"

	"github.com/ordertrail/ordertrail/domain"
)

// Event is one stored order event as the projections see it.
type Event struct {
	Position   uint64          // commit position in $all (strictly increasing, not contiguous)
	Stream     string          // "order-<id>"
	Revision   uint64          // position in the order's stream
	EventID    string          // UUID of the stored event
	Type       string          // stored event type
	RecordedAt time.Time       // the store's commit time; buckets use this, never the wall clock
	Metadata   json.RawMessage // custom metadata JSON (schemaVersion, $correlationId, …)
	Data       json.RawMessage // event data as stored (after upcasting)
	Event      domain.Event    // nil when DecodeErr != nil
	DecodeErr  error           // why the event could not be decoded
}

// Item is one line of an order; UnitPrice is in minor units.
type Item struct {
	SKU       string `json:"sku"`
	Quantity  int64  `json:"quantity"`
	UnitPrice int64  `json:"unitPrice"`
}

// Correction is one OrderAmountCorrected applied to an order.
type Correction struct {
	Revision          uint64    `json:"revision"`          // revision of the correction event
	CorrectedRevision uint64    `json:"correctedRevision"` // revision of the event it corrects
	OldAmount         int64     `json:"oldAmount"`
	NewAmount         int64     `json:"newAmount"`
	Reason            string    `json:"reason"`
	At                time.Time `json:"at"`
}

// Order is the order read model, as queries return it and as change_log
// stores it after each change. Amounts are minor units of Currency.
type Order struct {
	ID                string        `json:"id"`
	CustomerID        string        `json:"customerId"`
	Currency          string        `json:"currency"`
	Status            domain.Status `json:"status"`
	Total             int64         `json:"total"`
	Items             []Item        `json:"items"`
	CreatedAt         time.Time     `json:"createdAt"`
	ConfirmedAt       *time.Time    `json:"confirmedAt"`
	PaidAt            *time.Time    `json:"paidAt"`
	ShippedAt         *time.Time    `json:"shippedAt"`
	DeliveredAt       *time.Time    `json:"deliveredAt"`
	CancelledAt       *time.Time    `json:"cancelledAt"`
	CancelReason      string        `json:"cancelReason"`
	Carrier           string        `json:"carrier"`
	TrackingReference string        `json:"trackingReference"`
	Corrections       []Correction  `json:"corrections"`
	Revision          uint64        `json:"revision"`     // stream revision of the last applied event
	LastPosition      uint64        `json:"lastPosition"` // $all position of the last applied event

	adjustment int64 // Total minus the item sum; kept so item changes keep corrections
}

// Customer is the per-customer read model.
type Customer struct {
	ID         string `json:"id"`
	OrderCount int64  `json:"orderCount"`
	OpenOrders int64  `json:"openOrders"` // neither delivered nor cancelled
	// LifetimeValue holds, per currency (sorted), the current totals of the
	// customer's orders that are not cancelled, net of corrections.
	LifetimeValue []domain.Money `json:"lifetimeValue"`
	FirstOrderAt  time.Time      `json:"firstOrderAt"`
	LastOrderAt   time.Time      `json:"lastOrderAt"`
}

// Bucket is the width of a trend bucket.
type Bucket string

// Trend bucket widths; buckets start at UTC hour and day boundaries.
const (
	Hour Bucket = "HOUR"
	Day  Bucket = "DAY"
)

// Trend is one bucket of order activity in one currency.
//
// Every count and amount is booked in the bucket of the RecordedAt of the
// event that caused it (a ledger: closed buckets never change). Revenue is
// the sum of amount deltas: +total at creation, ± the change of an item
// event, +(new−old) for a correction, −the current total for a
// cancellation. Summed over all buckets it equals the current totals of
// the orders that are not cancelled.
type Trend struct {
	Bucket      Bucket    `json:"bucket"`
	BucketStart time.Time `json:"bucketStart"`
	Currency    string    `json:"currency"`
	Created     int64     `json:"created"`
	Confirmed   int64     `json:"confirmed"`
	Shipped     int64     `json:"shipped"`
	Cancelled   int64     `json:"cancelled"`
	Revenue     int64     `json:"revenue"`
	// AverageOrderValue is Revenue / Created in minor units, truncated; 0
	// when nothing was created in the bucket.
	AverageOrderValue int64 `json:"averageOrderValue"`
}

// Change is one committed change of an order, as the change log and live
// subscriptions carry it. Live subscribers share the Order's slices: treat
// them as read-only.
type Change struct {
	Position   uint64    `json:"position"`
	OrderID    string    `json:"orderId"`
	CustomerID string    `json:"customerId"`
	EventType  string    `json:"eventType"`
	Revision   uint64    `json:"revision"`
	RecordedAt time.Time `json:"recordedAt"`
	Order      Order     `json:"order"` // the order after the change
}

// ProjectionStatus is the health of the projection.
type ProjectionStatus struct {
	Checkpoint  uint64 `json:"checkpoint"`
	State       string `json:"state"`    // "RUNNING" or "HALTED"
	HaltedAt    uint64 `json:"haltedAt"` // position of the poison event when halted
	Error       string `json:"error"`
	DeadLetters int    `json:"deadLetters"`
}

// DeadLetter is a parked event.
type DeadLetter struct {
	Projection string          `json:"projection" db:"projection"`
	Position   uint64          `json:"position" db:"position"`
	Stream     string          `json:"stream" db:"stream"`
	Revision   uint64          `json:"revision" db:"revision"`
	EventType  string          `json:"eventType" db:"event_type"`
	Error      string          `json:"error" db:"error"`
	Data       json.RawMessage `json:"data" db:"data"`
	ParkedAt   time.Time       `json:"parkedAt" db:"-"` // the event's RecordedAt
}
