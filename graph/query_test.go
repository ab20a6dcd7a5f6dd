package graph_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
)

// TestOrderQuery reads one order with its history and past states.
func TestOrderQuery(t *testing.T) {
	e := newEnv(t, config{})
	created := e.createOrder(t, "cust-q")
	id := created.Order.ID
	e.mutate(t, "addOrderItem", map[string]any{"orderId": id, "commandId": "add-b",
		"item": map[string]any{"sku": "B", "quantity": 1, "unitPrice": "1.50"}})
	confirmed := e.mutate(t, "confirmOrder", map[string]any{"orderId": id})

	var got struct {
		Order struct {
			order
			Customer struct {
				ID         string
				OrderCount int
			}
			History []historyEvent
			First   struct {
				Status  string
				Total   money
				Version int
				Items   []orderItem
			}
			Second struct {
				Status  string
				Total   money
				Version int
			}
			Now struct{ Version int }
		}
	}
	e.mustDo(t, `query($id: ID!, $p: Position, $t: Time!) { order(id: $id, minPosition: $p) { `+orderFields+`
		customer { id orderCount }
		history { eventId type revision position recordedAt data schemaVersion commandId actor correlationId }
		first: asOf(revision: 0) { status total { amount currency } version items { sku quantity unitPrice } }
		second: asOf(time: $t) { status total { amount currency } version }
		now: asOf(revision: 99) { version } } }`,
		map[string]any{"id": id, "p": confirmed.Position, "t": confirmed.Events[0].RecordedAt.Add(-time.Microsecond)}, &got)
	o := got.Order
	if o.Status != "CONFIRMED" || o.Version != 3 || o.Total.Amount != "11.50" || o.LastPosition != confirmed.Position {
		t.Errorf("order = %+v", o.order)
	}
	if o.Customer.ID != "cust-q" || o.Customer.OrderCount != 1 {
		t.Errorf("customer = %+v", o.Customer)
	}
	types := make([]string, len(o.History))
	for i, h := range o.History {
		types[i] = h.Type
		if h.Revision != i {
			t.Errorf("history[%d].revision = %d", i, h.Revision)
		}
	}
	if !slices.Equal(types, []string{"OrderCreated", "OrderItemAdded", "OrderConfirmed"}) {
		t.Errorf("history types = %v", types)
	}
	if len(o.History) == 3 {
		if c := o.History[1].CommandID; c == nil || *c != "add-b" {
			t.Errorf("history[1].commandId = %v, want add-b", c)
		}
		if o.History[0].EventID != created.Events[0].EventID || o.History[2].Position != confirmed.Position {
			t.Errorf("history does not match the payloads: %+v", o.History)
		}
	}
	if o.First.Status != "OPEN" || o.First.Version != 1 || o.First.Total.Amount != "10.00" || len(o.First.Items) != 1 {
		t.Errorf("asOf(revision: 0) = %+v", o.First)
	}
	if o.Second.Status != "OPEN" || o.Second.Version != 2 || o.Second.Total.Amount != "11.50" {
		t.Errorf("asOf(time: before the confirmation) = %+v", o.Second)
	}
	if o.Now.Version != 3 {
		t.Errorf("asOf(revision: 99).version = %d, want 3", o.Now.Version)
	}

	for _, tt := range []struct{ name, query, code string }{
		{"asOf without arguments", `{ order(id: "` + id + `") { asOf { version } } }`, "INVALID_INPUT"},
		{"asOf negative revision", `{ order(id: "` + id + `") { asOf(revision: -1) { version } } }`, "INVALID_INPUT"},
		{"asOf before the order", `{ order(id: "` + id + `") { asOf(time: "2000-01-01T00:00:00Z") { version } } }`, "NOT_FOUND"},
		{"missing order", `{ order(id: "` + uuid.NewString() + `") { id } }`, "NOT_FOUND"},
		{"not a UUID", `{ order(id: "x") { id } }`, "NOT_FOUND"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(t, tt.query, nil)
			if !res.hasCode(tt.code) {
				t.Errorf("errors = %+v, want code %s", res.Errors, tt.code)
			}
		})
	}
}

// TestOrderPagesReadItemsWhenAsked: a page reads the orders' items only
// when the selection reaches them, directly or through fragments; either
// way each order has the items it was created with.
func TestOrderPagesReadItemsWhenAsked(t *testing.T) {
	e := newEnv(t, config{})
	last := e.createOrder(t, "cust-items")
	vars := map[string]any{"p": last.Position}
	type items struct {
		Edges []struct{ Node struct{ Items []orderItem } }
	}
	for name, query := range map[string]string{
		"direct": `query($p: Position) { orders(first: 5, minPosition: $p) { edges { node { items { sku quantity unitPrice } } } } }`,
		"fragments": `query($p: Position) { orders(first: 5, minPosition: $p) { ...page } }
			fragment page on OrderConnection { edges { ... on OrderEdge { node { ...lines } } } }
			fragment lines on Order { items { sku quantity unitPrice } }`,
	} {
		t.Run(name, func(t *testing.T) {
			var got struct{ Orders items }
			e.mustDo(t, query, vars, &got)
			if len(got.Orders.Edges) != 1 || !slices.Equal(got.Orders.Edges[0].Node.Items, []orderItem{{Sku: "A", Quantity: 2, UnitPrice: "5.00"}}) {
				t.Errorf("orders = %+v, want one order with 2 × A at 5.00", got.Orders)
			}
		})
	}
	var got struct{ Customer struct{ Orders items } }
	e.mustDo(t, `query($p: Position) { customer(id: "cust-items", minPosition: $p) { orders { edges { node { items { sku quantity unitPrice } } } } } }`, vars, &got)
	if len(got.Customer.Orders.Edges) != 1 || len(got.Customer.Orders.Edges[0].Node.Items) != 1 {
		t.Errorf("customer orders = %+v, want one order with its item", got.Customer.Orders)
	}
	var bare struct {
		Orders struct {
			Edges []struct{ Node struct{ ID string } }
		}
	}
	e.mustDo(t, `query($p: Position) { orders(first: 5, minPosition: $p) { edges { node { id } } } }`, vars, &bare)
	if len(bare.Orders.Edges) != 1 || bare.Orders.Edges[0].Node.ID != last.Order.ID {
		t.Errorf("orders without items = %+v", bare.Orders)
	}
}

type orderPage struct {
	Edges []struct {
		Cursor string
		Node   struct {
			ID        string
			Status    string
			CreatedAt time.Time
		}
	}
	PageInfo struct {
		HasNextPage bool
		EndCursor   *string
	}
}

func (p orderPage) ids() []string {
	out := make([]string, len(p.Edges))
	for i, e := range p.Edges {
		out[i] = e.Node.ID
	}
	return out
}

const pageQuery = `query($first: Int, $after: String, $filter: OrderFilter, $by: OrderOrder, $p: Position) {
	orders(first: $first, after: $after, filter: $filter, orderBy: $by, minPosition: $p) {
		edges { cursor node { id status createdAt } } pageInfo { hasNextPage endCursor } } }`

// TestOrdersQuery pages through orders with cursors, filters and both
// orderings.
func TestOrdersQuery(t *testing.T) {
	e := newEnv(t, config{})
	var ids []string
	var last payload
	for range 5 {
		last = e.createOrder(t, "cust-p1")
		ids = append(ids, last.Order.ID)
	}
	e.createOrder(t, "cust-p2")
	last = e.mutate(t, "confirmOrder", map[string]any{"orderId": ids[1]})

	page := func(t *testing.T, vars map[string]any) orderPage {
		t.Helper()
		var out struct{ Orders orderPage }
		e.mustDo(t, pageQuery, vars, &out)
		return out.Orders
	}
	all := func(t *testing.T, by string, size int) []string {
		var got []string
		vars := map[string]any{"first": size, "filter": map[string]any{"customerId": "cust-p1"}, "by": by, "p": last.Position}
		for range 10 {
			p := page(t, vars)
			got = append(got, p.ids()...)
			if !p.PageInfo.HasNextPage {
				return got
			}
			if p.PageInfo.EndCursor == nil || *p.PageInfo.EndCursor != p.Edges[len(p.Edges)-1].Cursor {
				t.Fatalf("endCursor = %v, last edge cursor %q", p.PageInfo.EndCursor, p.Edges[len(p.Edges)-1].Cursor)
			}
			vars["after"] = *p.PageInfo.EndCursor
		}
		t.Fatal("more than 10 pages")
		return nil
	}
	t.Run("ascending in pages of 2", func(t *testing.T) {
		if got := all(t, "CREATED_AT_ASC", 2); !slices.Equal(got, ids) {
			t.Errorf("ids = %v, want %v", got, ids)
		}
	})
	t.Run("descending in pages of 3", func(t *testing.T) {
		want := slices.Clone(ids)
		slices.Reverse(want)
		if got := all(t, "CREATED_AT_DESC", 3); !slices.Equal(got, want) {
			t.Errorf("ids = %v, want %v", got, want)
		}
	})
	t.Run("default order is newest first", func(t *testing.T) {
		p := page(t, map[string]any{"first": 1})
		if len(p.Edges) != 1 || p.Edges[0].Node.ID == ids[0] || !p.PageInfo.HasNextPage {
			t.Errorf("page = %+v", p)
		}
	})
	t.Run("status filter", func(t *testing.T) {
		p := page(t, map[string]any{"filter": map[string]any{"status": []string{"CONFIRMED"}}})
		if !slices.Equal(p.ids(), []string{ids[1]}) {
			t.Errorf("confirmed orders = %v, want [%s]", p.ids(), ids[1])
		}
		p = page(t, map[string]any{"filter": map[string]any{"status": []string{"OPEN"}, "customerId": "cust-p2"}})
		if len(p.Edges) != 1 {
			t.Errorf("open orders of cust-p2 = %v, want one", p.ids())
		}
	})
	t.Run("creation range", func(t *testing.T) {
		p := page(t, map[string]any{"filter": map[string]any{"customerId": "cust-p1"}, "by": "CREATED_AT_ASC"})
		from, to := p.Edges[1].Node.CreatedAt, p.Edges[3].Node.CreatedAt
		var want []string
		for _, edge := range p.Edges {
			if c := edge.Node.CreatedAt; !c.Before(from) && c.Before(to) {
				want = append(want, edge.Node.ID)
			}
		}
		got := page(t, map[string]any{"filter": map[string]any{"customerId": "cust-p1", "createdFrom": from, "createdTo": to}, "by": "CREATED_AT_ASC"})
		if !slices.Equal(got.ids(), want) || len(want) == 0 {
			t.Errorf("orders created in [%v, %v) = %v, want %v", from, to, got.ids(), want)
		}
	})
	t.Run("first 0 is an empty page", func(t *testing.T) {
		p := page(t, map[string]any{"first": 0, "filter": map[string]any{"customerId": "cust-p1"}})
		if len(p.Edges) != 0 {
			t.Errorf("orders(first: 0) returned %d edges, want none", len(p.Edges))
		}
	})
	t.Run("empty page", func(t *testing.T) {
		p := page(t, map[string]any{"filter": map[string]any{"customerId": "nobody"}})
		if len(p.Edges) != 0 || p.PageInfo.HasNextPage || p.PageInfo.EndCursor != nil {
			t.Errorf("page = %+v", p)
		}
	})
	ascCursor := page(t, map[string]any{"first": 1, "by": "CREATED_AT_ASC"}).PageInfo.EndCursor
	for _, tt := range []struct {
		name string
		vars map[string]any
	}{
		{"first above the maximum", map[string]any{"first": 101}},
		{"first huge", map[string]any{"first": 99999999}},
		{"first negative", map[string]any{"first": -1}},
		{"garbage cursor", map[string]any{"after": "not-a-cursor"}},
		{"cursor of another order", map[string]any{"after": *ascCursor, "by": "CREATED_AT_DESC"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(t, pageQuery, tt.vars)
			if !res.hasCode("INVALID_INPUT") {
				t.Errorf("errors = %+v, want INVALID_INPUT", res.Errors)
			}
		})
	}
}

// TestOrderCustomers reads the customer of every order on a page, through
// the per-request dataloader: each order gets its own customer.
func TestOrderCustomers(t *testing.T) {
	e := newEnv(t, config{})
	var last payload
	for i := range 9 {
		last = e.createOrder(t, fmt.Sprintf("cust-l%d", i%3))
	}
	e.createOrder(t, "cust-l1")
	calls := e.readCalls.Load()
	var got struct {
		Orders struct {
			Edges []struct {
				Node struct {
					CustomerID string
					Customer   struct {
						ID         string
						OrderCount int
					}
				}
			}
		}
	}
	e.mustDo(t, `query($p: Position) { orders(first: 100, minPosition: $p) { edges { node { customerId customer { id orderCount } } } } }`,
		map[string]any{"p": last.Position}, &got)
	want := map[string]int{"cust-l0": 3, "cust-l1": 4, "cust-l2": 3}
	if len(got.Orders.Edges) != 10 {
		t.Fatalf("%d orders, want 10", len(got.Orders.Edges))
	}
	for _, edge := range got.Orders.Edges {
		n := edge.Node
		if n.Customer.ID != n.CustomerID || n.Customer.OrderCount != want[n.CustomerID] {
			t.Errorf("order of %s has customer %+v", n.CustomerID, n.Customer)
		}
	}
	t.Logf("%d read-model calls for 10 orders and their customers", e.readCalls.Load()-calls)
}

// TestCustomerTrendsStatus covers customer, orderTrends and projectionStatus.
func TestCustomerTrendsStatus(t *testing.T) {
	e := newEnv(t, config{})
	a := e.createOrder(t, "cust-t").Order.ID
	e.createOrder(t, "cust-t")
	e.mutate(t, "confirmOrder", map[string]any{"orderId": a})
	last := e.mutate(t, "cancelOrder", map[string]any{"orderId": a, "reason": "no"})

	var c struct {
		Customer struct {
			ID            string
			OrderCount    int
			OpenOrders    int
			LifetimeValue []money
			FirstOrderAt  *time.Time
			LastOrderAt   *time.Time
			Orders        orderPage
		}
	}
	e.mustDo(t, `query($p: Position) { customer(id: "cust-t", minPosition: $p) { id orderCount openOrders
		lifetimeValue { amount currency } firstOrderAt lastOrderAt
		orders(first: 1) { edges { cursor node { id status createdAt } } pageInfo { hasNextPage endCursor } } } }`,
		map[string]any{"p": last.Position}, &c)
	cu := c.Customer
	if cu.OrderCount != 2 || cu.OpenOrders != 1 || len(cu.LifetimeValue) != 1 || cu.LifetimeValue[0] != (money{"10.00", "EUR"}) ||
		cu.FirstOrderAt == nil || cu.LastOrderAt == nil || len(cu.Orders.Edges) != 1 || !cu.Orders.PageInfo.HasNextPage {
		t.Errorf("customer = %+v", cu)
	}
	if res := e.do(t, `{ customer(id: "nobody") { id } }`, nil); !res.hasCode("NOT_FOUND") {
		t.Errorf("unknown customer: errors = %+v, want NOT_FOUND", res.Errors)
	}

	var tr struct {
		OrderTrends []struct {
			Bucket                                                         string
			BucketStart                                                    time.Time
			Currency                                                       string
			OrdersCreated, OrdersConfirmed, OrdersShipped, OrdersCancelled int
			Revenue                                                        money
			AverageOrderValue                                              *money
		}
	}
	now := time.Now().UTC()
	e.mustDo(t, `query($from: Time!, $to: Time!, $p: Position) { orderTrends(from: $from, to: $to, bucket: DAY, currency: "EUR", minPosition: $p) {
		bucket bucketStart currency ordersCreated ordersConfirmed ordersShipped ordersCancelled revenue { amount currency } averageOrderValue { amount } } }`,
		map[string]any{"from": now.Add(-48 * time.Hour), "to": now.Add(48 * time.Hour), "p": last.Position}, &tr)
	created, confirmed, cancelled := 0, 0, 0
	for _, b := range tr.OrderTrends {
		if b.Bucket != "DAY" || b.Currency != "EUR" || !b.BucketStart.Equal(b.BucketStart.Truncate(24*time.Hour)) {
			t.Errorf("bucket = %+v", b)
		}
		created += b.OrdersCreated
		confirmed += b.OrdersConfirmed
		cancelled += b.OrdersCancelled
	}
	if created != 2 || confirmed != 1 || cancelled != 1 {
		t.Errorf("trends: created %d confirmed %d cancelled %d, want 2 1 1 (%+v)", created, confirmed, cancelled, tr.OrderTrends)
	}
	if len(tr.OrderTrends) == 1 && tr.OrderTrends[0].Revenue.Amount != "10.00" {
		t.Errorf("revenue = %+v, want 10.00 (20.00 created − 10.00 cancelled)", tr.OrderTrends[0].Revenue)
	}
	var none struct{ OrderTrends []struct{ Currency string } }
	e.mustDo(t, `query($from: Time!, $to: Time!) { orderTrends(from: $from, to: $to, currency: "USD") { currency } }`,
		map[string]any{"from": now.Add(-time.Hour), "to": now.Add(time.Hour)}, &none)
	if len(none.OrderTrends) != 0 {
		t.Errorf("USD trends = %+v, want none", none.OrderTrends)
	}
	if res := e.do(t, `{ orderTrends(from: "2026-01-02T00:00:00Z", to: "2026-01-01T00:00:00Z") { currency } }`, nil); !res.hasCode("INVALID_INPUT") {
		t.Errorf("to before from: errors = %+v, want INVALID_INPUT", res.Errors)
	}

	var st struct {
		ProjectionStatus struct {
			Projection, State string
			Checkpoint        string
			Connected         bool
			DeadLetters       int
			HaltedAt, Error   *string
		}
	}
	e.mustDo(t, `{ projectionStatus { projection state checkpoint connected caughtUp deadLetters haltedAt error } }`, nil, &st)
	ps := st.ProjectionStatus
	cp, _ := strconv.ParseUint(ps.Checkpoint, 10, 64)
	lastPos, _ := strconv.ParseUint(last.Position, 10, 64)
	if ps.Projection != "readmodel" || ps.State != "RUNNING" || cp < lastPos || !ps.Connected || ps.DeadLetters != 0 ||
		ps.HaltedAt != nil || ps.Error != nil {
		t.Errorf("projectionStatus = %+v (last position %d)", ps, lastPos)
	}
}

// TestReadYourWrites appends behind the API's back and reads the order at
// once with minPosition: the query waits for the read model.
func TestReadYourWrites(t *testing.T) {
	e := newEnv(t, config{})
	for i := range 5 {
		res, err := e.repo.Create(context.Background(), uuid.NewString(), eventing.CommandMeta{}, func(o *domain.Order) error {
			return o.Create("cust-ryw", "EUR", []domain.NewItem{{SKU: "A", Quantity: 1, UnitPrice: domain.Money{Amount: 100, Currency: "EUR"}}})
		})
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Order *struct{ ID, LastPosition string }
		}
		e.mustDo(t, `query($id: ID!, $p: Position) { order(id: $id, minPosition: $p) { id lastPosition } }`,
			map[string]any{"id": res.Order.ID(), "p": strconv.FormatUint(res.Position, 10)}, &got)
		if got.Order == nil || got.Order.LastPosition != strconv.FormatUint(res.Position, 10) {
			t.Fatalf("attempt %d: order = %+v, want it at position %d", i, got.Order, res.Position)
		}
		var c struct{ Customer struct{ OrderCount int } }
		e.mustDo(t, `query($p: Position) { customer(id: "cust-ryw", minPosition: $p) { orderCount } }`,
			map[string]any{"p": strconv.FormatUint(res.Position, 10)}, &c)
		if c.Customer.OrderCount != i+1 {
			t.Fatalf("attempt %d: orderCount = %d", i, c.Customer.OrderCount)
		}
	}
}

// TestStaleRead waits for a position the store will never reach: the
// bounded wait ends with STALE_READ.
func TestStaleRead(t *testing.T) {
	e := newEnv(t, config{readWait: 50 * time.Millisecond})
	const far = "999999999999"
	for _, q := range []string{
		`{ order(id: "` + uuid.NewString() + `", minPosition: "` + far + `") { id } }`,
		`{ orders(minPosition: "` + far + `") { edges { cursor } } }`,
		`{ customer(id: "c", minPosition: "` + far + `") { id } }`,
		`{ orderTrends(from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z", minPosition: "` + far + `") { currency } }`,
	} {
		start := time.Now()
		res := e.do(t, q, nil)
		if !res.hasCode("STALE_READ") {
			t.Errorf("%s: errors = %+v, want STALE_READ", q, res.Errors)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: answered after %v; the bound is 50ms", q, d)
		}
	}
	if res := e.do(t, `{ order(id: "x", minPosition: "-1") { id } }`, nil); len(res.Errors) == 0 {
		t.Error("minPosition -1 accepted")
	}
}

// TestBadScalarInput sends malformed Position and Time arguments: the
// client's mistake must come back as INVALID_INPUT with a useful message,
// not as a masked internal error.
func TestBadScalarInput(t *testing.T) {
	e := newEnv(t, config{})
	const byPosition = `query($p: Position) { order(id: "x", minPosition: $p) { id } }`
	for _, tt := range []struct {
		name  string
		query string
		vars  map[string]any
	}{
		{"position literal", `{ order(id: "x", minPosition: "abc") { id } }`, nil},
		{"position not a number", byPosition, map[string]any{"p": "abc"}},
		{"position negative", byPosition, map[string]any{"p": -5}},
		{"position above uint64", byPosition, map[string]any{"p": "99999999999999999999999"}},
		{"time literal", `{ orderTrends(from: "yesterday", to: "2026-01-01T00:00:00Z") { currency } }`, nil},
		{"time variable", `query($t: Time!) { orderTrends(from: $t, to: $t) { currency } }`, map[string]any{"t": "yesterday"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(t, tt.query, tt.vars)
			if len(res.Errors) != 1 {
				t.Fatalf("errors = %+v, want one", res.Errors)
			}
			if err := res.Errors[0]; err.code() != "INVALID_INPUT" || err.Message == "internal server error" {
				t.Errorf("error = %+v, want INVALID_INPUT with the reason", err)
			}
		})
	}
}
