package graph_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/eventing"
)

// TestMutationLifecycle runs every mutation once on the happy path and
// checks the payload: the order as the read model shows it, the appended
// events and the position of the last one.
func TestMutationLifecycle(t *testing.T) {
	e := newEnv(t, config{})
	created := e.createOrder(t, "cust-life")
	id := created.Order.ID
	checkPayload(t, "createOrder", created, 0, "OrderCreated")
	if o := created.Order; o.CustomerID != "cust-life" || o.Status != "OPEN" || o.Total != (money{"10.00", "EUR"}) ||
		len(o.Items) != 1 || o.Items[0] != (orderItem{"A", 2, "5.00"}) || o.Version != 1 {
		t.Fatalf("createOrder: order = %+v", *o)
	}

	steps := []struct {
		field    string
		input    map[string]any
		revision int
		event    string
		check    func(o order) bool
	}{
		{"addOrderItem", map[string]any{"item": map[string]any{"sku": "B", "quantity": 1, "unitPrice": "3.50"}}, 1, "OrderItemAdded",
			func(o order) bool { return o.Total.Amount == "13.50" && len(o.Items) == 2 }},
		{"changeOrderItemQuantity", map[string]any{"sku": "A", "quantity": 3}, 2, "OrderItemQuantityChanged",
			func(o order) bool { return o.Total.Amount == "18.50" }},
		{"removeOrderItem", map[string]any{"sku": "B"}, 3, "OrderItemRemoved",
			func(o order) bool { return o.Total.Amount == "15.00" && len(o.Items) == 1 }},
		{"confirmOrder", map[string]any{}, 4, "OrderConfirmed",
			func(o order) bool { return o.Status == "CONFIRMED" && o.ConfirmedAt != nil }},
		{"markOrderPaid", map[string]any{"amount": "15.00", "reference": "pay-1"}, 5, "OrderPaid",
			func(o order) bool { return o.Status == "PAID" && o.PaidAt != nil }},
		{"correctOrderAmount", map[string]any{"correctedRevision": 0, "newAmount": "14.00", "reason": "discount"}, 6, "OrderAmountCorrected",
			func(o order) bool {
				return o.Total.Amount == "14.00" && len(o.Corrections) == 1 && o.Corrections[0].CorrectedRevision == 0 &&
					o.Corrections[0].OldAmount.Amount == "15.00" && o.Corrections[0].NewAmount.Amount == "14.00"
			}},
		{"shipOrder", map[string]any{"carrier": "DHL", "trackingReference": "T-1"}, 7, "OrderShipped",
			func(o order) bool {
				return o.Status == "SHIPPED" && o.ShippedAt != nil && o.Carrier != nil && *o.Carrier == "DHL" &&
					o.TrackingReference != nil && *o.TrackingReference == "T-1"
			}},
		{"deliverOrder", map[string]any{}, 8, "OrderDelivered",
			func(o order) bool { return o.Status == "DELIVERED" && o.DeliveredAt != nil }},
	}
	for _, s := range steps {
		s.input["orderId"] = id
		p := e.mutate(t, s.field, s.input)
		checkPayload(t, s.field, p, s.revision, s.event)
		if p.Order.ID != id || p.Order.Version != s.revision+1 || !s.check(*p.Order) {
			t.Errorf("%s: order = %+v", s.field, *p.Order)
		}
	}

	other := e.createOrder(t, "cust-life")
	p := e.mutate(t, "cancelOrder", map[string]any{"orderId": other.Order.ID, "reason": "changed my mind"})
	checkPayload(t, "cancelOrder", p, 1, "OrderCancelled")
	if o := p.Order; o.Status != "CANCELLED" || o.CancelledAt == nil || o.CancelReason == nil || *o.CancelReason != "changed my mind" {
		t.Errorf("cancelOrder: order = %+v", *o)
	}
	if n := e.streamLen(t, id); n != 9 {
		t.Errorf("stream of %s has %d events, want 9", id, n)
	}
}

// checkPayload checks a payload with one event of type typ at revision.
func checkPayload(t *testing.T, field string, p payload, revision int, typ string) {
	t.Helper()
	if p.Order == nil {
		t.Fatalf("%s: payload order is null", field)
	}
	if len(p.Events) != 1 {
		t.Fatalf("%s: %d events, want 1", field, len(p.Events))
	}
	ev := p.Events[0]
	if ev.Type != typ || ev.Revision != revision || ev.Position != p.Position || ev.SchemaVersion < 1 ||
		ev.RecordedAt.IsZero() || ev.EventID == "" || len(ev.Data) == 0 {
		t.Errorf("%s: event = %+v, want %s at revision %d and position %s", field, ev, typ, revision, p.Position)
	}
	if ev.Actor == nil || *ev.Actor != "anonymous" || ev.CorrelationID == nil || *ev.CorrelationID == "" {
		t.Errorf("%s: event metadata: actor %v, correlationId %v", field, ev.Actor, ev.CorrelationID)
	}
	if p.Order.LastPosition != p.Position {
		t.Errorf("%s: order.lastPosition = %s, payload position = %s", field, p.Order.LastPosition, p.Position)
	}
	if pos, err := strconv.ParseUint(p.Position, 10, 64); err != nil || pos == 0 {
		t.Errorf("%s: position %q is not a positive decimal", field, p.Position)
	}
}

// TestMutationErrors checks that every rejected command answers with its
// extensions.code and appends nothing.
func TestMutationErrors(t *testing.T) {
	e := newEnv(t, config{})
	open := e.createOrder(t, "cust-err").Order.ID
	confirmed := e.createOrder(t, "cust-err").Order.ID
	e.mutate(t, "confirmOrder", map[string]any{"orderId": confirmed})
	delivered := e.createOrder(t, "cust-err").Order.ID
	for _, step := range []struct {
		field string
		input map[string]any
	}{
		{"confirmOrder", nil}, {"markOrderPaid", map[string]any{"amount": "10.00"}},
		{"shipOrder", map[string]any{"carrier": "UPS", "trackingReference": "1Z"}}, {"deliverOrder", nil},
	} {
		in := map[string]any{"orderId": delivered}
		for k, v := range step.input {
			in[k] = v
		}
		e.mutate(t, step.field, in)
	}
	missing := uuid.NewString()
	items := []map[string]any{{"sku": "A", "quantity": 1, "unitPrice": "1.00"}}

	tests := []struct {
		name, field string
		input       map[string]any
		code        string
		order       string // whose stream must not change; "" for a create
	}{
		{"create/no items", "createOrder", map[string]any{"commandId": "c-empty", "customerId": "c", "currency": "EUR", "items": []any{}}, "INVALID_INPUT", ""},
		{"create/unknown currency", "createOrder", map[string]any{"commandId": "c-cur", "customerId": "c", "currency": "XXQ", "items": items}, "INVALID_INPUT", ""},
		{"create/bad price", "createOrder", map[string]any{"commandId": "c-price", "customerId": "c", "currency": "EUR",
			"items": []map[string]any{{"sku": "A", "quantity": 1, "unitPrice": "1.005"}}}, "INVALID_INPUT", ""},
		{"create/zero quantity", "createOrder", map[string]any{"commandId": "c-qty", "customerId": "c", "currency": "EUR",
			"items": []map[string]any{{"sku": "A", "quantity": 0, "unitPrice": "1.00"}}}, "INVALID_INPUT", ""},
		{"create/no customer", "createOrder", map[string]any{"commandId": "c-cust", "customerId": "", "currency": "EUR", "items": items}, "INVALID_INPUT", ""},
		{"create/empty command ID", "createOrder", map[string]any{"commandId": "", "customerId": "c", "currency": "EUR", "items": items}, "INVALID_INPUT", ""},
		{"create/long command ID", "createOrder", map[string]any{"commandId": strings.Repeat("x", 201), "customerId": "c", "currency": "EUR", "items": items}, "INVALID_INPUT", ""},
		{"create/overflowing total", "createOrder", map[string]any{"commandId": "c-big", "customerId": "c", "currency": "EUR",
			"items": []map[string]any{{"sku": "A", "quantity": 2147483647, "unitPrice": "92233720368547758.07"}}}, "INVALID_INPUT", ""},
		{"add/overflowing total", "addOrderItem", map[string]any{"orderId": open, "item": map[string]any{"sku": "BIG", "quantity": 2147483647, "unitPrice": "92233720368547758.07"}}, "INVALID_INPUT", open},
		{"add/missing order", "addOrderItem", map[string]any{"orderId": missing, "item": items[0]}, "NOT_FOUND", missing},
		{"add/not a UUID", "addOrderItem", map[string]any{"orderId": "nope", "item": items[0]}, "NOT_FOUND", ""},
		{"add/duplicate SKU", "addOrderItem", map[string]any{"orderId": open, "item": map[string]any{"sku": "A", "quantity": 1, "unitPrice": "1.00"}}, "CONFLICT", open},
		{"add/not open", "addOrderItem", map[string]any{"orderId": confirmed, "item": map[string]any{"sku": "Z", "quantity": 1, "unitPrice": "1.00"}}, "ILLEGAL_TRANSITION", confirmed},
		{"remove/unknown SKU", "removeOrderItem", map[string]any{"orderId": open, "sku": "nope"}, "INVALID_INPUT", open},
		{"remove/missing order", "removeOrderItem", map[string]any{"orderId": missing, "sku": "A"}, "NOT_FOUND", missing},
		{"quantity/zero", "changeOrderItemQuantity", map[string]any{"orderId": open, "sku": "A", "quantity": 0}, "INVALID_INPUT", open},
		{"quantity/not open", "changeOrderItemQuantity", map[string]any{"orderId": confirmed, "sku": "A", "quantity": 5}, "ILLEGAL_TRANSITION", confirmed},
		{"confirm/twice", "confirmOrder", map[string]any{"orderId": confirmed}, "ILLEGAL_TRANSITION", confirmed},
		{"confirm/missing order", "confirmOrder", map[string]any{"orderId": missing}, "NOT_FOUND", missing},
		{"pay/open", "markOrderPaid", map[string]any{"orderId": open, "amount": "10.00"}, "ILLEGAL_TRANSITION", open},
		{"pay/wrong amount", "markOrderPaid", map[string]any{"orderId": confirmed, "amount": "9.99"}, "INVALID_INPUT", confirmed},
		{"pay/bad amount", "markOrderPaid", map[string]any{"orderId": confirmed, "amount": "ten"}, "INVALID_INPUT", confirmed},
		{"ship/open", "shipOrder", map[string]any{"orderId": open, "carrier": "UPS", "trackingReference": "1Z"}, "ILLEGAL_TRANSITION", open},
		{"deliver/open", "deliverOrder", map[string]any{"orderId": open}, "ILLEGAL_TRANSITION", open},
		{"deliver/twice", "deliverOrder", map[string]any{"orderId": delivered}, "ILLEGAL_TRANSITION", delivered},
		{"cancel/no reason", "cancelOrder", map[string]any{"orderId": open, "reason": ""}, "INVALID_INPUT", open},
		{"cancel/delivered", "cancelOrder", map[string]any{"orderId": delivered, "reason": "late"}, "ILLEGAL_TRANSITION", delivered},
		{"cancel/missing order", "cancelOrder", map[string]any{"orderId": missing, "reason": "x"}, "NOT_FOUND", missing},
		{"correct/open", "correctOrderAmount", map[string]any{"orderId": open, "correctedRevision": 0, "newAmount": "1.00", "reason": "x"}, "ILLEGAL_TRANSITION", open},
		{"correct/negative revision", "correctOrderAmount", map[string]any{"orderId": confirmed, "correctedRevision": -1, "newAmount": "1.00", "reason": "x"}, "INVALID_INPUT", confirmed},
		{"correct/no such revision", "correctOrderAmount", map[string]any{"orderId": confirmed, "correctedRevision": 99, "newAmount": "1.00", "reason": "x"}, "INVALID_INPUT", confirmed},
		{"correct/same amount", "correctOrderAmount", map[string]any{"orderId": confirmed, "correctedRevision": 0, "newAmount": "10.00", "reason": "x"}, "INVALID_INPUT", confirmed},
		{"correct/no reason", "correctOrderAmount", map[string]any{"orderId": confirmed, "correctedRevision": 0, "newAmount": "9.00", "reason": ""}, "INVALID_INPUT", confirmed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.orderEvents(t)
			streamBefore := -1
			if tt.order != "" {
				streamBefore = e.streamLen(t, tt.order)
			}
			res := e.mutateRes(t, tt.field, tt.input)
			if len(res.Errors) != 1 || res.Errors[0].code() != tt.code {
				t.Fatalf("errors = %+v, want one with code %s", res.Errors, tt.code)
			}
			if string(res.Data) != "null" {
				t.Errorf("data = %s, want null", res.Data)
			}
			if after := e.orderEvents(t); after != before {
				t.Errorf("$all has %d order events, had %d before", after, before)
			}
			if tt.order != "" {
				if n := e.streamLen(t, tt.order); n != streamBefore {
					t.Errorf("stream of %s has %d events, had %d", tt.order, n, streamBefore)
				}
			}
			if tt.field == "createOrder" {
				if cmd, _ := tt.input["commandId"].(string); cmd != "" {
					// eventing.NewOrderID(commandId) names the order it would have made.
					if n := e.streamLen(t, eventing.NewOrderID(cmd)); n != -1 {
						t.Errorf("create with command %s wrote a stream of %d events", cmd, n)
					}
				}
			}
		})
	}
}

// TestNotFoundMessage: a command on a missing order says so in the API's
// terms; the event store's error (its code, its text, the stream name) is
// for the log only.
func TestNotFoundMessage(t *testing.T) {
	e := newEnv(t, config{})
	missing := uuid.NewString()
	for _, field := range []string{"confirmOrder", "deliverOrder"} {
		res := e.mutateRes(t, field, map[string]any{"orderId": missing})
		if len(res.Errors) != 1 || res.Errors[0].code() != "NOT_FOUND" {
			t.Fatalf("%s: errors = %+v, want NOT_FOUND", field, res.Errors)
		}
		msg := res.Errors[0].Message
		for _, leak := range []string{"ErrorCode", "remote resource", "stream", "order-" + missing, "eventing:", "rpc"} {
			if strings.Contains(msg, leak) {
				t.Errorf("%s: message %q exposes %q", field, msg, leak)
			}
		}
		if !strings.Contains(msg, missing) {
			t.Errorf("%s: message %q does not name the order", field, msg)
		}
	}
}

// TestRetriedCommand sends an update twice with the same command ID: the
// retry returns the original events and position and appends nothing.
func TestRetriedCommand(t *testing.T) {
	e := newEnv(t, config{})
	id := e.createOrder(t, "cust-retry").Order.ID
	in := map[string]any{"orderId": id, "commandId": "confirm-1"}
	first := e.mutate(t, "confirmOrder", in)
	second := e.mutate(t, "confirmOrder", in)
	if first.Position != second.Position || len(second.Events) != 1 || second.Events[0].EventID != first.Events[0].EventID {
		t.Errorf("retry: position %s events %+v, want %s and %+v", second.Position, second.Events, first.Position, first.Events)
	}
	if c := second.Events[0].CommandID; c == nil || *c != "confirm-1" {
		t.Errorf("retry: commandId = %v", c)
	}
	if n := e.streamLen(t, id); n != 2 {
		t.Errorf("stream has %d events after a retried confirm, want 2", n)
	}
}

// TestConcurrentCreateSameCommand is GQL-15: ten concurrent createOrder
// calls with one commandId make one order with one event, and every answer
// names the same order, event and position.
func TestConcurrentCreateSameCommand(t *testing.T) {
	e := newEnv(t, config{})
	const n = 10
	in := map[string]any{"commandId": "create-once", "customerId": "cust-once", "currency": "EUR",
		"items": []map[string]any{{"sku": "A", "quantity": 1, "unitPrice": "1.00"}}}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = e.mutateRes(t, "createOrder", in) })
	}
	wg.Wait()
	var first payload
	for i, res := range results {
		if len(res.Errors) > 0 {
			t.Errorf("call %d: errors %+v", i, res.Errors)
			continue
		}
		var out struct{ CreateOrder payload }
		res.decode(t, &out)
		p := out.CreateOrder
		if p.Order == nil || len(p.Events) != 1 {
			t.Errorf("call %d: payload %+v", i, p)
			continue
		}
		if first.Order == nil {
			first = p
			continue
		}
		if p.Order.ID != first.Order.ID || p.Position != first.Position || p.Events[0].EventID != first.Events[0].EventID {
			t.Errorf("call %d: order %s position %s event %s; call 0: %s %s %s", i,
				p.Order.ID, p.Position, p.Events[0].EventID, first.Order.ID, first.Position, first.Events[0].EventID)
		}
	}
	if first.Order == nil {
		t.Fatal("no call succeeded")
	}
	if got := e.streamLen(t, first.Order.ID); got != 1 {
		t.Errorf("order stream has %d events, want 1", got)
	}
	if got := e.orderEvents(t); got != 1 {
		t.Errorf("$all has %d order events, want 1", got)
	}
	var page struct {
		Orders struct {
			Edges []struct{ Node struct{ ID string } }
		}
	}
	e.mustDo(t, `{ orders(filter: {customerId: "cust-once"}) { edges { node { id } } } }`, nil, &page)
	if len(page.Orders.Edges) != 1 {
		t.Errorf("read model has %d orders for the customer, want 1", len(page.Orders.Edges))
	}
}

// TestMutationStaleRead holds the projection back: the command is stored
// and its payload carries events and position, with order null and a
// STALE_READ error; once the projection runs again the write is readable.
func TestMutationStaleRead(t *testing.T) {
	e := newEnv(t, config{readWait: 100 * time.Millisecond})
	id := e.createOrder(t, "cust-stale").Order.ID
	resume := e.pause(t)
	res := e.mutateRes(t, "confirmOrder", map[string]any{"orderId": id})
	if len(res.Errors) != 1 || res.Errors[0].code() != "STALE_READ" {
		t.Fatalf("errors = %+v, want STALE_READ", res.Errors)
	}
	var out struct{ ConfirmOrder payload }
	res.decode(t, &out)
	p := out.ConfirmOrder
	if p.Order != nil || len(p.Events) != 1 || p.Events[0].Type != "OrderConfirmed" || p.Position != p.Events[0].Position {
		t.Errorf("payload = %+v, want order null and the OrderConfirmed event", p)
	}
	if n := e.streamLen(t, id); n != 2 {
		t.Errorf("stream has %d events, want 2: the command was stored", n)
	}
	const q = `query($id: ID!, $p: Position) { order(id: $id, minPosition: $p) { status } }`
	vars := map[string]any{"id": id, "p": p.Position}
	if res := e.do(t, q, vars); !res.hasCode("STALE_READ") {
		t.Errorf("query while paused: errors = %+v, want STALE_READ", res.Errors)
	}
	resume()
	var got struct{ Order struct{ Status string } }
	for range 100 { // each attempt waits up to readWait for the projection
		if res := e.do(t, q, vars); len(res.Errors) == 0 {
			res.decode(t, &got)
			break
		}
	}
	if got.Order.Status != "CONFIRMED" {
		t.Errorf("after resuming: status %q, want CONFIRMED", got.Order.Status)
	}
}

// TestConcurrentUpdateSameCommand: ten concurrent confirmOrder calls with
// one commandId append one event and all answer with it.
func TestConcurrentUpdateSameCommand(t *testing.T) {
	e := newEnv(t, config{})
	id := e.createOrder(t, "cust-once").Order.ID
	in := map[string]any{"orderId": id, "commandId": "confirm-once"}
	results := make([]result, 10)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i] = e.mutateRes(t, "confirmOrder", in) })
	}
	wg.Wait()
	positions := map[string]int{}
	for i, res := range results {
		if len(res.Errors) > 0 {
			t.Errorf("call %d: errors %+v", i, res.Errors)
			continue
		}
		var out struct{ ConfirmOrder payload }
		res.decode(t, &out)
		if p := out.ConfirmOrder; len(p.Events) != 1 || p.Events[0].Revision != 1 || p.Order == nil || p.Order.Status != "CONFIRMED" {
			t.Errorf("call %d: payload %+v", i, p)
		}
		positions[out.ConfirmOrder.Position]++
	}
	if len(positions) != 1 {
		t.Errorf("positions %v, want one", positions)
	}
	if n := e.streamLen(t, id); n != 2 {
		t.Errorf("stream has %d events, want 2", n)
	}
}
