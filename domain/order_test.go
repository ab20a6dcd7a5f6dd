package domain_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/ordertrail/ordertrail/domain"
)

const orderID = "order-1"

// testCase is one given/when/then scenario. given is the order's stored
// history; when is the command; then is what it must raise, or wantErr the
// error it must fail with, raising nothing and changing nothing.
type testCase struct {
	name    string
	given   []domain.Event
	when    func(*domain.Order) error
	then    []domain.Event
	wantErr error
}

// kindOf is the kind every rule error belongs to. run fails on a wantErr
// missing here, so a new sentinel cannot go unclassified.
var kindOf = map[error]error{
	domain.ErrMissingOrderID:   domain.ErrInvalidInput,
	domain.ErrMissingCustomer:  domain.ErrInvalidInput,
	domain.ErrUnknownCurrency:  domain.ErrInvalidInput,
	domain.ErrInvalidAmount:    domain.ErrInvalidInput,
	domain.ErrEmptyOrder:       domain.ErrInvalidInput,
	domain.ErrMissingSKU:       domain.ErrInvalidInput,
	domain.ErrInvalidQuantity:  domain.ErrInvalidInput,
	domain.ErrInvalidPrice:     domain.ErrInvalidInput,
	domain.ErrNonPositiveTotal: domain.ErrInvalidInput,
	domain.ErrMixedCurrencies:  domain.ErrInvalidInput,
	domain.ErrUnknownItem:      domain.ErrInvalidInput,
	domain.ErrMissingReason:    domain.ErrInvalidInput,
	domain.ErrMissingShipment:  domain.ErrInvalidInput,
	domain.ErrPaymentMismatch:  domain.ErrInvalidInput,
	domain.ErrNoSuchEvent:      domain.ErrInvalidInput,
	domain.ErrUnchangedAmount:  domain.ErrInvalidInput,
	domain.ErrOverflow:         domain.ErrInvalidInput,
	domain.ErrAlreadyCreated:   domain.ErrIllegalTransition,
	domain.ErrNotCreated:       domain.ErrIllegalTransition,
	domain.ErrNotOpen:          domain.ErrIllegalTransition,
	domain.ErrCannotConfirm:    domain.ErrIllegalTransition,
	domain.ErrCannotPay:        domain.ErrIllegalTransition,
	domain.ErrCannotShip:       domain.ErrIllegalTransition,
	domain.ErrCannotDeliver:    domain.ErrIllegalTransition,
	domain.ErrCannotCancel:     domain.ErrIllegalTransition,
	domain.ErrCannotCorrect:    domain.ErrIllegalTransition,
	domain.ErrDuplicateItem:    domain.ErrDuplicate,
	domain.ErrDuplicateCommand: domain.ErrDuplicate,
}

var kinds = []error{domain.ErrInvalidInput, domain.ErrIllegalTransition, domain.ErrDuplicate}

// run runs given/when/then cases, one subtest each.
func run(t *testing.T, cases []testCase) {
	t.Helper()
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("two cases named %q: -run could not tell them apart", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			given := recorded(tc.given)
			o, err := domain.Rehydrate(orderID, given)
			if err != nil {
				t.Fatalf("given: %v", err)
			}
			before := o.Snapshot()

			err = tc.when(o)

			got := eventsOf(o.Changes())
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %v", err, tc.wantErr)
				}
				kind, ok := kindOf[tc.wantErr]
				if !ok {
					t.Fatalf("test bug: no kind listed for %v", tc.wantErr)
				}
				if !errors.Is(err, kind) {
					t.Errorf("error %v is not of kind %v", err, kind)
				}
				if len(got) != 0 {
					t.Errorf("failed command raised %s", format(got))
				}
				if after := o.Snapshot(); !reflect.DeepEqual(after, before) {
					t.Errorf("failed command changed the order:\n got %+v\nwant %+v", after, before)
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v, want none", err)
			}
			if !sameEvents(got, tc.then) {
				t.Fatalf("raised %s\nwant %s", format(got), format(tc.then))
			}
			// Raising must leave the order as replaying the events would.
			replayed, err := domain.Rehydrate(orderID, append(given, o.Changes()...))
			if err != nil {
				t.Fatalf("replay given and then: %v", err)
			}
			if got, want := o.Snapshot(), replayed.Snapshot(); !reflect.DeepEqual(got, want) {
				t.Errorf("state after command differs from replay:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// recorded wraps a history as stored events, each with its own command ID
// "given-<index>".
func recorded(events []domain.Event) []domain.Recorded {
	rs := make([]domain.Recorded, len(events))
	for i, e := range events {
		rs[i] = domain.Recorded{Event: e, CommandID: fmt.Sprintf("given-%d", i)}
	}
	return rs
}

func eventsOf(rs []domain.Recorded) []domain.Event {
	var es []domain.Event
	for _, r := range rs {
		es = append(es, r.Event)
	}
	return es
}

func sameEvents(a, b []domain.Event) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
}

// format prints events as wire name and JSON, which reads better than
// pointers in a failure message.
func format(es []domain.Event) string {
	if len(es) == 0 {
		return "no events"
	}
	var b strings.Builder
	for _, e := range es {
		j, err := json.Marshal(e)
		if err != nil {
			j = []byte(err.Error())
		}
		fmt.Fprintf(&b, "\n\t%s %s", e.EventType(), j)
	}
	return b.String()
}

// Fixtures. Every function returns fresh values, so no case can change
// another's events.

var (
	lineA = domain.Line{SKU: "A", Quantity: 2, UnitPrice: 1250}
	lineB = domain.Line{SKU: "B", Quantity: 1, UnitPrice: 999}
	lineC = domain.Line{SKU: "C", Quantity: 3, UnitPrice: 100}
)

// total is the amount of an order of lineA and lineB.
const total = 2*1250 + 999

func usd(amount int64) domain.Money { return domain.Money{Amount: amount, Currency: "USD"} }

func item(l domain.Line) domain.NewItem {
	return domain.NewItem{SKU: l.SKU, Quantity: l.Quantity, UnitPrice: usd(l.UnitPrice)}
}

func created(lines ...domain.Line) *domain.OrderCreated {
	var sum int64
	for _, l := range lines {
		sum += l.Quantity * l.UnitPrice
	}
	return &domain.OrderCreated{OrderID: orderID, CustomerID: "cust-1", Currency: "USD", Items: lines, Total: sum}
}

// legacyCreated is an order created by the original service, which stored
// only an amount.
func legacyCreated(amount int64) *domain.OrderCreated {
	return &domain.OrderCreated{OrderID: orderID, CustomerID: "cust-1", Currency: "USD", Total: amount}
}

func added(l domain.Line) *domain.OrderItemAdded {
	return &domain.OrderItemAdded{OrderID: orderID, Item: l}
}

func removed(sku string) *domain.OrderItemRemoved {
	return &domain.OrderItemRemoved{OrderID: orderID, SKU: sku}
}

func quantityChanged(sku string, quantity, previous int64) *domain.OrderItemQuantityChanged {
	return &domain.OrderItemQuantityChanged{OrderID: orderID, SKU: sku, Quantity: quantity, PreviousQuantity: previous}
}

func confirmed() *domain.OrderConfirmed { return &domain.OrderConfirmed{OrderID: orderID} }

func paid(amount int64) *domain.OrderPaid {
	return &domain.OrderPaid{OrderID: orderID, Amount: amount, Reference: "pay-1"}
}

func shipped() *domain.OrderShipped {
	return &domain.OrderShipped{OrderID: orderID, Carrier: "DHL", TrackingReference: "trk-1"}
}

func delivered() *domain.OrderDelivered { return &domain.OrderDelivered{OrderID: orderID} }

func cancelled(reason string) *domain.OrderCancelled {
	return &domain.OrderCancelled{OrderID: orderID, Reason: reason}
}

func corrected(revision uint64, oldAmount, newAmount int64, reason string) *domain.OrderAmountCorrected {
	return &domain.OrderAmountCorrected{OrderID: orderID, CorrectedRevision: revision, OldAmount: oldAmount, NewAmount: newAmount, Reason: reason}
}

func events(es ...domain.Event) []domain.Event { return es }

// Histories that leave an order of lineA and lineB in each status.
func openHistory() []domain.Event      { return events(created(lineA, lineB)) }
func confirmedHistory() []domain.Event { return append(openHistory(), confirmed()) }
func paidHistory() []domain.Event      { return append(confirmedHistory(), paid(total)) }
func shippedHistory() []domain.Event   { return append(paidHistory(), shipped()) }
func deliveredHistory() []domain.Event { return append(shippedHistory(), delivered()) }
func cancelledHistory() []domain.Event { return append(openHistory(), cancelled("changed my mind")) }

func TestCreate(t *testing.T) {
	create := func(customer, currency string, items ...domain.NewItem) func(*domain.Order) error {
		return func(o *domain.Order) error { return o.Create(customer, currency, items) }
	}
	run(t, []testCase{
		{
			name: "creates_with_items",
			when: create("cust-1", "USD", item(lineA), item(lineB)),
			then: events(created(lineA, lineB)),
		},
		{
			name: "creates_in_zero_decimal_currency",
			when: create("cust-1", "JPY", domain.NewItem{SKU: "A", Quantity: 3, UnitPrice: domain.Money{Amount: 500, Currency: "JPY"}}),
			then: events(&domain.OrderCreated{OrderID: orderID, CustomerID: "cust-1", Currency: "JPY",
				Items: []domain.Line{{SKU: "A", Quantity: 3, UnitPrice: 500}}, Total: 1500}),
		},
		{
			name:    "already_created",
			given:   openHistory(),
			when:    create("cust-1", "USD", item(lineA)),
			wantErr: domain.ErrAlreadyCreated,
		},
		{
			name:    "already_created_and_cancelled",
			given:   cancelledHistory(),
			when:    create("cust-1", "USD", item(lineA)),
			wantErr: domain.ErrAlreadyCreated,
		},
		{
			name:    "missing_customer",
			when:    create("", "USD", item(lineA)),
			wantErr: domain.ErrMissingCustomer,
		},
		{
			name:    "unknown_currency",
			when:    create("cust-1", "XXX", domain.NewItem{SKU: "A", Quantity: 1, UnitPrice: domain.Money{Amount: 1, Currency: "XXX"}}),
			wantErr: domain.ErrUnknownCurrency,
		},
		{
			name:    "lower_case_currency",
			when:    create("cust-1", "usd", domain.NewItem{SKU: "A", Quantity: 1, UnitPrice: domain.Money{Amount: 1, Currency: "usd"}}),
			wantErr: domain.ErrUnknownCurrency,
		},
		{
			name:    "missing_currency",
			when:    create("cust-1", "", item(lineA)),
			wantErr: domain.ErrUnknownCurrency,
		},
		{
			name:    "empty_order",
			when:    create("cust-1", "USD"),
			wantErr: domain.ErrEmptyOrder,
		},
		{
			name:    "missing_sku",
			when:    create("cust-1", "USD", domain.NewItem{Quantity: 1, UnitPrice: usd(100)}),
			wantErr: domain.ErrMissingSKU,
		},
		{
			name:    "zero_quantity",
			when:    create("cust-1", "USD", domain.NewItem{SKU: "A", Quantity: 0, UnitPrice: usd(100)}),
			wantErr: domain.ErrInvalidQuantity,
		},
		{
			name:    "negative_quantity",
			when:    create("cust-1", "USD", item(lineA), domain.NewItem{SKU: "B", Quantity: -1, UnitPrice: usd(100)}),
			wantErr: domain.ErrInvalidQuantity,
		},
		{
			name:    "zero_price",
			when:    create("cust-1", "USD", domain.NewItem{SKU: "A", Quantity: 1, UnitPrice: usd(0)}),
			wantErr: domain.ErrInvalidPrice,
		},
		{
			name:    "negative_price",
			when:    create("cust-1", "USD", item(lineA), domain.NewItem{SKU: "B", Quantity: 1, UnitPrice: usd(-999)}),
			wantErr: domain.ErrInvalidPrice,
		},
		{
			name:    "mixed_currencies",
			when:    create("cust-1", "USD", item(lineA), domain.NewItem{SKU: "B", Quantity: 1, UnitPrice: domain.Money{Amount: 999, Currency: "EUR"}}),
			wantErr: domain.ErrMixedCurrencies,
		},
		{
			name:    "price_without_currency",
			when:    create("cust-1", "USD", domain.NewItem{SKU: "A", Quantity: 1, UnitPrice: domain.Money{Amount: 999}}),
			wantErr: domain.ErrMixedCurrencies,
		},
		{
			name:    "duplicate_sku",
			when:    create("cust-1", "USD", item(lineA), item(lineB), domain.NewItem{SKU: "A", Quantity: 1, UnitPrice: usd(1)}),
			wantErr: domain.ErrDuplicateItem,
		},
		{
			name:    "overflow_price_times_quantity",
			when:    create("cust-1", "USD", domain.NewItem{SKU: "A", Quantity: 2, UnitPrice: usd(math.MaxInt64)}),
			wantErr: domain.ErrOverflow,
		},
		{
			name:    "overflow_quantity_times_price",
			when:    create("cust-1", "USD", domain.NewItem{SKU: "A", Quantity: math.MaxInt64, UnitPrice: usd(100)}),
			wantErr: domain.ErrOverflow,
		},
		{
			name: "overflow_sum_of_items",
			when: create("cust-1", "USD",
				domain.NewItem{SKU: "A", Quantity: 1, UnitPrice: usd(math.MaxInt64)},
				domain.NewItem{SKU: "B", Quantity: 1, UnitPrice: usd(1)}),
			wantErr: domain.ErrOverflow,
		},
		{
			name: "largest_total_fits",
			when: create("cust-1", "USD",
				domain.NewItem{SKU: "A", Quantity: 1, UnitPrice: usd(math.MaxInt64 - 1)},
				domain.NewItem{SKU: "B", Quantity: 1, UnitPrice: usd(1)}),
			then: events(&domain.OrderCreated{OrderID: orderID, CustomerID: "cust-1", Currency: "USD",
				Items: []domain.Line{{SKU: "A", Quantity: 1, UnitPrice: math.MaxInt64 - 1}, {SKU: "B", Quantity: 1, UnitPrice: 1}},
				Total: math.MaxInt64}),
		},
	})
}

func TestCreateRequiresOrderID(t *testing.T) {
	o := domain.New("")
	err := o.Create("cust-1", "USD", []domain.NewItem{item(lineA)})
	if !errors.Is(err, domain.ErrMissingOrderID) || !errors.Is(err, domain.ErrInvalidInput) {
		t.Fatalf("error = %v, want %v of kind %v", err, domain.ErrMissingOrderID, domain.ErrInvalidInput)
	}
	if len(o.Changes()) != 0 || o.Exists() {
		t.Errorf("failed Create changed the order: %s", format(eventsOf(o.Changes())))
	}
}

func TestAddItem(t *testing.T) {
	add := func(it domain.NewItem) func(*domain.Order) error {
		return func(o *domain.Order) error { return o.AddItem(it) }
	}
	run(t, []testCase{
		{
			name:  "adds_item",
			given: openHistory(),
			when:  add(item(lineC)),
			then:  events(added(lineC)),
		},
		{
			name:  "adds_back_removed_item",
			given: append(openHistory(), removed("B")),
			when:  add(item(lineB)),
			then:  events(added(lineB)),
		},
		{
			name:  "adds_to_legacy_order",
			given: events(legacyCreated(5000)),
			when:  add(item(lineC)),
			then:  events(added(lineC)),
		},
		{
			name:    "not_created",
			when:    add(item(lineC)),
			wantErr: domain.ErrNotCreated,
		},
		{
			name:    "after_confirm",
			given:   confirmedHistory(),
			when:    add(item(lineC)),
			wantErr: domain.ErrNotOpen,
		},
		{
			name:    "after_cancel",
			given:   cancelledHistory(),
			when:    add(item(lineC)),
			wantErr: domain.ErrNotOpen,
		},
		{
			name:    "duplicate_sku",
			given:   openHistory(),
			when:    add(domain.NewItem{SKU: "A", Quantity: 1, UnitPrice: usd(1)}),
			wantErr: domain.ErrDuplicateItem,
		},
		{
			name:    "missing_sku",
			given:   openHistory(),
			when:    add(domain.NewItem{Quantity: 1, UnitPrice: usd(1)}),
			wantErr: domain.ErrMissingSKU,
		},
		{
			name:    "zero_quantity",
			given:   openHistory(),
			when:    add(domain.NewItem{SKU: "C", Quantity: 0, UnitPrice: usd(1)}),
			wantErr: domain.ErrInvalidQuantity,
		},
		{
			name:    "negative_quantity",
			given:   openHistory(),
			when:    add(domain.NewItem{SKU: "C", Quantity: -3, UnitPrice: usd(1)}),
			wantErr: domain.ErrInvalidQuantity,
		},
		{
			name:    "zero_price",
			given:   openHistory(),
			when:    add(domain.NewItem{SKU: "C", Quantity: 1, UnitPrice: usd(0)}),
			wantErr: domain.ErrInvalidPrice,
		},
		{
			name:    "negative_price",
			given:   openHistory(),
			when:    add(domain.NewItem{SKU: "C", Quantity: 1, UnitPrice: usd(-1)}),
			wantErr: domain.ErrInvalidPrice,
		},
		{
			name:    "mixed_currencies",
			given:   openHistory(),
			when:    add(domain.NewItem{SKU: "C", Quantity: 1, UnitPrice: domain.Money{Amount: 100, Currency: "EUR"}}),
			wantErr: domain.ErrMixedCurrencies,
		},
		{
			name:    "overflow_price_times_quantity",
			given:   openHistory(),
			when:    add(domain.NewItem{SKU: "C", Quantity: 3, UnitPrice: usd(math.MaxInt64 / 2)}),
			wantErr: domain.ErrOverflow,
		},
		{
			name:    "overflow_order_total",
			given:   openHistory(),
			when:    add(domain.NewItem{SKU: "C", Quantity: 1, UnitPrice: usd(math.MaxInt64 - total + 1)}),
			wantErr: domain.ErrOverflow,
		},
		{
			name:  "largest_total_fits",
			given: openHistory(),
			when:  add(domain.NewItem{SKU: "C", Quantity: 1, UnitPrice: usd(math.MaxInt64 - total)}),
			then:  events(added(domain.Line{SKU: "C", Quantity: 1, UnitPrice: math.MaxInt64 - total})),
		},
	})
}

func TestRemoveItem(t *testing.T) {
	remove := func(sku string) func(*domain.Order) error {
		return func(o *domain.Order) error { return o.RemoveItem(sku) }
	}
	run(t, []testCase{
		{
			name:  "removes_item",
			given: openHistory(),
			when:  remove("B"),
			then:  events(removed("B")),
		},
		{
			name:  "removes_added_item",
			given: append(openHistory(), added(lineC)),
			when:  remove("C"),
			then:  events(removed("C")),
		},
		{
			name:    "unknown_item",
			given:   openHistory(),
			when:    remove("Z"),
			wantErr: domain.ErrUnknownItem,
		},
		{
			name:    "already_removed",
			given:   append(openHistory(), removed("B")),
			when:    remove("B"),
			wantErr: domain.ErrUnknownItem,
		},
		{
			name:    "last_item",
			given:   events(created(lineA)),
			when:    remove("A"),
			wantErr: domain.ErrEmptyOrder,
		},
		{
			name:    "last_item_left_after_removal",
			given:   append(openHistory(), removed("A")),
			when:    remove("B"),
			wantErr: domain.ErrEmptyOrder,
		},
		{
			name:    "not_created",
			when:    remove("A"),
			wantErr: domain.ErrNotCreated,
		},
		{
			name:    "after_confirm",
			given:   confirmedHistory(),
			when:    remove("B"),
			wantErr: domain.ErrNotOpen,
		},
	})
}

func TestChangeQuantity(t *testing.T) {
	change := func(sku string, quantity int64) func(*domain.Order) error {
		return func(o *domain.Order) error { return o.ChangeQuantity(sku, quantity) }
	}
	run(t, []testCase{
		{
			name:  "changes_quantity",
			given: openHistory(),
			when:  change("A", 5),
			then:  events(quantityChanged("A", 5, 2)),
		},
		{
			name:  "previous_quantity_from_history",
			given: append(openHistory(), quantityChanged("A", 5, 2)),
			when:  change("A", 1),
			then:  events(quantityChanged("A", 1, 5)),
		},
		{
			name:  "changes_added_item",
			given: append(openHistory(), added(lineC)),
			when:  change("C", 4),
			then:  events(quantityChanged("C", 4, 3)),
		},
		{
			name:  "same_quantity_raises_nothing",
			given: openHistory(),
			when:  change("A", 2),
			then:  nil,
		},
		{
			name:    "zero_quantity",
			given:   openHistory(),
			when:    change("A", 0),
			wantErr: domain.ErrInvalidQuantity,
		},
		{
			name:    "negative_quantity",
			given:   openHistory(),
			when:    change("A", -2),
			wantErr: domain.ErrInvalidQuantity,
		},
		{
			name:    "unknown_item",
			given:   openHistory(),
			when:    change("Z", 1),
			wantErr: domain.ErrUnknownItem,
		},
		{
			name:    "removed_item",
			given:   append(openHistory(), removed("B")),
			when:    change("B", 1),
			wantErr: domain.ErrUnknownItem,
		},
		{
			name:    "overflow_price_times_quantity",
			given:   openHistory(),
			when:    change("A", math.MaxInt64),
			wantErr: domain.ErrOverflow,
		},
		{
			// 1250 × (MaxInt64/1250) fits, but not with item B's 999 on top.
			name:    "overflow_order_total",
			given:   openHistory(),
			when:    change("A", math.MaxInt64/1250),
			wantErr: domain.ErrOverflow,
		},
		{
			name:    "not_created",
			when:    change("A", 1),
			wantErr: domain.ErrNotCreated,
		},
		{
			name:    "after_confirm",
			given:   confirmedHistory(),
			when:    change("A", 1),
			wantErr: domain.ErrNotOpen,
		},
	})
}

func TestConfirm(t *testing.T) {
	confirm := func(o *domain.Order) error { return o.Confirm() }
	run(t, []testCase{
		{name: "confirms_open_order", given: openHistory(), when: confirm, then: events(confirmed())},
		{name: "confirms_legacy_order", given: events(legacyCreated(5000)), when: confirm, then: events(confirmed())},
		{name: "not_created", when: confirm, wantErr: domain.ErrNotCreated},
		{name: "twice", given: confirmedHistory(), when: confirm, wantErr: domain.ErrCannotConfirm},
		{name: "cancelled", given: cancelledHistory(), when: confirm, wantErr: domain.ErrCannotConfirm},
	})
}

func TestMarkPaid(t *testing.T) {
	pay := func(amount domain.Money) func(*domain.Order) error {
		return func(o *domain.Order) error { return o.MarkPaid(amount, "pay-1") }
	}
	run(t, []testCase{
		{
			name:  "pays_total",
			given: confirmedHistory(),
			when:  pay(usd(total)),
			then:  events(paid(total)),
		},
		{
			name:  "pays_total_after_item_changes",
			given: events(created(lineA, lineB), added(lineC), removed("B"), quantityChanged("A", 1, 2), confirmed()),
			when:  pay(usd(1250 + 300)),
			then:  events(paid(1250 + 300)),
		},
		{
			name:  "pays_corrected_total",
			given: append(confirmedHistory(), corrected(0, total, 3000, "discount")),
			when:  pay(usd(3000)),
			then:  events(paid(3000)),
		},
		{
			name:  "pays_legacy_total",
			given: events(legacyCreated(5000), confirmed()),
			when:  pay(usd(5000)),
			then:  events(paid(5000)),
		},
		{
			name:    "pays_total_before_correction",
			given:   append(confirmedHistory(), corrected(0, total, 3000, "discount")),
			when:    pay(usd(total)),
			wantErr: domain.ErrPaymentMismatch,
		},
		{
			name:    "pays_too_little",
			given:   confirmedHistory(),
			when:    pay(usd(total - 1)),
			wantErr: domain.ErrPaymentMismatch,
		},
		{
			name:    "pays_too_much",
			given:   confirmedHistory(),
			when:    pay(usd(total + 1)),
			wantErr: domain.ErrPaymentMismatch,
		},
		{
			name:    "pays_in_other_currency",
			given:   confirmedHistory(),
			when:    pay(domain.Money{Amount: total, Currency: "EUR"}),
			wantErr: domain.ErrMixedCurrencies,
		},
		{
			name:    "unconfirmed",
			given:   openHistory(),
			when:    pay(usd(total)),
			wantErr: domain.ErrCannotPay,
		},
		{
			name:    "twice",
			given:   paidHistory(),
			when:    pay(usd(total)),
			wantErr: domain.ErrCannotPay,
		},
		{
			name:    "not_created",
			when:    pay(usd(total)),
			wantErr: domain.ErrNotCreated,
		},
	})
}

func TestShip(t *testing.T) {
	ship := func(carrier, tracking string) func(*domain.Order) error {
		return func(o *domain.Order) error { return o.Ship(carrier, tracking) }
	}
	run(t, []testCase{
		{name: "ships_paid_order", given: paidHistory(), when: ship("DHL", "trk-1"), then: events(shipped())},
		{name: "missing_carrier", given: paidHistory(), when: ship("", "trk-1"), wantErr: domain.ErrMissingShipment},
		{name: "missing_tracking", given: paidHistory(), when: ship("DHL", ""), wantErr: domain.ErrMissingShipment},
		{name: "open_order", given: openHistory(), when: ship("DHL", "trk-1"), wantErr: domain.ErrCannotShip},
		{name: "unpaid_order", given: confirmedHistory(), when: ship("DHL", "trk-1"), wantErr: domain.ErrCannotShip},
		{name: "twice", given: shippedHistory(), when: ship("DHL", "trk-1"), wantErr: domain.ErrCannotShip},
		{name: "status_before_arguments", given: openHistory(), when: ship("", ""), wantErr: domain.ErrCannotShip},
		{name: "not_created", when: ship("DHL", "trk-1"), wantErr: domain.ErrNotCreated},
	})
}

func TestDeliver(t *testing.T) {
	deliver := func(o *domain.Order) error { return o.Deliver() }
	run(t, []testCase{
		{name: "delivers_shipped_order", given: shippedHistory(), when: deliver, then: events(delivered())},
		{name: "paid_order", given: paidHistory(), when: deliver, wantErr: domain.ErrCannotDeliver},
		{name: "twice", given: deliveredHistory(), when: deliver, wantErr: domain.ErrCannotDeliver},
		{name: "cancelled", given: cancelledHistory(), when: deliver, wantErr: domain.ErrCannotDeliver},
		{name: "not_created", when: deliver, wantErr: domain.ErrNotCreated},
	})
}

func TestCancel(t *testing.T) {
	cancel := func(reason string) func(*domain.Order) error {
		return func(o *domain.Order) error { return o.Cancel(reason) }
	}
	run(t, []testCase{
		{name: "cancels_open_order", given: openHistory(), when: cancel("changed my mind"), then: events(cancelled("changed my mind"))},
		{name: "cancels_confirmed_order", given: confirmedHistory(), when: cancel("out of stock"), then: events(cancelled("out of stock"))},
		{name: "cancels_paid_order", given: paidHistory(), when: cancel("fraud"), then: events(cancelled("fraud"))},
		{name: "missing_reason", given: openHistory(), when: cancel(""), wantErr: domain.ErrMissingReason},
		{name: "shipped", given: shippedHistory(), when: cancel("too late"), wantErr: domain.ErrCannotCancel},
		{name: "delivered", given: deliveredHistory(), when: cancel("too late"), wantErr: domain.ErrCannotCancel},
		{name: "cancelled", given: cancelledHistory(), when: cancel("again"), wantErr: domain.ErrCannotCancel},
		{name: "status_before_reason", given: shippedHistory(), when: cancel(""), wantErr: domain.ErrCannotCancel},
		{name: "not_created", when: cancel("why"), wantErr: domain.ErrNotCreated},
	})
}

func TestCorrectAmount(t *testing.T) {
	correct := func(revision uint64, amount domain.Money, reason string) func(*domain.Order) error {
		return func(o *domain.Order) error { return o.CorrectAmount(revision, amount, reason) }
	}
	run(t, []testCase{
		{
			name:  "corrects_confirmed_order",
			given: confirmedHistory(),
			when:  correct(0, usd(3000), "discount"),
			then:  events(corrected(0, total, 3000, "discount")),
		},
		{
			name:    "names_an_event_without_amount",
			given:   confirmedHistory(),
			when:    correct(1, usd(3000), "discount"),
			wantErr: domain.ErrNoSuchEvent,
		},
		{
			name:  "corrects_paid_order",
			given: paidHistory(),
			when:  correct(2, usd(total-500), "refund"),
			then:  events(corrected(2, total, total-500, "refund")),
		},
		{
			name:  "corrects_shipped_order",
			given: shippedHistory(),
			when:  correct(0, usd(total+100), "surcharge"),
			then:  events(corrected(0, total, total+100, "surcharge")),
		},
		{
			name:  "corrects_delivered_order",
			given: deliveredHistory(),
			when:  correct(0, usd(1), "goodwill"),
			then:  events(corrected(0, total, 1, "goodwill")),
		},
		{
			name:  "corrects_a_correction",
			given: append(confirmedHistory(), corrected(0, total, 3000, "discount")),
			when:  correct(2, usd(3100), "smaller discount"),
			then:  events(corrected(2, 3000, 3100, "smaller discount")),
		},
		{
			name:  "corrects_back_to_item_total",
			given: append(confirmedHistory(), corrected(0, total, 3000, "discount")),
			when:  correct(2, usd(total), "discount revoked"),
			then:  events(corrected(2, 3000, total, "discount revoked")),
		},
		{
			name:  "corrects_legacy_order",
			given: events(legacyCreated(5000), confirmed()),
			when:  correct(0, usd(4500), "typo in the old system"),
			then:  events(corrected(0, 5000, 4500, "typo in the old system")),
		},
		{
			name:    "revision_not_yet_stored",
			given:   confirmedHistory(),
			when:    correct(2, usd(3000), "discount"),
			wantErr: domain.ErrNoSuchEvent,
		},
		{
			name:    "revision_far_beyond",
			given:   confirmedHistory(),
			when:    correct(math.MaxUint64, usd(3000), "discount"),
			wantErr: domain.ErrNoSuchEvent,
		},
		{
			name:    "unchanged_amount",
			given:   confirmedHistory(),
			when:    correct(0, usd(total), "no-op"),
			wantErr: domain.ErrUnchangedAmount,
		},
		{
			name:    "zero_amount",
			given:   confirmedHistory(),
			when:    correct(0, usd(0), "free"),
			wantErr: domain.ErrNonPositiveTotal,
		},
		{
			name:    "negative_amount",
			given:   confirmedHistory(),
			when:    correct(0, usd(-1), "refund"),
			wantErr: domain.ErrNonPositiveTotal,
		},
		{
			name:    "other_currency",
			given:   confirmedHistory(),
			when:    correct(0, domain.Money{Amount: 3000, Currency: "EUR"}, "discount"),
			wantErr: domain.ErrMixedCurrencies,
		},
		{
			name:    "missing_reason",
			given:   confirmedHistory(),
			when:    correct(0, usd(3000), ""),
			wantErr: domain.ErrMissingReason,
		},
		{
			name:    "open_order",
			given:   openHistory(),
			when:    correct(0, usd(3000), "discount"),
			wantErr: domain.ErrCannotCorrect,
		},
		{
			name:    "cancelled_order",
			given:   cancelledHistory(),
			when:    correct(0, usd(3000), "discount"),
			wantErr: domain.ErrCannotCorrect,
		},
		{
			name:    "not_created",
			when:    correct(0, usd(3000), "discount"),
			wantErr: domain.ErrNotCreated,
		},
	})
}

func TestBeginCommand(t *testing.T) {
	run(t, []testCase{
		{
			name:  "new_command_id",
			given: openHistory(),
			when: func(o *domain.Order) error {
				if err := o.BeginCommand("cmd-1"); err != nil {
					return err
				}
				return o.Confirm()
			},
			then: events(confirmed()),
		},
		{
			name:  "empty_command_id_is_never_a_duplicate",
			given: openHistory(),
			when: func(o *domain.Order) error {
				if err := o.BeginCommand(""); err != nil {
					return err
				}
				return o.Confirm()
			},
			then: events(confirmed()),
		},
		{
			name:    "duplicate_command_id",
			given:   openHistory(),
			when:    func(o *domain.Order) error { return o.BeginCommand("given-0") },
			wantErr: domain.ErrDuplicateCommand,
		},
		{
			name:    "duplicate_of_latest_command",
			given:   paidHistory(),
			when:    func(o *domain.Order) error { return o.BeginCommand("given-2") },
			wantErr: domain.ErrDuplicateCommand,
		},
	})
}

// TestCommandIDs follows one session: events carry the ID of the command
// that raised them, a handled ID is refused, and a failed command may be
// retried under the same ID.
func TestCommandIDs(t *testing.T) {
	o := domain.New(orderID)
	mustDo(t, o.BeginCommand("c1"))
	mustDo(t, o.Create("cust-1", "USD", []domain.NewItem{item(lineA)}))
	mustDo(t, o.AddItem(item(lineB)))
	mustDo(t, o.BeginCommand("c2"))
	mustDo(t, o.Confirm())

	var ids []string
	for _, r := range o.Changes() {
		ids = append(ids, r.CommandID)
	}
	if want := []string{"c1", "c1", "c2"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("command IDs = %q, want %q", ids, want)
	}
	if err := o.BeginCommand("c1"); !errors.Is(err, domain.ErrDuplicateCommand) {
		t.Errorf("BeginCommand(c1) again = %v, want %v", err, domain.ErrDuplicateCommand)
	}

	mustDo(t, o.BeginCommand("c3"))
	if err := o.Ship("DHL", "trk-1"); !errors.Is(err, domain.ErrCannotShip) {
		t.Fatalf("Ship unpaid = %v, want %v", err, domain.ErrCannotShip)
	}
	if o.Handled("c3") {
		t.Error("a command that raised nothing counts as handled")
	}
	if err := o.BeginCommand("c3"); err != nil {
		t.Errorf("retry of failed command c3: %v", err)
	}
	if o.Handled("") {
		t.Error(`Handled("") = true`)
	}

	loaded, err := domain.Rehydrate(orderID, o.Changes())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "c2"} {
		if !loaded.Handled(id) {
			t.Errorf("after Rehydrate, Handled(%q) = false", id)
		}
		if err := loaded.BeginCommand(id); !errors.Is(err, domain.ErrDuplicateCommand) {
			t.Errorf("after Rehydrate, BeginCommand(%q) = %v, want %v", id, err, domain.ErrDuplicateCommand)
		}
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestTransitions tries every command in every status. A nil cell means
// the command is allowed there and raises the row's event.
func TestTransitions(t *testing.T) {
	statuses := []struct {
		name    string
		history func() []domain.Event
	}{
		{"NEW", func() []domain.Event { return nil }},
		{string(domain.StatusOpen), openHistory},
		{string(domain.StatusConfirmed), confirmedHistory},
		{string(domain.StatusPaid), paidHistory},
		{string(domain.StatusShipped), shippedHistory},
		{string(domain.StatusDelivered), deliveredHistory},
		{string(domain.StatusCancelled), cancelledHistory},
	}
	var (
		ok = error(nil)
		nc = domain.ErrNotCreated
		no = domain.ErrNotOpen
	)
	commands := []struct {
		name     string
		when     func(*domain.Order) error
		then     domain.Event
		outcomes [7]error // NEW, OPEN, CONFIRMED, PAID, SHIPPED, DELIVERED, CANCELLED
	}{
		{
			name: "Create",
			when: func(o *domain.Order) error {
				return o.Create("cust-1", "USD", []domain.NewItem{item(lineA), item(lineB)})
			},
			then:     created(lineA, lineB),
			outcomes: [7]error{ok, domain.ErrAlreadyCreated, domain.ErrAlreadyCreated, domain.ErrAlreadyCreated, domain.ErrAlreadyCreated, domain.ErrAlreadyCreated, domain.ErrAlreadyCreated},
		},
		{
			name:     "AddItem",
			when:     func(o *domain.Order) error { return o.AddItem(item(lineC)) },
			then:     added(lineC),
			outcomes: [7]error{nc, ok, no, no, no, no, no},
		},
		{
			name:     "RemoveItem",
			when:     func(o *domain.Order) error { return o.RemoveItem("B") },
			then:     removed("B"),
			outcomes: [7]error{nc, ok, no, no, no, no, no},
		},
		{
			name:     "ChangeQuantity",
			when:     func(o *domain.Order) error { return o.ChangeQuantity("A", 7) },
			then:     quantityChanged("A", 7, 2),
			outcomes: [7]error{nc, ok, no, no, no, no, no},
		},
		{
			name:     "Confirm",
			when:     func(o *domain.Order) error { return o.Confirm() },
			then:     confirmed(),
			outcomes: [7]error{nc, ok, domain.ErrCannotConfirm, domain.ErrCannotConfirm, domain.ErrCannotConfirm, domain.ErrCannotConfirm, domain.ErrCannotConfirm},
		},
		{
			name:     "MarkPaid",
			when:     func(o *domain.Order) error { return o.MarkPaid(usd(total), "pay-1") },
			then:     paid(total),
			outcomes: [7]error{nc, domain.ErrCannotPay, ok, domain.ErrCannotPay, domain.ErrCannotPay, domain.ErrCannotPay, domain.ErrCannotPay},
		},
		{
			name:     "Ship",
			when:     func(o *domain.Order) error { return o.Ship("DHL", "trk-1") },
			then:     shipped(),
			outcomes: [7]error{nc, domain.ErrCannotShip, domain.ErrCannotShip, ok, domain.ErrCannotShip, domain.ErrCannotShip, domain.ErrCannotShip},
		},
		{
			name:     "Deliver",
			when:     func(o *domain.Order) error { return o.Deliver() },
			then:     delivered(),
			outcomes: [7]error{nc, domain.ErrCannotDeliver, domain.ErrCannotDeliver, domain.ErrCannotDeliver, ok, domain.ErrCannotDeliver, domain.ErrCannotDeliver},
		},
		{
			name:     "Cancel",
			when:     func(o *domain.Order) error { return o.Cancel("reason") },
			then:     cancelled("reason"),
			outcomes: [7]error{nc, ok, ok, ok, domain.ErrCannotCancel, domain.ErrCannotCancel, domain.ErrCannotCancel},
		},
		{
			name:     "CorrectAmount",
			when:     func(o *domain.Order) error { return o.CorrectAmount(0, usd(total-99), "discount") },
			then:     corrected(0, total, total-99, "discount"),
			outcomes: [7]error{nc, domain.ErrCannotCorrect, ok, ok, ok, ok, domain.ErrCannotCorrect},
		},
	}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			var cases []testCase
			for i, s := range statuses {
				tc := testCase{name: "from_" + s.name, given: s.history(), when: c.when, wantErr: c.outcomes[i]}
				if tc.wantErr == nil {
					tc.then = events(c.then)
				}
				cases = append(cases, tc)
			}
			run(t, cases)
		})
	}
}

// TestErrorKinds checks that every rule error matches exactly one kind, so
// a caller can map each family to one response.
func TestErrorKinds(t *testing.T) {
	for sentinel, want := range kindOf {
		t.Run(strings.ReplaceAll(sentinel.Error(), " ", "_"), func(t *testing.T) {
			wrapped := fmt.Errorf("load order %s: %w", orderID, sentinel)
			for _, kind := range kinds {
				if got := errors.Is(wrapped, kind); got != (kind == want) {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", wrapped, kind, got, kind == want)
				}
			}
			for other := range kindOf {
				if other != sentinel && errors.Is(wrapped, other) {
					t.Errorf("%v also matches %v", sentinel, other)
				}
			}
		})
	}
}

func TestRehydrateState(t *testing.T) {
	history := events(
		created(lineA, lineB),
		added(lineC),
		removed("B"),
		quantityChanged("A", 5, 2),
		confirmed(),
		corrected(1, 5*1250+300, 6000, "discount"),
		paid(6000),
		shipped(),
		delivered(),
	)
	o, err := domain.Rehydrate(orderID, recorded(history))
	if err != nil {
		t.Fatal(err)
	}
	if o.ID() != orderID || o.CustomerID() != "cust-1" || o.Currency() != "USD" || !o.Exists() {
		t.Errorf("ID, customer, currency, exists = %q, %q, %q, %v", o.ID(), o.CustomerID(), o.Currency(), o.Exists())
	}
	if o.Status() != domain.StatusDelivered {
		t.Errorf("Status = %s, want %s", o.Status(), domain.StatusDelivered)
	}
	wantLines := []domain.Line{{SKU: "A", Quantity: 5, UnitPrice: 1250}, lineC}
	if got := o.Lines(); !reflect.DeepEqual(got, wantLines) {
		t.Errorf("Lines = %+v, want %+v", got, wantLines)
	}
	if got := o.Total(); got != usd(6000) {
		t.Errorf("Total = %+v, want %+v", got, usd(6000))
	}
	if o.Version() != len(history) {
		t.Errorf("Version = %d, want %d", o.Version(), len(history))
	}
	if n := len(o.Changes()); n != 0 {
		t.Errorf("Rehydrate raised %d events", n)
	}

	o.Lines()[0].Quantity = 99
	if o.Lines()[0].Quantity != 5 {
		t.Error("Lines does not return a copy")
	}

	c, err := domain.Rehydrate(orderID, recorded(cancelledHistory()))
	if err != nil {
		t.Fatal(err)
	}
	if c.Status() != domain.StatusCancelled || c.CancelReason() != "changed my mind" {
		t.Errorf("status, reason = %s, %q", c.Status(), c.CancelReason())
	}

	legacy, err := domain.Rehydrate(orderID, recorded(events(legacyCreated(5000), added(lineC))))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := legacy.Total(), usd(5300); got != want {
		t.Errorf("legacy Total = %+v, want %+v", got, want)
	}
}

func TestRehydrateRejectsAnotherOrdersHistory(t *testing.T) {
	other := created(lineA)
	other.OrderID = "order-2"
	_, err := domain.Rehydrate(orderID, recorded(events(other)))
	if !errors.Is(err, domain.ErrWrongOrderForEvent) {
		t.Fatalf("error = %v, want %v", err, domain.ErrWrongOrderForEvent)
	}
}
