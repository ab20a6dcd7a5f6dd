package domain

import (
	"fmt"
	"slices"
)

// Status is where an order is in its lifecycle. The values are stored in
// snapshots and read models: never reorder or reuse them.
type Status string

// Order statuses.
const (
	StatusOpen      Status = "OPEN"
	StatusConfirmed Status = "CONFIRMED"
	StatusPaid      Status = "PAID"
	StatusShipped   Status = "SHIPPED"
	StatusDelivered Status = "DELIVERED"
	StatusCancelled Status = "CANCELLED"
)

// Recorded is an event as it was stored, with the ID of the command that
// raised it ("" when the command carried none).
type Recorded struct {
	Event     Event
	CommandID string
}

// NewItem is an item as a command asks for it.
type NewItem struct {
	SKU       string
	Quantity  int64
	UnitPrice Money
}

// Order is the order aggregate. Its fields change only by applying events;
// read them through the accessors.
type Order struct {
	id           string
	customerID   string
	currency     string
	status       Status
	lines        []Line
	adjustment   int64 // amount corrections on top of the item total
	total        int64
	version      int // number of events applied
	handled      map[string]bool
	command      string
	changes      []Recorded
	paidAmount   int64
	cancelReason string
	// fixedRevisions are the revisions of the events that carry no amount
	// (confirmed, shipped, delivered, cancelled: a handful at most); every
	// other event set or changed the amount and may be named by a
	// correction.
	fixedRevisions []uint64
}

// New returns an order that does not exist yet; its first command must be
// Create.
func New(id string) *Order {
	return &Order{id: id, version: 0, handled: map[string]bool{}}
}

// Rehydrate rebuilds an order from its full history. It is the one door
// through which stored events become an Order again; it raises nothing.
func Rehydrate(id string, history []Recorded) (*Order, error) {
	o := New(id)
	if err := o.replay(history); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *Order) replay(history []Recorded) error {
	for _, r := range history {
		if err := o.apply(r.Event); err != nil {
			return fmt.Errorf("replay order %s event %d: %w", o.id, o.version, err)
		}
		if r.CommandID != "" {
			o.handled[r.CommandID] = true
		}
	}
	return nil
}

// ID returns the order's ID.
func (o *Order) ID() string { return o.id }

// CustomerID returns the customer who placed the order.
func (o *Order) CustomerID() string { return o.customerID }

// Currency returns the ISO 4217 code all amounts of the order are in.
func (o *Order) Currency() string { return o.currency }

// Status returns the lifecycle status.
func (o *Order) Status() Status { return o.status }

// Lines returns a copy of the order's items.
func (o *Order) Lines() []Line { return slices.Clone(o.lines) }

// Total returns the order amount: items plus corrections.
func (o *Order) Total() Money { return Money{Amount: o.total, Currency: o.currency} }

// CancelReason returns why the order was cancelled, if it was.
func (o *Order) CancelReason() string { return o.cancelReason }

// Version returns the number of events applied, including uncommitted
// changes. The stream revision of the last event is Version()-1.
func (o *Order) Version() int { return o.version }

// Exists reports whether the order has been created.
func (o *Order) Exists() bool { return o.status != "" }

// Handled reports whether a command with this ID has already raised events.
func (o *Order) Handled(commandID string) bool { return commandID != "" && o.handled[commandID] }

// Changes returns the events raised since the order was loaded, tagged with
// their command IDs, in order.
func (o *Order) Changes() []Recorded { return slices.Clone(o.changes) }

// BeginCommand tags the events raised by the following command calls with
// a client-chosen command ID. A command ID already in the order's history
// fails with ErrDuplicateCommand, so a retried command never applies twice.
func (o *Order) BeginCommand(commandID string) error {
	if o.Handled(commandID) {
		return ErrDuplicateCommand
	}
	o.command = commandID
	return nil
}

// raise applies e and records it as an uncommitted change.
func (o *Order) raise(e Event) error {
	if err := o.apply(e); err != nil {
		return err
	}
	o.changes = append(o.changes, Recorded{Event: e, CommandID: o.command})
	if o.command != "" {
		o.handled[o.command] = true
	}
	return nil
}

// Create opens a new order for a customer with at least one item.
func (o *Order) Create(customerID, currency string, items []NewItem) error {
	if o.Exists() {
		return ErrAlreadyCreated
	}
	if o.id == "" {
		return ErrMissingOrderID
	}
	if customerID == "" {
		return ErrMissingCustomer
	}
	if _, err := CurrencyExponent(currency); err != nil {
		return err
	}
	if len(items) == 0 {
		return ErrEmptyOrder
	}
	lines := make([]Line, 0, len(items))
	var total int64
	for _, it := range items {
		l, err := newLine(currency, it)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(lines, func(x Line) bool { return x.SKU == l.SKU }) {
			return fmt.Errorf("%w: %q", ErrDuplicateItem, l.SKU)
		}
		sub, err := mulMinor(l.UnitPrice, l.Quantity)
		if err != nil {
			return err
		}
		if total, err = addMinor(total, sub); err != nil {
			return err
		}
		lines = append(lines, l)
	}
	if total <= 0 {
		return ErrNonPositiveTotal
	}
	return o.raise(&OrderCreated{OrderID: o.id, CustomerID: customerID, Currency: currency, Items: lines, Total: total})
}

func newLine(currency string, it NewItem) (Line, error) {
	if it.SKU == "" {
		return Line{}, ErrMissingSKU
	}
	if it.Quantity <= 0 {
		return Line{}, fmt.Errorf("%w: %s has %d", ErrInvalidQuantity, it.SKU, it.Quantity)
	}
	if it.UnitPrice.Currency != currency {
		return Line{}, fmt.Errorf("%w: %s is in %s, the order in %s", ErrMixedCurrencies, it.SKU, it.UnitPrice.Currency, currency)
	}
	if it.UnitPrice.Amount <= 0 {
		return Line{}, fmt.Errorf("%w: %s costs %s", ErrInvalidPrice, it.SKU, it.UnitPrice)
	}
	if _, err := mulMinor(it.UnitPrice.Amount, it.Quantity); err != nil {
		return Line{}, err
	}
	return Line{SKU: it.SKU, Quantity: it.Quantity, UnitPrice: it.UnitPrice.Amount}, nil
}

func (o *Order) requireOpen() error {
	if !o.Exists() {
		return ErrNotCreated
	}
	if o.status != StatusOpen {
		return ErrNotOpen
	}
	return nil
}

// AddItem adds an item that is not in the order yet.
func (o *Order) AddItem(it NewItem) error {
	if err := o.requireOpen(); err != nil {
		return err
	}
	l, err := newLine(o.currency, it)
	if err != nil {
		return err
	}
	if o.lineIndex(l.SKU) >= 0 {
		return fmt.Errorf("%w: %q", ErrDuplicateItem, l.SKU)
	}
	sub, _ := mulMinor(l.UnitPrice, l.Quantity)
	if _, err := addMinor(o.total, sub); err != nil {
		return err
	}
	return o.raise(&OrderItemAdded{OrderID: o.id, Item: l})
}

// RemoveItem removes an item; the last item cannot be removed, since an
// order is never empty.
func (o *Order) RemoveItem(sku string) error {
	if err := o.requireOpen(); err != nil {
		return err
	}
	i := o.lineIndex(sku)
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrUnknownItem, sku)
	}
	if len(o.lines) == 1 {
		return ErrEmptyOrder
	}
	return o.raise(&OrderItemRemoved{OrderID: o.id, SKU: sku})
}

// ChangeQuantity sets a new positive quantity for an item.
func (o *Order) ChangeQuantity(sku string, quantity int64) error {
	if err := o.requireOpen(); err != nil {
		return err
	}
	i := o.lineIndex(sku)
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrUnknownItem, sku)
	}
	if quantity <= 0 {
		return fmt.Errorf("%w: %s has %d", ErrInvalidQuantity, sku, quantity)
	}
	l := o.lines[i]
	sub, err := mulMinor(l.UnitPrice, quantity)
	if err != nil {
		return err
	}
	old, _ := mulMinor(l.UnitPrice, l.Quantity)
	if _, err := addMinor(o.total-old, sub); err != nil {
		return err
	}
	if quantity == l.Quantity {
		return nil
	}
	return o.raise(&OrderItemQuantityChanged{OrderID: o.id, SKU: sku, Quantity: quantity, PreviousQuantity: l.Quantity})
}

// Confirm fixes the order's items.
func (o *Order) Confirm() error {
	if !o.Exists() {
		return ErrNotCreated
	}
	if o.status != StatusOpen {
		return ErrCannotConfirm
	}
	return o.raise(&OrderConfirmed{OrderID: o.id})
}

// MarkPaid records a payment of exactly the order total.
func (o *Order) MarkPaid(amount Money, reference string) error {
	if !o.Exists() {
		return ErrNotCreated
	}
	if o.status != StatusConfirmed {
		return ErrCannotPay
	}
	if amount.Currency != o.currency {
		return fmt.Errorf("%w: paid in %s, the order is in %s", ErrMixedCurrencies, amount.Currency, o.currency)
	}
	if amount.Amount != o.total {
		return fmt.Errorf("%w: paid %s, total %s", ErrPaymentMismatch, amount, o.Total())
	}
	return o.raise(&OrderPaid{OrderID: o.id, Amount: amount.Amount, Reference: reference})
}

// Ship records the hand-over of a paid order to a carrier.
func (o *Order) Ship(carrier, trackingReference string) error {
	if !o.Exists() {
		return ErrNotCreated
	}
	if o.status != StatusPaid {
		return ErrCannotShip
	}
	if carrier == "" || trackingReference == "" {
		return ErrMissingShipment
	}
	return o.raise(&OrderShipped{OrderID: o.id, Carrier: carrier, TrackingReference: trackingReference})
}

// Deliver records the delivery of a shipped order.
func (o *Order) Deliver() error {
	if !o.Exists() {
		return ErrNotCreated
	}
	if o.status != StatusShipped {
		return ErrCannotDeliver
	}
	return o.raise(&OrderDelivered{OrderID: o.id})
}

// Cancel cancels an order that has not shipped.
func (o *Order) Cancel(reason string) error {
	if !o.Exists() {
		return ErrNotCreated
	}
	switch o.status {
	case StatusShipped, StatusDelivered, StatusCancelled:
		return ErrCannotCancel
	}
	if reason == "" {
		return ErrMissingReason
	}
	return o.raise(&OrderCancelled{OrderID: o.id, Reason: reason})
}

// CorrectAmount corrects the amount of a past order with a compensating
// event. correctedRevision names the stored event whose amount was wrong.
func (o *Order) CorrectAmount(correctedRevision uint64, newAmount Money, reason string) error {
	if !o.Exists() {
		return ErrNotCreated
	}
	switch o.status {
	case StatusConfirmed, StatusPaid, StatusShipped, StatusDelivered:
	default:
		return ErrCannotCorrect
	}
	if correctedRevision >= uint64(o.version) || slices.Contains(o.fixedRevisions, correctedRevision) {
		return fmt.Errorf("%w: revision %d", ErrNoSuchEvent, correctedRevision)
	}
	if newAmount.Currency != o.currency {
		return fmt.Errorf("%w: %s, the order is in %s", ErrMixedCurrencies, newAmount.Currency, o.currency)
	}
	if newAmount.Amount <= 0 {
		return ErrNonPositiveTotal
	}
	if newAmount.Amount == o.total {
		return ErrUnchangedAmount
	}
	if reason == "" {
		return ErrMissingReason
	}
	return o.raise(&OrderAmountCorrected{OrderID: o.id, CorrectedRevision: correctedRevision, OldAmount: o.total, NewAmount: newAmount.Amount, Reason: reason})
}

func (o *Order) lineIndex(sku string) int {
	return slices.IndexFunc(o.lines, func(l Line) bool { return l.SKU == sku })
}

// apply changes state by one event. It is pure and total over the event
// set: no validation, no clock, and an error for anything it does not know.
func (o *Order) apply(e Event) error {
	carriesAmount := true
	switch e.(type) {
	case *OrderCreated, *OrderItemAdded, *OrderItemRemoved, *OrderItemQuantityChanged, *OrderPaid, *OrderAmountCorrected:
	case *OrderConfirmed, *OrderShipped, *OrderDelivered, *OrderCancelled:
		carriesAmount = false
	default:
		return fmt.Errorf("%w: %T", ErrUnknownEventType, e)
	}
	if id := e.orderID(); id != o.id {
		return fmt.Errorf("%w: %s", ErrWrongOrderForEvent, id)
	}
	if !carriesAmount {
		o.fixedRevisions = append(o.fixedRevisions, uint64(o.version))
	}
	switch e := e.(type) {
	case *OrderCreated:
		o.customerID, o.currency, o.status = e.CustomerID, e.Currency, StatusOpen
		o.lines = slices.Clone(e.Items)
		o.total = e.Total
		o.adjustment = e.Total - linesTotal(e.Items)
	case *OrderItemAdded:
		o.lines = append(o.lines, e.Item)
		o.total = linesTotal(o.lines) + o.adjustment
	case *OrderItemRemoved:
		o.lines = slices.DeleteFunc(o.lines, func(l Line) bool { return l.SKU == e.SKU })
		o.total = linesTotal(o.lines) + o.adjustment
	case *OrderItemQuantityChanged:
		if i := o.lineIndex(e.SKU); i >= 0 {
			o.lines[i].Quantity = e.Quantity
		}
		o.total = linesTotal(o.lines) + o.adjustment
	case *OrderConfirmed:
		o.status = StatusConfirmed
	case *OrderPaid:
		o.status = StatusPaid
		o.paidAmount = e.Amount
	case *OrderShipped:
		o.status = StatusShipped
	case *OrderDelivered:
		o.status = StatusDelivered
	case *OrderCancelled:
		o.status = StatusCancelled
		o.cancelReason = e.Reason
	case *OrderAmountCorrected:
		o.total = e.NewAmount
		o.adjustment = e.NewAmount - linesTotal(o.lines)
	default:
		return fmt.Errorf("%w: %T", ErrUnknownEventType, e)
	}
	o.version++
	return nil
}

// linesTotal sums the items. Overflow was ruled out before each event was
// raised; a history that overflows anyway saturates rather than wraps.
func linesTotal(lines []Line) int64 {
	var t int64
	for _, l := range lines {
		sub, err := mulMinor(l.UnitPrice, l.Quantity)
		if err != nil {
			return t
		}
		if t, err = addMinor(t, sub); err != nil {
			return t
		}
	}
	return t
}
