package domain

// Event is one fact about an order. The set is sealed: only this package
// can declare new kinds, so a type switch over Event can be checked for
// exhaustiveness.
type Event interface {
	// EventType returns the stable wire name stored with the event.
	EventType() string
	orderID() string
	isOrderEvent()
}

// Stable wire names of the order events. They are stored in the event log
// and must never change.
const (
	TypeOrderCreated             = "OrderCreated"
	TypeOrderItemAdded           = "OrderItemAdded"
	TypeOrderItemRemoved         = "OrderItemRemoved"
	TypeOrderItemQuantityChanged = "OrderItemQuantityChanged"
	TypeOrderConfirmed           = "OrderConfirmed"
	TypeOrderPaid                = "OrderPaid"
	TypeOrderShipped             = "OrderShipped"
	TypeOrderDelivered           = "OrderDelivered"
	TypeOrderCancelled           = "OrderCancelled"
	TypeOrderAmountCorrected     = "OrderAmountCorrected"
)

// EventTypes lists every wire name, in declaration order.
var EventTypes = []string{
	TypeOrderCreated, TypeOrderItemAdded, TypeOrderItemRemoved,
	TypeOrderItemQuantityChanged, TypeOrderConfirmed, TypeOrderPaid,
	TypeOrderShipped, TypeOrderDelivered, TypeOrderCancelled,
	TypeOrderAmountCorrected,
}

// NewEvent returns an empty event of the given wire name, ready to be
// decoded into, or nil when the name is not an order event.
func NewEvent(eventType string) Event {
	switch eventType {
	case TypeOrderCreated:
		return &OrderCreated{}
	case TypeOrderItemAdded:
		return &OrderItemAdded{}
	case TypeOrderItemRemoved:
		return &OrderItemRemoved{}
	case TypeOrderItemQuantityChanged:
		return &OrderItemQuantityChanged{}
	case TypeOrderConfirmed:
		return &OrderConfirmed{}
	case TypeOrderPaid:
		return &OrderPaid{}
	case TypeOrderShipped:
		return &OrderShipped{}
	case TypeOrderDelivered:
		return &OrderDelivered{}
	case TypeOrderCancelled:
		return &OrderCancelled{}
	case TypeOrderAmountCorrected:
		return &OrderAmountCorrected{}
	}
	return nil
}

// Line is one item of an order; UnitPrice is in minor units of the order's
// currency.
type Line struct {
	SKU       string `json:"sku"`
	Quantity  int64  `json:"quantity"`
	UnitPrice int64  `json:"unitPrice"`
}

// OrderCreated records a new order with its first items. Total is the
// order amount in minor units at creation; for orders created by the
// original service it is the only amount known and Items is empty.
type OrderCreated struct {
	OrderID    string `json:"orderId"`
	CustomerID string `json:"customerId"`
	Currency   string `json:"currency"`
	Items      []Line `json:"items"`
	Total      int64  `json:"total"`
}

// OrderItemAdded records an item added to an open order.
type OrderItemAdded struct {
	OrderID string `json:"orderId"`
	Item    Line   `json:"item"`
}

// OrderItemRemoved records an item taken out of an open order.
type OrderItemRemoved struct {
	OrderID string `json:"orderId"`
	SKU     string `json:"sku"`
}

// OrderItemQuantityChanged records a new quantity for an item of an open
// order.
type OrderItemQuantityChanged struct {
	OrderID          string `json:"orderId"`
	SKU              string `json:"sku"`
	Quantity         int64  `json:"quantity"`
	PreviousQuantity int64  `json:"previousQuantity"`
}

// OrderConfirmed records that the customer confirmed the order; its items
// are fixed from then on.
type OrderConfirmed struct {
	OrderID string `json:"orderId"`
}

// OrderPaid records the payment of a confirmed order.
type OrderPaid struct {
	OrderID   string `json:"orderId"`
	Amount    int64  `json:"amount"`
	Reference string `json:"reference"`
}

// OrderShipped records the hand-over to a carrier.
type OrderShipped struct {
	OrderID           string `json:"orderId"`
	Carrier           string `json:"carrier"`
	TrackingReference string `json:"trackingReference"`
}

// OrderDelivered records the delivery to the customer.
type OrderDelivered struct {
	OrderID string `json:"orderId"`
}

// OrderCancelled records the cancellation of an order that had not shipped.
type OrderCancelled struct {
	OrderID string `json:"orderId"`
	Reason  string `json:"reason"`
}

// OrderAmountCorrected is a compensating event: it corrects the amount of
// an order after the fact, naming the event (by its revision in the order's
// stream) whose amount was wrong, because stored events are never changed.
type OrderAmountCorrected struct {
	OrderID           string `json:"orderId"`
	CorrectedRevision uint64 `json:"correctedRevision"`
	OldAmount         int64  `json:"oldAmount"`
	NewAmount         int64  `json:"newAmount"`
	Reason            string `json:"reason"`
}

// EventType implements Event.
func (*OrderCreated) EventType() string { return TypeOrderCreated }

// EventType implements Event.
func (*OrderItemAdded) EventType() string { return TypeOrderItemAdded }

// EventType implements Event.
func (*OrderItemRemoved) EventType() string { return TypeOrderItemRemoved }

// EventType implements Event.
func (*OrderItemQuantityChanged) EventType() string { return TypeOrderItemQuantityChanged }

// EventType implements Event.
func (*OrderConfirmed) EventType() string { return TypeOrderConfirmed }

// EventType implements Event.
func (*OrderPaid) EventType() string { return TypeOrderPaid }

// EventType implements Event.
func (*OrderShipped) EventType() string { return TypeOrderShipped }

// EventType implements Event.
func (*OrderDelivered) EventType() string { return TypeOrderDelivered }

// EventType implements Event.
func (*OrderCancelled) EventType() string { return TypeOrderCancelled }

// EventType implements Event.
func (*OrderAmountCorrected) EventType() string { return TypeOrderAmountCorrected }

func (e *OrderCreated) orderID() string             { return e.OrderID }
func (*OrderCreated) isOrderEvent()                 {}
func (e *OrderItemAdded) orderID() string           { return e.OrderID }
func (*OrderItemAdded) isOrderEvent()               {}
func (e *OrderItemRemoved) orderID() string         { return e.OrderID }
func (*OrderItemRemoved) isOrderEvent()             {}
func (e *OrderItemQuantityChanged) orderID() string { return e.OrderID }
func (*OrderItemQuantityChanged) isOrderEvent()     {}
func (e *OrderConfirmed) orderID() string           { return e.OrderID }
func (*OrderConfirmed) isOrderEvent()               {}
func (e *OrderPaid) orderID() string                { return e.OrderID }
func (*OrderPaid) isOrderEvent()                    {}
func (e *OrderShipped) orderID() string             { return e.OrderID }
func (*OrderShipped) isOrderEvent()                 {}
func (e *OrderDelivered) orderID() string           { return e.OrderID }
func (*OrderDelivered) isOrderEvent()               {}
func (e *OrderCancelled) orderID() string           { return e.OrderID }
func (*OrderCancelled) isOrderEvent()               {}
func (e *OrderAmountCorrected) orderID() string     { return e.OrderID }
func (*OrderAmountCorrected) isOrderEvent()         {}
