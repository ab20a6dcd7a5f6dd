package eventing_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/upcast")

// TestUpcastGolden feeds each testdata/upcast/<Type>.v<N>.<case>.in.json
// through the upcasters from version N to the current version and compares
// the result byte for byte with <Type>.v<N>.<case>.out.json.
func TestUpcastGolden(t *testing.T) {
	ins, err := filepath.Glob(filepath.Join("testdata", "upcast", "*.in.json"))
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	upcasters := eventing.DefaultUpcasters(legacyCurrency)
	codec := eventing.NewCodec(upcasters)
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			typ, rest, _ := strings.Cut(name, ".v")
			vs, _, _ := strings.Cut(rest, ".")
			version, err := strconv.Atoi(vs)
			if err != nil {
				t.Fatalf("file name %s: want <Type>.v<N>.<case>", name)
			}
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := json.RawMessage(bytes.TrimSpace(data))
			for v := version; v < codec.SchemaVersion(typ); v++ {
				if got, err = upcasters[eventing.UpcastKey{Type: typ, Version: v}](got); err != nil {
					t.Fatalf("upcast from v%d: %v", v, err)
				}
			}
			got = append(got, '\n')
			outPath := strings.TrimSuffix(in, ".in.json") + ".out.json"
			if *update {
				if err := os.WriteFile(outPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("upcast %s\n got: %s\nwant: %s", in, got, want)
			}

			// The same stored bytes, without metadata as the original
			// service wrote them, decode into the current event.
			var meta []byte
			if version > 1 {
				meta = []byte(`{"schemaVersion":` + vs + `}`)
			}
			env, err := codec.Decode(recorded(typ, data, meta))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if string(env.Data)+"\n" != string(want) {
				t.Errorf("Decode data = %s, want %s", env.Data, want)
			}
			if env.Metadata.SchemaVersion != codec.SchemaVersion(typ) {
				t.Errorf("Decode schema version = %d, want %d", env.Metadata.SchemaVersion, codec.SchemaVersion(typ))
			}
		})
	}
}

func recorded(typ string, data, meta []byte) *esdb.RecordedEvent {
	return &esdb.RecordedEvent{
		EventID: uuid.New(), EventType: typ, ContentType: "application/json",
		StreamID: "order-1", EventNumber: 7, Position: esdb.Position{Commit: 42, Prepare: 42},
		CreatedDate: time.Unix(1_700_000_000, 0), Data: data, UserMetadata: meta,
	}
}

func TestDecodeLegacyOrderCreated(t *testing.T) {
	codec := newCodec()
	env, err := codec.Decode(recorded(domain.TypeOrderCreated, []byte(`{"orderId":"o-1","customerId":"c-1","amount":12.5}`), nil))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := &domain.OrderCreated{OrderID: "o-1", CustomerID: "c-1", Currency: "EUR", Items: []domain.Line{}, Total: 1250}
	if !reflect.DeepEqual(env.Event, want) {
		t.Errorf("event = %#v, want %#v", env.Event, want)
	}
	if got := env.Event.(*domain.OrderCreated).Items; got == nil {
		t.Error("Items is nil, want empty")
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, typ, data, meta string
		is                    error // the cause, besides *DecodeError
	}{
		{"too many decimals", "OrderCreated", `{"orderId":"o","customerId":"c","amount":12.345}`, "", domain.ErrInvalidAmount},
		{"exponent", "OrderCreated", `{"orderId":"o","customerId":"c","amount":1e2}`, "", domain.ErrInvalidAmount},
		{"amount as string", "OrderCreated", `{"orderId":"o","customerId":"c","amount":"12.5"}`, "", nil},
		{"amount null", "OrderCreated", `{"orderId":"o","customerId":"c","amount":null}`, "", nil},
		{"amount missing", "OrderCreated", `{"orderId":"o","customerId":"c"}`, "", nil},
		{"order ID missing", "OrderCreated", `{"customerId":"c","amount":1}`, "", nil},
		{"amount overflows", "OrderCreated", `{"orderId":"o","customerId":"c","amount":92233720368547758.08}`, "", domain.ErrInvalidAmount},
		{"v1 data not an object", "OrderCreated", `[1,2]`, "", nil},
		{"data null", "OrderPaid", `null`, "", nil},
		{"data array", "OrderPaid", `[]`, "", nil},
		{"data not JSON", "OrderPaid", `{"orderId":`, "", nil},
		{"wrong field type", "OrderPaid", `{"orderId":"o","amount":"ten"}`, "", nil},
		{"v2 items not a list", "OrderCreated", `{"orderId":"o","customerId":"c","currency":"EUR","items":{},"total":1}`, `{"schemaVersion":2}`, nil},
		{"unknown type", "OrderLost", `{"orderId":"o"}`, "", domain.ErrUnknownEventType},
		{"future schema version", "OrderPaid", `{"orderId":"o"}`, `{"schemaVersion":2}`, nil},
		{"schema version zero", "OrderPaid", `{"orderId":"o"}`, `{"schemaVersion":0}`, nil},
		{"schema version not a number", "OrderPaid", `{"orderId":"o"}`, `{"schemaVersion":"1"}`, nil},
		{"metadata not an object", "OrderPaid", `{"orderId":"o"}`, `"x"`, nil},
		{"duplicate member", "OrderPaid", `{"orderId":"o","orderId":"p"}`, "", nil},
		{"invalid UTF-8", "OrderPaid", "{\"orderId\":\"o\xff\"}", "", nil},
		{"duplicate metadata member", "OrderPaid", `{"orderId":"o"}`, `{"schemaVersion":1,"schemaVersion":1}`, nil},
	}
	codec := newCodec()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := codec.Decode(recorded(tt.typ, []byte(tt.data), []byte(tt.meta)))
			var de *eventing.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode error = %v, want *DecodeError", err)
			}
			if de.Stream != "order-1" || de.Revision != 7 || de.Type != tt.typ {
				t.Errorf("DecodeError names %s@%d (%s), want order-1@7 (%s)", de.Stream, de.Revision, de.Type, tt.typ)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Decode error = %v, want it to match %v", err, tt.is)
			}
			if env.Event != nil || env.DecodeErr != err {
				t.Errorf("envelope has Event %v, DecodeErr %v; want nil and the returned error", env.Event, env.DecodeErr)
			}
		})
	}
}

// TestCodecRoundTrip encodes one event of every type and decodes it again.
func TestCodecRoundTrip(t *testing.T) {
	events := []domain.Event{
		&domain.OrderCreated{OrderID: "o", CustomerID: "c", Currency: "JPY", Items: []domain.Line{{SKU: "a", Quantity: 2, UnitPrice: 150}}, Total: 300},
		&domain.OrderItemAdded{OrderID: "o", Item: domain.Line{SKU: "b", Quantity: 1, UnitPrice: 5}},
		&domain.OrderItemRemoved{OrderID: "o", SKU: "b"},
		&domain.OrderItemQuantityChanged{OrderID: "o", SKU: "a", Quantity: 3, PreviousQuantity: 2},
		&domain.OrderConfirmed{OrderID: "o"},
		&domain.OrderPaid{OrderID: "o", Amount: 450, Reference: "pay-1"},
		&domain.OrderShipped{OrderID: "o", Carrier: "DHL", TrackingReference: "JD0001"},
		&domain.OrderDelivered{OrderID: "o"},
		&domain.OrderCancelled{OrderID: "o", Reason: "changed mind"},
		&domain.OrderAmountCorrected{OrderID: "o", CorrectedRevision: 0, OldAmount: 450, NewAmount: 400, Reason: "discount"},
	}
	if len(events) != len(domain.EventTypes) {
		t.Fatalf("test covers %d event types, domain has %d", len(events), len(domain.EventTypes))
	}
	codec := newCodec()
	meta := eventing.Metadata{CorrelationID: "corr", CausationID: "cause", CommandID: "cmd", Actor: "alice"}
	for _, e := range events {
		t.Run(e.EventType(), func(t *testing.T) {
			id := uuid.New()
			ed, err := codec.Encode(id, e, meta)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if ed.EventID != id || ed.EventType != e.EventType() || ed.ContentType != esdb.ContentTypeJson {
				t.Errorf("EventData = %v %q %v", ed.EventID, ed.EventType, ed.ContentType)
			}
			env, err := codec.Decode(recorded(ed.EventType, ed.Data, ed.Metadata))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(env.Event, e) {
				t.Errorf("decoded %#v, want %#v", env.Event, e)
			}
			wantMeta := meta
			wantMeta.SchemaVersion = codec.SchemaVersion(e.EventType())
			if env.Metadata != wantMeta {
				t.Errorf("metadata %+v, want %+v", env.Metadata, wantMeta)
			}
		})
	}
	if got := codec.SchemaVersion(domain.TypeOrderCreated); got != 2 {
		t.Errorf("OrderCreated schema version = %d, want 2", got)
	}
	if got := codec.SchemaVersion(domain.TypeOrderPaid); got != 1 {
		t.Errorf("OrderPaid schema version = %d, want 1", got)
	}
}

// FuzzDecode checks that no stored bytes make Decode panic, and that it
// either decodes an event or reports a *DecodeError.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(0), []byte(`{"orderId":"o","customerId":"c","amount":12.5}`), []byte(nil))
	f.Add(uint8(0), []byte(`{"orderId":"o","customerId":"c","currency":"EUR","items":[],"total":1}`), []byte(`{"schemaVersion":2}`))
	f.Add(uint8(5), []byte(`{"orderId":"o","amount":1,"reference":"r"}`), []byte(`{"schemaVersion":1,"commandId":"x"}`))
	f.Add(uint8(10), []byte(`{}`), []byte(`{}`))
	codec := newCodec()
	types := append(slicesClone(domain.EventTypes), "Unknown", "")
	f.Fuzz(func(t *testing.T, typ uint8, data, meta []byte) {
		typeName := types[int(typ)%len(types)]
		env, err := codec.Decode(recorded(typeName, data, meta))
		var de *eventing.DecodeError
		switch {
		case err == nil && env.Event == nil:
			t.Fatal("no error and no event")
		case err != nil && !errors.As(err, &de):
			t.Fatalf("error %v is not a *DecodeError", err)
		}
	})
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
