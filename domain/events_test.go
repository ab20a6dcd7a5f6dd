package domain_test

import (
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ordertrail/ordertrail/domain"
)

// sampleEvents holds one filled-in event of every kind, keyed by wire name.
func sampleEvents() map[string]domain.Event {
	return map[string]domain.Event{
		domain.TypeOrderCreated:             created(lineA, lineB),
		domain.TypeOrderItemAdded:           added(lineC),
		domain.TypeOrderItemRemoved:         removed("B"),
		domain.TypeOrderItemQuantityChanged: quantityChanged("A", 5, 2),
		domain.TypeOrderConfirmed:           confirmed(),
		domain.TypeOrderPaid:                paid(total),
		domain.TypeOrderShipped:             shipped(),
		domain.TypeOrderDelivered:           delivered(),
		domain.TypeOrderCancelled:           cancelled("fraud"),
		domain.TypeOrderAmountCorrected:     corrected(0, total, 3000, "discount"),
	}
}

// TestWireNames pins the stored event names: changing one orphans every
// stored event of that kind.
func TestWireNames(t *testing.T) {
	want := []string{
		"OrderCreated", "OrderItemAdded", "OrderItemRemoved", "OrderItemQuantityChanged",
		"OrderConfirmed", "OrderPaid", "OrderShipped", "OrderDelivered", "OrderCancelled",
		"OrderAmountCorrected",
	}
	if !slices.Equal(domain.EventTypes, want) {
		t.Errorf("EventTypes = %q, want %q", domain.EventTypes, want)
	}
}

func TestNewEvent(t *testing.T) {
	goTypes := map[reflect.Type]string{}
	for _, name := range domain.EventTypes {
		t.Run(name, func(t *testing.T) {
			e := domain.NewEvent(name)
			if e == nil {
				t.Fatalf("NewEvent(%q) = nil", name)
			}
			if got := e.EventType(); got != name {
				t.Errorf("NewEvent(%q).EventType() = %q", name, got)
			}
			if other, ok := goTypes[reflect.TypeOf(e)]; ok {
				t.Errorf("NewEvent(%q) and NewEvent(%q) both give %T", name, other, e)
			}
			goTypes[reflect.TypeOf(e)] = name
			if v := reflect.ValueOf(e).Elem(); !v.IsZero() {
				t.Errorf("NewEvent(%q) = %+v, want an empty event", name, e)
			}
		})
	}
	for _, name := range []string{"", "orderCreated", "OrderCreated ", "order.OrderCreated", "OrderUpdated"} {
		if e := domain.NewEvent(name); e != nil {
			t.Errorf("NewEvent(%q) = %T, want nil", name, e)
		}
	}
}

// TestEventSetIsComplete finds every type the package declares as an order
// event (by its isOrderEvent method) and checks that each has a wire name
// in EventTypes, so none can be added without being decodable.
func TestEventSetIsComplete(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var declared []string
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Name.Name != "isOrderEvent" || fn.Recv == nil || len(fn.Recv.List) != 1 {
				continue
			}
			recv := fn.Recv.List[0].Type
			if star, ok := recv.(*ast.StarExpr); ok {
				recv = star.X
			}
			if id, ok := recv.(*ast.Ident); ok {
				declared = append(declared, id.Name)
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal("found no isOrderEvent methods; did the sealing change?")
	}
	var decodable []string
	for _, name := range domain.EventTypes {
		if e := domain.NewEvent(name); e != nil {
			decodable = append(decodable, reflect.TypeOf(e).Elem().Name())
		}
	}
	slices.Sort(declared)
	slices.Sort(decodable)
	if !slices.Equal(declared, decodable) {
		t.Errorf("event types declared %q, but EventTypes and NewEvent give %q", declared, decodable)
	}
}

// TestApplyHandlesEveryEvent rehydrates, for every wire name, a history
// that contains an event of that kind.
func TestApplyHandlesEveryEvent(t *testing.T) {
	samples := sampleEvents()
	if len(samples) != len(domain.EventTypes) {
		t.Fatalf("%d sample events for %d event types", len(samples), len(domain.EventTypes))
	}
	for _, name := range domain.EventTypes {
		t.Run(name, func(t *testing.T) {
			e, ok := samples[name]
			if !ok {
				t.Fatalf("no sample event for %s", name)
			}
			if e.EventType() != name {
				t.Fatalf("sample for %s is a %s", name, e.EventType())
			}
			history := []domain.Event{e}
			if name != domain.TypeOrderCreated {
				history = []domain.Event{created(lineA, lineB), e}
			}
			o, err := domain.Rehydrate(orderID, recorded(history))
			if err != nil {
				t.Fatalf("Rehydrate: %v", err)
			}
			if o.Version() != len(history) {
				t.Errorf("Version = %d, want %d", o.Version(), len(history))
			}
		})
	}
}

// TestEventJSON decodes each sample's JSON into NewEvent of its wire name,
// the way the event store does, and checks every field has a json tag.
func TestEventJSON(t *testing.T) {
	for name, e := range sampleEvents() {
		t.Run(name, func(t *testing.T) {
			checkJSONTags(t, reflect.TypeOf(e).Elem())
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			decoded := domain.NewEvent(name)
			if err := json.Unmarshal(b, decoded); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(decoded, e) {
				t.Errorf("decoded %s = %+v, want %+v", b, decoded, e)
			}
		})
	}
}

func checkJSONTags(t *testing.T, typ reflect.Type) {
	t.Helper()
	for f := range typ.Fields() {
		if tag := f.Tag.Get("json"); tag == "" || tag == "-" {
			t.Errorf("%s.%s has no json tag", typ.Name(), f.Name)
		}
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			checkJSONTags(t, ft)
		}
	}
}

// foreignEvent is not an order event, but embedding the interface lets it
// claim to be one; apply must refuse it rather than skip it.
type foreignEvent struct{ domain.Event }

func TestApplyRejectsUnknownEvents(t *testing.T) {
	for name, e := range map[string]domain.Event{"foreign": foreignEvent{}, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			history := []domain.Recorded{{Event: created(lineA)}, {Event: e}}
			if _, err := domain.Rehydrate(orderID, history); !errors.Is(err, domain.ErrUnknownEventType) {
				t.Errorf("Rehydrate = %v, want %v", err, domain.ErrUnknownEventType)
			}
			if _, err := domain.FromSnapshot(domain.Snapshot{OrderID: orderID}, history[1:]); !errors.Is(err, domain.ErrUnknownEventType) {
				t.Errorf("FromSnapshot = %v, want %v", err, domain.ErrUnknownEventType)
			}
		})
	}
}
