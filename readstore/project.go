package readstore

import (
	"slices"
	"strings"
	"time"

	"github.com/ordertrail/ordertrail/domain"
)

// effect is what one event adds to the aggregate read models (customers,
// trends); all of it is additive, so batches can be split anywhere.
type effect struct {
	created, confirmed, shipped, cancelled int64 // trend counts
	open                                   int64 // customer open-order delta
	value                                  int64 // revenue and lifetime-value delta
}

// orderIDOf returns the order ID named by an order stream.
func orderIDOf(stream string) (string, bool) {
	id, ok := strings.CutPrefix(stream, "order-")
	return id, ok && id != ""
}

// eventOrderID returns the order ID an event says it belongs to.
func eventOrderID(e domain.Event) string {
	switch e := e.(type) {
	case *domain.OrderCreated:
		return e.OrderID
	case *domain.OrderItemAdded:
		return e.OrderID
	case *domain.OrderItemRemoved:
		return e.OrderID
	case *domain.OrderItemQuantityChanged:
		return e.OrderID
	case *domain.OrderConfirmed:
		return e.OrderID
	case *domain.OrderPaid:
		return e.OrderID
	case *domain.OrderShipped:
		return e.OrderID
	case *domain.OrderDelivered:
		return e.OrderID
	case *domain.OrderCancelled:
		return e.OrderID
	case *domain.OrderAmountCorrected:
		return e.OrderID
	}
	return ""
}

// project applies one event to the order it belongs to (cur, nil when the
// order is not known yet) and returns the new order and the event's
// effect. It is pure and deterministic; every error is a *poisonError,
// since applying the same event again fails the same way. cur is never
// modified.
func project(cur *Order, ev Event) (*Order, effect, error) {
	var eff effect
	if ev.DecodeErr != nil {
		return nil, eff, poisonf("decode %s event: %v", ev.Type, ev.DecodeErr)
	}
	if ev.Event == nil {
		return nil, eff, poisonf("%s event was not decoded", ev.Type)
	}
	id, ok := orderIDOf(ev.Stream)
	if !ok {
		return nil, eff, poisonf("stream %q is not an order stream", ev.Stream)
	}
	if got := eventOrderID(ev.Event); got != id {
		return nil, eff, poisonf("%s names order %q in stream %q", ev.Event.EventType(), got, ev.Stream)
	}
	_, creates := ev.Event.(*domain.OrderCreated)
	switch {
	case cur == nil && !creates:
		return nil, eff, poisonf("%s for unknown order %s", ev.Event.EventType(), id)
	case cur != nil && creates:
		return nil, eff, poisonf("order %s created twice", id)
	case cur != nil && ev.Revision <= cur.Revision:
		return nil, eff, poisonf("order %s revision %d is not after %d", id, ev.Revision, cur.Revision)
	}
	at := norm(ev.RecordedAt)
	var o Order
	if cur != nil {
		o = *cur
		o.Items = slices.Clone(cur.Items)
		o.Corrections = slices.Clone(cur.Corrections)
	}
	from := func(allowed ...domain.Status) error {
		if !slices.Contains(allowed, o.Status) {
			return poisonf("%s on order %s in status %s", ev.Event.EventType(), id, o.Status)
		}
		return nil
	}
	before := o.Total
	switch e := ev.Event.(type) {
	case *domain.OrderCreated:
		o = Order{ID: id, CustomerID: e.CustomerID, Currency: e.Currency, Status: domain.StatusOpen,
			Total: e.Total, CreatedAt: at, Items: make([]Item, 0, len(e.Items)), Corrections: []Correction{}}
		for _, l := range e.Items {
			o.Items = append(o.Items, Item(l))
		}
		o.adjustment = e.Total - itemsTotal(o.Items)
		eff.created, eff.open, eff.value = 1, 1, e.Total
		before = 0
	case *domain.OrderItemAdded:
		if err := from(domain.StatusOpen); err != nil {
			return nil, eff, err
		}
		if o.item(e.Item.SKU) >= 0 {
			return nil, eff, poisonf("order %s already has item %q", id, e.Item.SKU)
		}
		o.Items = append(o.Items, Item(e.Item))
	case *domain.OrderItemRemoved:
		if err := from(domain.StatusOpen); err != nil {
			return nil, eff, err
		}
		i := o.item(e.SKU)
		if i < 0 {
			return nil, eff, poisonf("order %s has no item %q to remove", id, e.SKU)
		}
		o.Items = slices.Delete(o.Items, i, i+1)
	case *domain.OrderItemQuantityChanged:
		if err := from(domain.StatusOpen); err != nil {
			return nil, eff, err
		}
		i := o.item(e.SKU)
		if i < 0 {
			return nil, eff, poisonf("order %s has no item %q to change", id, e.SKU)
		}
		o.Items[i].Quantity = e.Quantity
	case *domain.OrderConfirmed:
		if err := from(domain.StatusOpen); err != nil {
			return nil, eff, err
		}
		o.Status, o.ConfirmedAt, eff.confirmed = domain.StatusConfirmed, &at, 1
	case *domain.OrderPaid:
		if err := from(domain.StatusConfirmed); err != nil {
			return nil, eff, err
		}
		o.Status, o.PaidAt = domain.StatusPaid, &at
	case *domain.OrderShipped:
		if err := from(domain.StatusPaid); err != nil {
			return nil, eff, err
		}
		o.Status, o.ShippedAt, eff.shipped = domain.StatusShipped, &at, 1
		o.Carrier, o.TrackingReference = e.Carrier, e.TrackingReference
	case *domain.OrderDelivered:
		if err := from(domain.StatusShipped); err != nil {
			return nil, eff, err
		}
		o.Status, o.DeliveredAt, eff.open = domain.StatusDelivered, &at, -1
	case *domain.OrderCancelled:
		if err := from(domain.StatusOpen, domain.StatusConfirmed, domain.StatusPaid); err != nil {
			return nil, eff, err
		}
		o.Status, o.CancelledAt, o.CancelReason = domain.StatusCancelled, &at, e.Reason
		eff.cancelled, eff.open, eff.value = 1, -1, -o.Total
	case *domain.OrderAmountCorrected:
		if err := from(domain.StatusConfirmed, domain.StatusPaid, domain.StatusShipped, domain.StatusDelivered); err != nil {
			return nil, eff, err
		}
		if e.OldAmount != o.Total {
			return nil, eff, poisonf("order %s correction from %d, but its total is %d", id, e.OldAmount, o.Total)
		}
		o.Total = e.NewAmount
		o.adjustment = e.NewAmount - itemsTotal(o.Items)
		o.Corrections = append(o.Corrections, Correction{Revision: ev.Revision, CorrectedRevision: e.CorrectedRevision,
			OldAmount: e.OldAmount, NewAmount: e.NewAmount, Reason: e.Reason, At: at})
		eff.value = e.NewAmount - e.OldAmount
	default:
		return nil, eff, poisonf("unknown event type %s", ev.Event.EventType())
	}
	switch ev.Event.(type) {
	case *domain.OrderItemAdded, *domain.OrderItemRemoved, *domain.OrderItemQuantityChanged:
		o.Total = itemsTotal(o.Items) + o.adjustment
		eff.value = o.Total - before
	}
	o.Revision, o.LastPosition = ev.Revision, ev.Position
	return &o, eff, nil
}

func (o *Order) item(sku string) int {
	return slices.IndexFunc(o.Items, func(it Item) bool { return it.SKU == sku })
}

// itemsTotal sums the items as the domain does; overflow was ruled out
// before the events were raised.
func itemsTotal(items []Item) int64 {
	var t int64
	for _, it := range items {
		t += it.UnitPrice * it.Quantity
	}
	return t
}

// norm returns t in UTC without a monotonic reading, exactly as it reads
// back from the database.
func norm(t time.Time) time.Time { return time.Unix(0, t.UnixNano()).UTC() }

// bucketStart returns the start of the bucket holding t.
func bucketStart(b Bucket, t time.Time) time.Time {
	t = t.UTC()
	if b == Day {
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	return t.Truncate(time.Hour)
}
