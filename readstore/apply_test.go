package readstore_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/readstore"
)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestApplyEveryEventType(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, readstore.Options{})
	l := newLog()
	eur := func(sku string, q, p int64) domain.Line { return domain.Line{SKU: sku, Quantity: q, UnitPrice: p} }
	steps := []struct {
		name       string
		ev         readstore.Event
		wantStatus domain.Status
		wantTotal  int64
	}{
		{"created", l.next("o1", &domain.OrderCreated{OrderID: "o1", CustomerID: "c1", Currency: "EUR",
			Items: []domain.Line{eur("a", 2, 500), eur("b", 1, 250)}, Total: 1250}, at(0)), domain.StatusOpen, 1250},
		{"item added", l.next("o1", &domain.OrderItemAdded{OrderID: "o1", Item: eur("c", 1, 100)}, at(10*time.Minute)), domain.StatusOpen, 1350},
		{"quantity changed", l.next("o1", &domain.OrderItemQuantityChanged{OrderID: "o1", SKU: "a", Quantity: 3, PreviousQuantity: 2}, at(15*time.Minute)), domain.StatusOpen, 1850},
		{"item removed", l.next("o1", &domain.OrderItemRemoved{OrderID: "o1", SKU: "b"}, at(20*time.Minute)), domain.StatusOpen, 1600},
		{"confirmed", l.next("o1", &domain.OrderConfirmed{OrderID: "o1"}, at(35*time.Minute)), domain.StatusConfirmed, 1600},
		{"paid", l.next("o1", &domain.OrderPaid{OrderID: "o1", Amount: 1600, Reference: "p1"}, at(40*time.Minute)), domain.StatusPaid, 1600},
		{"corrected", l.next("o1", &domain.OrderAmountCorrected{OrderID: "o1", CorrectedRevision: 0, OldAmount: 1600, NewAmount: 1500, Reason: "discount"}, at(90*time.Minute)), domain.StatusPaid, 1500},
		{"shipped", l.next("o1", &domain.OrderShipped{OrderID: "o1", Carrier: "DHL", TrackingReference: "T1"}, at(24*time.Hour)), domain.StatusShipped, 1500},
		{"delivered", l.next("o1", &domain.OrderDelivered{OrderID: "o1"}, at(25*time.Hour)), domain.StatusDelivered, 1500},
		{"second order created", l.next("o2", &domain.OrderCreated{OrderID: "o2", CustomerID: "c2", Currency: "USD",
			Items: []domain.Line{eur("x", 1, 300)}, Total: 300}, at(10*time.Minute)), domain.StatusOpen, 300},
		{"cancelled", l.next("o2", &domain.OrderCancelled{OrderID: "o2", Reason: "changed mind"}, at(150*time.Minute)), domain.StatusCancelled, 300},
		{"legacy order without items", l.next("o3", &domain.OrderCreated{OrderID: "o3", CustomerID: "c1", Currency: "JPY", Total: 999}, at(26*time.Hour)), domain.StatusOpen, 999},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			changes := apply(t, s, []readstore.Event{st.ev})
			if len(changes) != 1 {
				t.Fatalf("got %d changes, want 1", len(changes))
			}
			c := changes[0]
			if c.Position != st.ev.Position || c.Revision != st.ev.Revision || c.EventType != st.ev.Type {
				t.Errorf("change = %d/%d/%s, want %d/%d/%s", c.Position, c.Revision, c.EventType, st.ev.Position, st.ev.Revision, st.ev.Type)
			}
			if c.Order.Status != st.wantStatus || c.Order.Total != st.wantTotal {
				t.Errorf("order = %s %d, want %s %d", c.Order.Status, c.Order.Total, st.wantStatus, st.wantTotal)
			}
			got, err := s.Order(ctx, c.OrderID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(jsonOf(t, got), jsonOf(t, c.Order)) {
				t.Errorf("query and change snapshot differ:\n%s\n%s", jsonOf(t, got), jsonOf(t, c.Order))
			}
		})
	}

	t.Run("order", func(t *testing.T) {
		o, err := s.Order(ctx, "o1")
		if err != nil {
			t.Fatal(err)
		}
		wantItems := []readstore.Item{{SKU: "a", Quantity: 3, UnitPrice: 500}, {SKU: "c", Quantity: 1, UnitPrice: 100}}
		if !reflect.DeepEqual(o.Items, wantItems) {
			t.Errorf("items = %+v, want %+v", o.Items, wantItems)
		}
		if !o.CreatedAt.Equal(at(0)) || o.ConfirmedAt == nil || !o.ConfirmedAt.Equal(at(35*time.Minute)) ||
			o.PaidAt == nil || o.ShippedAt == nil || !o.DeliveredAt.Equal(at(25*time.Hour)) || o.CancelledAt != nil {
			t.Errorf("timestamps = %+v", o)
		}
		if o.Carrier != "DHL" || o.TrackingReference != "T1" || o.Revision != 8 || o.LastPosition != steps[8].ev.Position {
			t.Errorf("shipment/revision = %q %q %d %d", o.Carrier, o.TrackingReference, o.Revision, o.LastPosition)
		}
		wantCorr := []readstore.Correction{{Revision: 6, CorrectedRevision: 0, OldAmount: 1600, NewAmount: 1500, Reason: "discount", At: at(90 * time.Minute)}}
		if !reflect.DeepEqual(o.Corrections, wantCorr) {
			t.Errorf("corrections = %+v, want %+v", o.Corrections, wantCorr)
		}
		o2, err := s.Order(ctx, "o2")
		if err != nil {
			t.Fatal(err)
		}
		if o2.CancelReason != "changed mind" || o2.CancelledAt == nil {
			t.Errorf("o2 = %+v", o2)
		}
		if _, err := s.Order(ctx, "nope"); !errors.Is(err, readstore.ErrNotFound) {
			t.Errorf("missing order: err = %v, want ErrNotFound", err)
		}
		m, err := s.OrdersByIDs(ctx, []string{"o3", "o1", "nope"})
		if err != nil {
			t.Fatal(err)
		}
		if len(m) != 2 || len(m["o1"].Corrections) != 1 || m["o3"].Total != 999 || len(m["o3"].Items) != 0 {
			t.Errorf("OrdersByIDs = %+v", m)
		}
	})

	t.Run("customers", func(t *testing.T) {
		c1, err := s.Customer(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		want := readstore.Customer{ID: "c1", OrderCount: 2, OpenOrders: 1,
			LifetimeValue: []domain.Money{{Amount: 1500, Currency: "EUR"}, {Amount: 999, Currency: "JPY"}},
			FirstOrderAt:  at(0), LastOrderAt: at(26 * time.Hour)}
		if !reflect.DeepEqual(c1, want) {
			t.Errorf("c1 = %+v\nwant %+v", c1, want)
		}
		c2, err := s.Customer(ctx, "c2")
		if err != nil {
			t.Fatal(err)
		}
		if c2.OrderCount != 1 || c2.OpenOrders != 0 || !reflect.DeepEqual(c2.LifetimeValue, []domain.Money{{Amount: 0, Currency: "USD"}}) {
			t.Errorf("c2 = %+v", c2)
		}
		if _, err := s.Customer(ctx, "nobody"); !errors.Is(err, readstore.ErrNotFound) {
			t.Errorf("missing customer: err = %v", err)
		}
	})

	t.Run("trends", func(t *testing.T) {
		day := t0.Truncate(24 * time.Hour)
		hour := func(h int) time.Time { return day.Add(time.Duration(h) * time.Hour) }
		got, err := s.Trends(ctx, readstore.TrendQuery{From: day, To: day.Add(48 * time.Hour), Bucket: readstore.Hour, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		want := []readstore.Trend{
			{Bucket: readstore.Hour, BucketStart: hour(9), Currency: "EUR", Created: 1, Revenue: 1600, AverageOrderValue: 1600},
			{Bucket: readstore.Hour, BucketStart: hour(10), Currency: "EUR", Confirmed: 1},
			{Bucket: readstore.Hour, BucketStart: hour(11), Currency: "EUR", Revenue: -100},
			{Bucket: readstore.Hour, BucketStart: hour(33), Currency: "EUR", Shipped: 1},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("hour trends =\n%+v\nwant\n%+v", got, want)
		}
		got, err = s.Trends(ctx, readstore.TrendQuery{From: day, To: day.Add(48 * time.Hour), Bucket: readstore.Day})
		if err != nil {
			t.Fatal(err)
		}
		want = []readstore.Trend{
			{Bucket: readstore.Day, BucketStart: day, Currency: "EUR", Created: 1, Confirmed: 1, Revenue: 1500, AverageOrderValue: 1500},
			{Bucket: readstore.Day, BucketStart: day, Currency: "USD", Created: 1, Cancelled: 1, Revenue: 0},
			{Bucket: readstore.Day, BucketStart: hour(24), Currency: "EUR", Shipped: 1},
			{Bucket: readstore.Day, BucketStart: hour(24), Currency: "JPY", Created: 1, Revenue: 999, AverageOrderValue: 999},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("day trends =\n%+v\nwant\n%+v", got, want)
		}
		if _, err := s.Trends(ctx, readstore.TrendQuery{From: day, To: day, Bucket: readstore.Day}); !errors.Is(err, readstore.ErrBadQuery) {
			t.Errorf("empty range: err = %v", err)
		}
	})
}

func TestPoisonInvariants(t *testing.T) {
	create := func(l *eventLog) readstore.Event {
		return l.next("o1", &domain.OrderCreated{OrderID: "o1", CustomerID: "c1", Currency: "EUR",
			Items: []domain.Line{{SKU: "a", Quantity: 1, UnitPrice: 100}}, Total: 100}, time.Time{})
	}
	tests := []struct {
		name string
		bad  func(l *eventLog) readstore.Event
	}{
		{"undecodable", func(l *eventLog) readstore.Event {
			e := l.next("o1", &domain.OrderConfirmed{OrderID: "o1"}, time.Time{})
			e.Event, e.DecodeErr = nil, errors.New("unexpected end of JSON input")
			return e
		}},
		{"unknown order", func(l *eventLog) readstore.Event {
			return l.next("o9", &domain.OrderConfirmed{OrderID: "o9"}, time.Time{})
		}},
		{"created twice", create},
		{"event names another order", func(l *eventLog) readstore.Event {
			return l.next("o1", &domain.OrderConfirmed{OrderID: "o2"}, time.Time{})
		}},
		{"not an order stream", func(l *eventLog) readstore.Event {
			e := l.next("o1", &domain.OrderConfirmed{OrderID: "o1"}, time.Time{})
			e.Stream = "customer-o1"
			return e
		}},
		{"illegal transition", func(l *eventLog) readstore.Event {
			return l.next("o1", &domain.OrderShipped{OrderID: "o1"}, time.Time{})
		}},
		{"correction from a wrong amount", func(l *eventLog) readstore.Event {
			l.next("o1", &domain.OrderConfirmed{OrderID: "o1"}, time.Time{})
			return l.next("o1", &domain.OrderAmountCorrected{OrderID: "o1", OldAmount: 7, NewAmount: 90}, time.Time{})
		}},
		{"revision not after the last", func(l *eventLog) readstore.Event {
			e := l.next("o1", &domain.OrderConfirmed{OrderID: "o1"}, time.Time{})
			e.Revision = 0
			return e
		}},
		{"item removed twice", func(l *eventLog) readstore.Event {
			return l.next("o1", &domain.OrderItemRemoved{OrderID: "o1", SKU: "zz"}, time.Time{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, readstore.Options{})
			l := newLog()
			good := create(l)
			bad := tt.bad(l)
			changes, err := s.Apply(context.Background(), []readstore.Event{good, bad}, bad.Position+100)
			var halted *readstore.HaltedError
			if !errors.As(err, &halted) || halted.Position != bad.Position || !errors.Is(err, readstore.ErrHalted) {
				t.Fatalf("err = %v, want HaltedError at %d", err, bad.Position)
			}
			if len(changes) != 1 || changes[0].Position != good.Position {
				t.Errorf("changes = %+v, want the event before the poison", changes)
			}
			if cp, _ := s.Checkpoint(context.Background()); cp != bad.Position-1 {
				t.Errorf("checkpoint = %d, want %d", cp, bad.Position-1)
			}
		})
	}
}

func TestHaltAndResume(t *testing.T) {
	ctx := context.Background()
	events := history(3, 60)
	clean := openStore(t, readstore.Options{})
	applyBatches(t, clean, events, 50)

	path := filepath.Join(t.TempDir(), "read.db")
	s, err := readstore.OpenFresh(ctx, path, readstore.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	k := len(events) / 2
	poisoned := append([]readstore.Event(nil), events...)
	poisoned[k].Event, poisoned[k].DecodeErr = nil, errors.New("bad JSON")
	P := poisoned[k].Position

	var haltErr error
	for i := 0; i < len(poisoned) && haltErr == nil; i += 50 {
		batch := poisoned[i:min(i+50, len(poisoned))]
		_, haltErr = s.Apply(ctx, batch, batch[len(batch)-1].Position)
	}
	var halted *readstore.HaltedError
	if !errors.As(haltErr, &halted) || halted.Position != P || halted.Projection != readstore.Projection {
		t.Fatalf("err = %v, want halt at %d", haltErr, P)
	}
	before := hash(t, s)
	// Later batches apply nothing and report the same halt.
	_, err = s.Apply(ctx, poisoned[k+1:], poisoned[len(poisoned)-1].Position)
	if !errors.As(err, &halted) || halted.Position != P {
		t.Fatalf("later Apply err = %v", err)
	}
	if hash(t, s) != before {
		t.Error("a halted projection applied events")
	}
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "HALTED" || st.HaltedAt != P || st.Checkpoint != P-1 || st.Error == "" {
		t.Errorf("status = %+v, want HALTED at %d, checkpoint %d", st, P, P-1)
	}
	if err := s.WaitFor(ctx, P); !errors.Is(err, readstore.ErrStale) || !errors.Is(err, readstore.ErrHalted) {
		t.Errorf("WaitFor past a halt: err = %v, want ErrStale and ErrHalted", err)
	}

	// The halt survives a restart.
	s.Close()
	s, err = readstore.Open(ctx, path, readstore.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Apply(ctx, events[k:], events[len(events)-1].Position); !errors.Is(err, readstore.ErrHalted) {
		t.Fatalf("after restart err = %v, want ErrHalted", err)
	}
	// Once fixed (the event decodes now), Resume and redelivery from the
	// checkpoint end where a clean run ends.
	if err := s.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	cp, _ := s.Checkpoint(ctx)
	var rest []readstore.Event
	for _, e := range events {
		if e.Position > cp {
			rest = append(rest, e)
		}
	}
	applyBatches(t, s, rest, 50)
	if got, want := hash(t, s), hash(t, clean); got != want {
		t.Errorf("hash after resume = %s, want %s", got, want)
	}
}

func TestPark(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, readstore.Options{Poison: map[string]readstore.PoisonPolicy{readstore.Projection: readstore.Park}})
	l := newLog()
	evs := []readstore.Event{
		l.next("o1", &domain.OrderCreated{OrderID: "o1", CustomerID: "c1", Currency: "EUR", Total: 100}, time.Time{}),
		l.next("o2", &domain.OrderCreated{OrderID: "o2", CustomerID: "c2", Currency: "EUR", Total: 200}, time.Time{}),
		l.next("o1", &domain.OrderConfirmed{OrderID: "o1"}, time.Time{}),
		l.next("o2", &domain.OrderConfirmed{OrderID: "o2"}, time.Time{}),
	}
	evs[2].Event, evs[2].DecodeErr = nil, errors.New("bad JSON")
	changes, err := s.Apply(ctx, evs, evs[3].Position+50)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 3 {
		t.Errorf("got %d changes, want 3", len(changes))
	}
	dl, err := s.DeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].Position != evs[2].Position || dl[0].Stream != "order-o1" || dl[0].EventType != domain.TypeOrderConfirmed ||
		string(dl[0].Data) != string(evs[2].Data) || !dl[0].ParkedAt.Equal(evs[2].RecordedAt) {
		t.Errorf("dead letters = %+v", dl)
	}
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "RUNNING" || st.DeadLetters != 1 || st.Checkpoint != evs[3].Position+50 {
		t.Errorf("status = %+v", st)
	}
	o2, _ := s.Order(ctx, "o2")
	o1, _ := s.Order(ctx, "o1")
	if o2.Status != domain.StatusConfirmed || o1.Status != domain.StatusOpen {
		t.Errorf("o1 %s, o2 %s; want OPEN, CONFIRMED", o1.Status, o2.Status)
	}
	// Redelivery parks nothing twice.
	if _, err := s.Apply(ctx, evs, 0); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status(ctx); st.DeadLetters != 1 {
		t.Errorf("dead letters after redelivery = %d, want 1", st.DeadLetters)
	}
}

func TestIdempotentReplay(t *testing.T) {
	ctx := context.Background()
	events := history(5, 80)
	s := openStore(t, readstore.Options{})
	applyBatches(t, s, events, 100)
	want := hash(t, s)
	last := events[len(events)-1].Position

	changes, err := s.Apply(ctx, events, last)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 0 {
		t.Errorf("replay produced %d changes", len(changes))
	}
	applyBatches(t, s, events[len(events)/3:], 37)
	// Every event delivered twice in a row.
	for _, e := range events[len(events)/2:] {
		apply(t, s, []readstore.Event{e})
		apply(t, s, []readstore.Event{e})
	}
	if got := hash(t, s); got != want {
		t.Errorf("hash after replays = %s, want %s", got, want)
	}
	if cp, _ := s.Checkpoint(ctx); cp != last {
		t.Errorf("checkpoint = %d, want %d", cp, last)
	}
}

// TestCrashMidBatch fails Apply at a random event, so its transaction
// rolls back, restarts the store and redelivers from the checkpoint; the
// result must equal a from-scratch apply (PROJ-01).
func TestCrashMidBatch(t *testing.T) {
	ctx := context.Background()
	events := history(11, 250)
	ref := openStore(t, readstore.Options{})
	applyBatches(t, ref, events, 100)
	want := hash(t, ref)
	last := events[len(events)-1].Position
	rng := rand.New(rand.NewPCG(1, 2))
	runs := 12
	if testing.Short() {
		runs = 3
	}
	for run := range runs {
		path := filepath.Join(t.TempDir(), "read.db")
		s, err := readstore.OpenFresh(ctx, path, readstore.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		crashAt := events[rng.IntN(len(events))].Position
		readstore.SetFailHook(s, func(e readstore.Event) error {
			if e.Position == crashAt {
				return errors.New("injected crash")
			}
			return nil
		})
		crashed := false
		for i := 0; i < len(events); i += 100 {
			batch := events[i:min(i+100, len(events))]
			if _, err := s.Apply(ctx, batch, batch[len(batch)-1].Position); err != nil {
				crashed = true
				break
			}
		}
		if !crashed {
			t.Fatalf("run %d: no crash at %d", run, crashAt)
		}
		s.Close()
		s, err = readstore.Open(ctx, path, readstore.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		cp, err := s.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cp >= crashAt {
			t.Errorf("run %d: checkpoint %d is past the crash at %d", run, cp, crashAt)
		}
		// Redeliver from a little before the checkpoint, in other batches.
		from := 0
		for from < len(events) && events[from].Position <= cp {
			from++
		}
		applyBatches(t, s, events[max(0, from-int(rng.IntN(30))):], 1+rng.IntN(150))
		if got := hash(t, s); got != want {
			t.Errorf("run %d (crash at %d): hash %s, want %s", run, crashAt, got, want)
		}
		if cp, _ := s.Checkpoint(ctx); cp != last {
			t.Errorf("run %d: checkpoint %d, want %d", run, cp, last)
		}
		s.Close()
	}
}

func TestRebuildDeterminism(t *testing.T) {
	events := history(21, 200)
	a := openStore(t, readstore.Options{})
	applyBatches(t, a, events, 500)
	b := openStore(t, readstore.Options{})
	applyBatches(t, b, events, 1)
	c := openStore(t, readstore.Options{})
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < len(events); {
		n := 1 + rng.IntN(120)
		apply(t, c, events[i:min(i+n, len(events))])
		i += n
	}
	ha, hb, hc := hash(t, a), hash(t, b), hash(t, c)
	if ha != hb || ha != hc {
		t.Errorf("hashes differ: %s %s %s", ha, hb, hc)
	}
	// The hash covers the data: one more event changes it.
	l := newLog()
	l.pos = events[len(events)-1].Position
	apply(t, c, []readstore.Event{l.next("zz", &domain.OrderCreated{OrderID: "zz", CustomerID: "c", Currency: "EUR", Total: 1}, time.Time{})})
	if hash(t, c) == ha {
		t.Error("hash did not change with the data")
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "read.db")
	s, err := readstore.OpenFresh(ctx, path, readstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := readstore.OpenFresh(ctx, path, readstore.Options{}); !errors.Is(err, readstore.ErrExists) {
		t.Errorf("OpenFresh on an existing file: err = %v, want ErrExists", err)
	}
	// Reopening applies no migration twice and keeps the data.
	s, err = readstore.Open(ctx, path, readstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if cp, err := s.Checkpoint(ctx); err != nil || cp != 0 {
		t.Errorf("checkpoint = %d, %v; want 0", cp, err)
	}
	// SQL-01: every connection runs with the same pragmas.
	for name, want := range map[string]string{"journal_mode": "wal", "synchronous": "1", "foreign_keys": "1", "busy_timeout": "5000", "temp_store": "2"} {
		w, r, err := readstore.Pragma(s, name)
		if err != nil {
			t.Fatal(err)
		}
		if w != want || r != want {
			t.Errorf("PRAGMA %s = %s (writer), %s (reader); want %s", name, w, r, want)
		}
	}
}

func TestApplyRejectsUnorderedBatch(t *testing.T) {
	s := openStore(t, readstore.Options{})
	l := newLog()
	a := l.next("o1", &domain.OrderCreated{OrderID: "o1", CustomerID: "c", Currency: "EUR", Total: 1}, time.Time{})
	b := l.next("o1", &domain.OrderConfirmed{OrderID: "o1"}, time.Time{})
	if _, err := s.Apply(context.Background(), []readstore.Event{b, a}, 0); err == nil || errors.Is(err, readstore.ErrHalted) {
		t.Errorf("err = %v, want a plain error", err)
	}
	if cp, _ := s.Checkpoint(context.Background()); cp != 0 {
		t.Errorf("checkpoint moved to %d", cp)
	}
}
