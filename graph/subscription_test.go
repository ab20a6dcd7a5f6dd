package graph_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/ordertrail/ordertrail/graph"
)

var protocols = []string{transportWS, legacyWS}

const changeSub = `subscription($o: ID, $c: ID, $from: Position) {
	orderChanged(orderId: $o, customerId: $c, fromPosition: $from) {
		eventType revision position recordedAt order { id customerId status version lastPosition } } }`

type change struct {
	EventType  string
	Revision   int
	Position   string
	RecordedAt time.Time
	Order      struct {
		ID, CustomerID, Status string
		Version                int
		LastPosition           string
	}
}

// nextChange reads the next orderChanged result of operation id.
func (w *wsClient) nextChange(id string) change {
	w.t.Helper()
	res := w.next(id)
	if len(res.Errors) > 0 {
		w.t.Fatalf("subscription %s: errors %+v", id, res.Errors)
	}
	var out struct{ OrderChanged change }
	res.decode(w.t, &out)
	return out.OrderChanged
}

// quantity changes item A of an order and returns the command's position.
func (e *env) quantity(t testing.TB, orderID string, q int) string {
	t.Helper()
	return e.mutate(t, "changeOrderItemQuantity", map[string]any{"orderId": orderID, "sku": "A", "quantity": q}).Position
}

// TestOrderChangedReplayThenLive subscribes from a past position while
// commands keep coming: the subscriber gets every change of its order
// exactly once and in order, across the switch from replay to live.
func TestOrderChangedReplayThenLive(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			e := newEnv(t, config{})
			a := e.createOrder(t, "cust-s1")
			b := e.createOrder(t, "cust-s2")
			id := a.Order.ID
			before := []string{e.quantity(t, id, 3), e.quantity(t, id, 4)}

			const n = 20
			positions := make(chan []string, 1)
			go func() {
				var ps []string
				for i := range n {
					ps = append(ps, e.quantity(t, id, 5+i))
				}
				positions <- ps
			}()
			w := e.connect(t, proto, nil)
			w.subscribe("1", changeSub, map[string]any{"o": id, "from": a.Position})
			want := append(before, <-positions...)
			var got []string
			for range want {
				c := w.nextChange("1")
				if c.Order.ID != id || c.EventType != "OrderItemQuantityChanged" || c.Position != c.Order.LastPosition {
					t.Errorf("change = %+v", c)
				}
				got = append(got, c.Position)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("positions\n got %v\nwant %v", got, want)
			}
			// Another order's change is filtered out; the next one of ours follows.
			e.mutate(t, "confirmOrder", map[string]any{"orderId": b.Order.ID})
			next := e.mutate(t, "confirmOrder", map[string]any{"orderId": id})
			if c := w.nextChange("1"); c.Position != next.Position || c.EventType != "OrderConfirmed" ||
				c.Order.Status != "CONFIRMED" || c.Revision != n+3 {
				t.Errorf("after the replay: change = %+v, want OrderConfirmed at %s", c, next.Position)
			}

			w.stop("1")
			if m, err := w.read(10 * time.Second); err != nil || m.Type != "complete" || m.ID != "1" {
				t.Errorf("after stop: %+v, %v; want complete for 1", m, err)
			}
		})
	}
}

// TestOrderChangedByCustomer replays one customer's changes from the start
// and then follows them live.
func TestOrderChangedByCustomer(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			e := newEnv(t, config{})
			mine := e.createOrder(t, "cust-c1")
			e.createOrder(t, "cust-c2")
			w := e.connect(t, proto, nil)
			w.subscribe("c", changeSub, map[string]any{"c": "cust-c1", "from": "0"})
			if c := w.nextChange("c"); c.Position != mine.Position || c.EventType != "OrderCreated" || c.Order.CustomerID != "cust-c1" {
				t.Fatalf("replay: change = %+v", c)
			}
			e.createOrder(t, "cust-c2")
			second := e.createOrder(t, "cust-c1")
			if c := w.nextChange("c"); c.Position != second.Position || c.Order.ID != second.Order.ID {
				t.Errorf("live: change = %+v, want the second order of cust-c1 at %s", c, second.Position)
			}
		})
	}
}

// TestChangeTimeIsTheEventTime: a change's recordedAt is the stored
// event's, so asOf(time: change.recordedAt) shows the order as that change
// left it. The store records 100 ns ticks; a change time cut to the
// microsecond falls before its own event.
func TestChangeTimeIsTheEventTime(t *testing.T) {
	e := newEnv(t, config{})
	id := e.createOrder(t, "cust-time").Order.ID
	for q := range 5 {
		e.quantity(t, id, 3+q)
	}
	var h struct {
		Order struct{ History []historyEvent }
	}
	e.mustDo(t, `query($id: ID!) { order(id: $id) { history { revision recordedAt } } }`, map[string]any{"id": id}, &h)
	w := e.connect(t, transportWS, nil)
	w.subscribe("1", changeSub, map[string]any{"o": id, "from": "0"})
	for range h.Order.History {
		c := w.nextChange("1")
		if want := h.Order.History[c.Revision].RecordedAt; !c.RecordedAt.Equal(want) {
			t.Errorf("change at revision %d recorded at %s, its event at %s", c.Revision,
				c.RecordedAt.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
		}
		res := e.do(t, `query($id: ID!, $t: Time!) { order(id: $id) { asOf(time: $t) { version } } }`,
			map[string]any{"id": id, "t": c.RecordedAt})
		var got struct {
			Order struct{ AsOf *struct{ Version int } }
		}
		if len(res.Errors) == 0 {
			res.decode(t, &got)
		}
		if got.Order.AsOf == nil || got.Order.AsOf.Version != c.Revision+1 {
			t.Errorf("asOf(time: recordedAt of revision %d) = %+v, errors %v; want version %d",
				c.Revision, got.Order.AsOf, res.codes(), c.Revision+1)
		}
	}
}

// TestSubscriptionEndedByServer: when the read model goes away, the
// subscriber gets an error telling it to resubscribe, not a normal end.
func TestSubscriptionEndedByServer(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			e := newEnv(t, config{})
			p := e.createOrder(t, "cust-end")
			w := e.connect(t, proto, nil)
			w.subscribe("1", changeSub, map[string]any{"from": "0"})
			if c := w.nextChange("1"); c.Position != p.Position {
				t.Fatalf("change = %+v", c)
			}
			if err := e.store.Close(); err != nil {
				t.Fatal(err)
			}
			m, err := w.read(10 * time.Second)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			var errs []gqlError
			if m.Type == "error" {
				_ = json.Unmarshal(m.Payload, &errs)
			} else if m.Type == "next" || m.Type == "data" {
				var res result
				_ = json.Unmarshal(m.Payload, &res)
				errs = res.Errors
			}
			if m.ID != "1" || len(errs) != 1 || errs[0].code() != "UNAVAILABLE" {
				t.Errorf("got %s %s, want an UNAVAILABLE error for 1", m.Type, m.Payload)
			}
		})
	}
}

// syncLive makes a subscription without replay observable: it runs mutate
// until the subscriber sees a result, then reads on until the result of
// the last mutation, after which every later change is delivered.
func syncLive(t *testing.T, w *wsClient, id string, mutate func() string, done func(res result, last string) bool) {
	t.Helper()
	for range 100 {
		last := mutate()
		m, err := w.read(250 * time.Millisecond)
		if errors.Is(err, errTimeout) {
			continue
		}
		for {
			if err != nil {
				t.Fatalf("sync: %v", err)
			}
			if m.ID != id || (m.Type != "next" && m.Type != "data") {
				t.Fatalf("sync: got %s %s", m.Type, m.Payload)
			}
			var res result
			if err := json.Unmarshal(m.Payload, &res); err != nil || len(res.Errors) > 0 {
				t.Fatalf("sync: %s: %v", m.Payload, err)
			}
			if done(res, last) {
				return
			}
			m, err = w.read(10 * time.Second)
		}
	}
	t.Fatal("subscription never delivered a change")
}

// TestOrderChangedLive subscribes without fromPosition: changes from then
// on arrive, each once.
func TestOrderChangedLive(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			e := newEnv(t, config{})
			id := e.createOrder(t, "cust-live").Order.ID
			w := e.connect(t, proto, nil)
			w.subscribe("live", changeSub, map[string]any{"o": id})
			q := 2
			syncLive(t, w, "live", func() string { q++; return e.quantity(t, id, q) }, func(res result, last string) bool {
				var out struct{ OrderChanged change }
				res.decode(t, &out)
				return out.OrderChanged.Position == last
			})
			for i := range 3 {
				pos := e.quantity(t, id, 100+i)
				if c := w.nextChange("live"); c.Position != pos {
					t.Errorf("change %d at %s, want %s", i, c.Position, pos)
				}
			}
		})
	}
}

type trend struct {
	Bucket, Currency string
	BucketStart      time.Time
	OrdersCreated    int
	Revenue          money
}

// TestOrderTrendsSubscription follows the day's EUR figures live.
func TestOrderTrendsSubscription(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			e := newEnv(t, config{})
			w := e.connect(t, proto, nil)
			w.subscribe("t", `subscription { orderTrends(bucket: DAY, currency: "EUR") {
				bucket currency bucketStart ordersCreated revenue { amount currency } } }`, nil)
			created := 0
			decode := func(res result) trend {
				var out struct{ OrderTrends trend }
				res.decode(t, &out)
				return out.OrderTrends
			}
			syncLive(t, w, "t", func() string { created++; return e.createOrder(t, "cust-tr").Position },
				func(res result, _ string) bool { return decode(res).OrdersCreated == created })

			// A USD order is filtered out; the next EUR one is the next result.
			res := e.do(t, `mutation { createOrder(input: {customerId: "cust-tr", currency: "USD",
				items: [{sku: "U", quantity: 1, unitPrice: "1.00"}]}) { position } }`, nil)
			if len(res.Errors) > 0 {
				t.Fatal(res.Errors)
			}
			e.createOrder(t, "cust-tr")
			got := decode(w.next("t"))
			if got.Currency != "EUR" || got.Bucket != "DAY" || got.OrdersCreated != created+1 ||
				got.Revenue != (money{fmt.Sprintf("%d.00", 10*(created+1)), "EUR"}) {
				t.Errorf("trend = %+v, want %d EUR orders worth %d.00", got, created+1, 10*(created+1))
			}
		})
	}
}

// TestWebsocketLeak is GQL-11: connect, subscribe, receive and disconnect
// many times, with every fifth socket refused for a bad token; afterwards
// no goroutine is left behind and the socket and subscriber gauges are
// back to zero.
func TestWebsocketLeak(t *testing.T) {
	cycles := 300
	if os.Getenv("ORDERTRAIL_LONG") == "1" {
		cycles = 10000
	}
	reg := prometheus.NewRegistry()
	e := newEnv(t, config{opts: graph.Options{
		KeepAlive: 50 * time.Millisecond, Tokens: []string{"tok"}, Metrics: graph.NewMetrics(reg),
	}})
	p := e.mutate(t, "createOrder", map[string]any{"customerId": "cust-leak", "currency": "EUR",
		"items": []map[string]any{{"sku": "A", "quantity": 1, "unitPrice": "1.00"}}}, client.AddHeader("Authorization", "Bearer tok"))
	from, _ := strconv.ParseUint(p.Position, 10, 64)
	cycle := func(i int) {
		proto := protocols[i%2]
		if i%5 == 4 {
			w, _, err := e.dialWS(t, proto, nil)
			if err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
			if err := w.init(map[string]any{"token": "bad"}); err == nil {
				t.Fatalf("cycle %d: bad token acknowledged", i)
			}
			w.close()
			return
		}
		w := e.connect(t, proto, map[string]any{"token": "tok"})
		w.subscribe("1", changeSub, map[string]any{"o": p.Order.ID, "from": strconv.FormatUint(from-1, 10)})
		if c := w.nextChange("1"); c.Position != p.Position {
			t.Fatalf("cycle %d: change = %+v", i, c)
		}
		if i%3 == 0 {
			w.stop("1")
		}
		w.close()
	}
	cycle(0) // warm up pools that live as long as the env
	ignore := goleak.IgnoreCurrent()
	start := time.Now()
	for i := 1; i <= cycles; i++ {
		cycle(i)
	}
	t.Logf("%d cycles in %v", cycles, time.Since(start))
	// goleak.Find retries for about two seconds; allow a few rounds for
	// server-side close handshakes.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := goleak.Find(ignore)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after %d websocket cycles: %v", cycles, err)
		}
	}
	// Every server-side socket goroutine has ended, so the gauges are final.
	for _, name := range []string{"ordertrail_websocket_connections", "ordertrail_live_subscribers"} {
		if v := gauge(t, reg, name); v != 0 {
			t.Errorf("%s = %v after every socket closed, want 0", name, v)
		}
	}
}

// gauge reads one gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// TestSharedSubscriptionResults: subscribers running the same operation
// share one execution per change (sharedResults), over both subprotocols;
// each still gets every change, in order, with its own data, and a
// subscriber with another selection gets only the fields it asked for.
func TestSharedSubscriptionResults(t *testing.T) {
	e := newEnv(t, config{})
	created := e.createOrder(t, "cust-shared")
	id := created.Order.ID
	vars := map[string]any{"o": id, "from": created.Position}
	var same []*wsClient
	for i := range 4 {
		w := e.connect(t, protocols[i%2], nil)
		w.subscribe("s", changeSub, vars)
		same = append(same, w)
	}
	other := e.connect(t, transportWS, nil)
	other.subscribe("o", `subscription($o: ID, $from: Position) {
		orderChanged(orderId: $o, fromPosition: $from) { position order { status } } }`, vars)

	var want []string
	for q := range 6 {
		want = append(want, e.quantity(t, id, 3+q))
	}
	for i, w := range same {
		for j, pos := range want {
			c := w.nextChange("s")
			if c.Position != pos || c.Order.ID != id || c.Order.Version != j+2 || c.Order.LastPosition != pos {
				t.Fatalf("subscriber %d (%s), change %d: %+v; want position %s, version %d", i, w.proto, j, c, pos, j+2)
			}
		}
	}
	for j, pos := range want {
		res := other.next("o")
		wantData := fmt.Sprintf(`{"orderChanged":{"position":%q,"order":{"status":"OPEN"}}}`, pos)
		if len(res.Errors) > 0 || string(res.Data) != wantData {
			t.Fatalf("other selection, change %d: data %s, errors %+v; want %s", j, res.Data, res.Errors, wantData)
		}
	}
}
