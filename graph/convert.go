package graph

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/graph/model"
	"github.com/ordertrail/ordertrail/readstore"
)

func money(amount int64, currency string) model.Money {
	return model.Money{Amount: domain.Money{Amount: amount, Currency: currency}.String(), Currency: currency}
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func orderItems(currency string, lines []readstore.Item) []*model.OrderItem {
	items := make([]*model.OrderItem, len(lines))
	for i, l := range lines {
		items[i] = &model.OrderItem{Sku: l.SKU, Quantity: int(l.Quantity), UnitPrice: money(l.UnitPrice, currency).Amount}
	}
	return items
}

func toOrder(o readstore.Order) *model.Order {
	corrections := make([]*model.AmountCorrection, len(o.Corrections))
	for i, c := range o.Corrections {
		corrections[i] = &model.AmountCorrection{
			CorrectedRevision: int(c.CorrectedRevision),
			OldAmount:         money(c.OldAmount, o.Currency),
			NewAmount:         money(c.NewAmount, o.Currency),
			Reason:            c.Reason,
			CorrectedAt:       c.At,
		}
	}
	return &model.Order{
		ID:                o.ID,
		CustomerID:        o.CustomerID,
		Status:            model.OrderStatus(o.Status),
		Total:             money(o.Total, o.Currency),
		Items:             orderItems(o.Currency, o.Items),
		CreatedAt:         o.CreatedAt,
		ConfirmedAt:       o.ConfirmedAt,
		PaidAt:            o.PaidAt,
		ShippedAt:         o.ShippedAt,
		DeliveredAt:       o.DeliveredAt,
		CancelledAt:       o.CancelledAt,
		CancelReason:      optString(o.CancelReason),
		Carrier:           optString(o.Carrier),
		TrackingReference: optString(o.TrackingReference),
		Corrections:       corrections,
		Version:           int(o.Revision) + 1,
		LastPosition:      model.Position(o.LastPosition),
	}
}

func toOrderState(o *domain.Order) *model.OrderState {
	lines := o.Lines()
	items := make([]*model.OrderItem, len(lines))
	for i, l := range lines {
		items[i] = &model.OrderItem{Sku: l.SKU, Quantity: int(l.Quantity), UnitPrice: money(l.UnitPrice, o.Currency()).Amount}
	}
	return &model.OrderState{
		ID:           o.ID(),
		CustomerID:   o.CustomerID(),
		Status:       model.OrderStatus(o.Status()),
		Total:        money(o.Total().Amount, o.Currency()),
		Items:        items,
		CancelReason: optString(o.CancelReason()),
		Version:      o.Version(),
	}
}

func toHistoryEvents(envs []eventing.Envelope) []*model.HistoryEvent {
	out := make([]*model.HistoryEvent, len(envs))
	for i, e := range envs {
		out[i] = toHistoryEvent(e)
	}
	return out
}

func toHistoryEvent(e eventing.Envelope) *model.HistoryEvent {
	data := model.JSON(e.Data)
	if !json.Valid(data) {
		raw, _ := json.Marshal(string(e.Data))
		data = raw
	}
	var meta model.JSON
	if len(e.RawMeta) > 0 && json.Valid(e.RawMeta) {
		meta = model.JSON(e.RawMeta)
	}
	return &model.HistoryEvent{
		EventID:       e.EventID,
		Type:          e.Type,
		Revision:      clampInt(e.Revision),
		Position:      model.Position(e.Position),
		RecordedAt:    e.RecordedAt,
		Data:          data,
		Metadata:      meta,
		SchemaVersion: e.Metadata.SchemaVersion,
		CorrelationID: optString(e.Metadata.CorrelationID),
		CausationID:   optString(e.Metadata.CausationID),
		CommandID:     optString(e.Metadata.CommandID),
		Actor:         optString(e.Metadata.Actor),
	}
}

func clampInt(v uint64) int {
	if v > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(v)
}

func toTrend(t readstore.Trend) *model.OrderTrend {
	out := &model.OrderTrend{
		Bucket:          model.TrendBucket(t.Bucket),
		BucketStart:     t.BucketStart,
		Currency:        t.Currency,
		OrdersCreated:   int(t.Created),
		OrdersConfirmed: int(t.Confirmed),
		OrdersShipped:   int(t.Shipped),
		OrdersCancelled: int(t.Cancelled),
		Revenue:         money(t.Revenue, t.Currency),
	}
	if t.Created > 0 {
		avg := money(t.AverageOrderValue, t.Currency)
		out.AverageOrderValue = &avg
	}
	return out
}

// newItems validates and converts item inputs into domain items.
func newItems(currency string, in []*model.OrderItemInput) ([]domain.NewItem, error) {
	items := make([]domain.NewItem, 0, len(in))
	for i, it := range in {
		if it == nil {
			continue
		}
		item, err := newItem(currency, *it)
		if err != nil {
			return nil, fmt.Errorf("items[%d]: %w", i, err)
		}
		items = append(items, item)
	}
	return items, nil
}

func newItem(currency string, it model.OrderItemInput) (domain.NewItem, error) {
	price, err := domain.ParseMoney(it.UnitPrice, currency)
	if err != nil {
		return domain.NewItem{}, fmt.Errorf("unitPrice: %w", err)
	}
	return domain.NewItem{SKU: it.Sku, Quantity: int64(it.Quantity), UnitPrice: price}, nil
}
