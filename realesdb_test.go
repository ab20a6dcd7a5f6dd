package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestRealEventStore is a smoke test of the service against a real
// EventStoreDB node: create an order, read it back with minPosition, and
// see its changes on a websocket subscription. It runs only when
// ORDERTRAIL_TEST_EVENTSTORE holds a connection string.
func TestRealEventStore(t *testing.T) {
	conn := os.Getenv("ORDERTRAIL_TEST_EVENTSTORE")
	if conn == "" {
		t.Skip("ORDERTRAIL_TEST_EVENTSTORE is not set. To run this smoke test against a real node:\n" +
			"  docker run --name esdb -it -p 2113:2113 eventstore/eventstore:24.10 --insecure --run-projections=All\n" +
			"  ORDERTRAIL_TEST_EVENTSTORE='esdb://127.0.0.1:2113?tls=false' go test -race -run 'Conformance|RealEventStore' ./...")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bin := serviceBinary(t)
	// A node that already holds other runs' orders is fine: the fresh read
	// model catches up on all of them, hence the generous read wait.
	api := repStart(t, bin, "api", freeAddr(t), "serve", "--data", filepath.Join(t.TempDir(), "data"),
		"--eventstore", conn, "--read-wait", "60s")
	customer := "c-realesdb-" + strconv.FormatInt(time.Now().UnixNano(), 36)

	sub := repSubscribe(ctx, t, api.url, map[string]any{"customerId": customer, "fromPosition": "0"})
	o := repCreateOrder(ctx, t, api, customer, "E-1")

	var got struct {
		Order *struct {
			ID, Status string
			Total      struct{ Amount, Currency string }
			History    []struct{ Type string }
		}
	}
	api.mustDo(ctx, t, `query($id: ID!, $p: Position) { order(id: $id, minPosition: $p) {
		id status total { amount currency } history { type } } }`,
		map[string]any{"id": o.id, "p": repPos(o.position)}, &got)
	if g := got.Order; g == nil || g.ID != o.id || g.Status != "OPEN" || g.Total.Amount != "2.50" || g.Total.Currency != "USD" ||
		len(g.History) != 1 || g.History[0].Type != "OrderCreated" {
		t.Errorf("order(id: %s, minPosition: %d) = %+v, want OPEN, 2.50 USD, history [OrderCreated]", o.id, o.position, got.Order)
	}

	if c := sub.next(ctx, t, 60*time.Second); c.Order.ID != o.id || c.EventType != "OrderCreated" || c.Position != repPos(o.position) {
		t.Errorf("first orderChanged = %+v, want %s OrderCreated at %d", c, o.id, o.position)
	}
	var confirmed struct{ ConfirmOrder struct{ Position string } }
	api.mustDo(ctx, t, `mutation($id: ID!) { confirmOrder(input: {orderId: $id, commandId: "smoke"}) { position } }`,
		map[string]any{"id": o.id}, &confirmed)
	if c := sub.next(ctx, t, 30*time.Second); c.Order.ID != o.id || c.EventType != "OrderConfirmed" || c.Position != confirmed.ConfirmOrder.Position {
		t.Errorf("second orderChanged = %+v, want %s OrderConfirmed at %s", c, o.id, confirmed.ConfirmOrder.Position)
	}
	if code := repWaitReady(ctx, api, http.StatusOK, 30*time.Second); code != http.StatusOK {
		t.Errorf("GET /readyz = %d, want 200 against a reachable node", code)
	}
}
