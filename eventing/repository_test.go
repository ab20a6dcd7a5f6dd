package eventing_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
)

func TestNewOrderID(t *testing.T) {
	if a, b := eventing.NewOrderID("cmd-1"), eventing.NewOrderID("cmd-1"); a != b {
		t.Errorf("NewOrderID(cmd-1) = %s then %s, want the same", a, b)
	}
	if a, b := eventing.NewOrderID("cmd-1"), eventing.NewOrderID("cmd-2"); a == b {
		t.Errorf("NewOrderID gives %s for two command IDs", a)
	}
	if a, b := eventing.NewOrderID(""), eventing.NewOrderID(""); a == b {
		t.Errorf("NewOrderID(\"\") = %s twice, want random", a)
	}
	if _, err := uuid.Parse(eventing.NewOrderID("x")); err != nil {
		t.Errorf("NewOrderID is not a UUID: %v", err)
	}
}

func TestCreate(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{})
	ctx := testCtx(t)
	id := eventing.NewOrderID("create-1")
	meta := eventing.CommandMeta{CommandID: "create-1", CorrelationID: "corr-1", CausationID: "cause-1", Actor: "alice"}
	res, err := repo.Create(ctx, id, meta, createOrder("cust-1"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if len(res.Events) != 1 {
		t.Fatalf("Create appended %d events, want 1", len(res.Events))
	}
	e := res.Events[0]
	wantMeta := eventing.Metadata{SchemaVersion: 2, CorrelationID: "corr-1", CausationID: "cause-1", CommandID: "create-1", Actor: "alice"}
	switch {
	case e.Stream != eventing.OrderStream(id), e.Revision != 0, e.Type != domain.TypeOrderCreated:
		t.Errorf("event %s@%d %s", e.Stream, e.Revision, e.Type)
	case e.Position == 0, e.Position != res.Position:
		t.Errorf("event position %d, result position %d", e.Position, res.Position)
	case e.RecordedAt.IsZero():
		t.Error("event has no recorded time")
	case e.Metadata != wantMeta:
		t.Errorf("metadata %+v, want %+v", e.Metadata, wantMeta)
	case len(res.Order.Changes()) != 0:
		t.Errorf("result order has %d uncommitted changes", len(res.Order.Changes()))
	}
	o, err := repo.Load(ctx, id)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if o.CustomerID() != "cust-1" || o.Total() != eur(1000) || o.Version() != 1 || o.Status() != domain.StatusOpen {
		t.Errorf("loaded %+v", o.Snapshot())
	}
	if !reflect.DeepEqual(o.Snapshot(), res.Order.Snapshot()) {
		t.Errorf("loaded %+v, result %+v", o.Snapshot(), res.Order.Snapshot())
	}
}

func TestCreateErrors(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{})
	ctx := testCtx(t)
	id := eventing.NewOrderID("")
	if _, err := repo.Create(ctx, id, eventing.CommandMeta{CommandID: "a"}, createOrder("c")); err != nil {
		t.Fatalf("Create: %v", err)
	}
	tests := []struct {
		name string
		id   string
		meta eventing.CommandMeta
		fn   func(*domain.Order) error
		is   error
	}{
		{"existing order, other command", id, eventing.CommandMeta{CommandID: "b"}, createOrder("c"), eventing.ErrConflict},
		{"existing order, no command ID", id, eventing.CommandMeta{}, createOrder("c"), eventing.ErrConflict},
		{"domain error", uuid.NewString(), eventing.CommandMeta{}, func(o *domain.Order) error { return o.Create("", "EUR", nil) }, domain.ErrMissingCustomer},
		{"no events", uuid.NewString(), eventing.CommandMeta{}, func(*domain.Order) error { return nil }, domain.ErrNotCreated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := repo.Create(ctx, tt.id, tt.meta, tt.fn)
			if !errors.Is(err, tt.is) {
				t.Fatalf("Create error = %v, want %v", err, tt.is)
			}
			var ce *eventing.ConflictError
			if errors.As(err, &ce) && (ce.Stream != eventing.OrderStream(tt.id) || ce.Expected == "" || ce.Actual == "") {
				t.Errorf("ConflictError = %+v", ce)
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{})
	ctx := testCtx(t)
	id := uuid.NewString()
	created, err := repo.Create(ctx, id, eventing.CommandMeta{}, createOrder("c"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	t.Run("missing order", func(t *testing.T) {
		_, err := repo.Update(ctx, uuid.NewString(), eventing.CommandMeta{}, func(o *domain.Order) error { return o.Confirm() })
		if !errors.Is(err, eventing.ErrNotFound) {
			t.Fatalf("Update error = %v, want ErrNotFound", err)
		}
		if _, err := repo.Load(ctx, uuid.NewString()); !errors.Is(err, eventing.ErrNotFound) {
			t.Fatalf("Load error = %v, want ErrNotFound", err)
		}
	})
	t.Run("domain error", func(t *testing.T) {
		_, err := repo.Update(ctx, id, eventing.CommandMeta{}, func(o *domain.Order) error { return o.Ship("DHL", "1") })
		if !errors.Is(err, domain.ErrCannotShip) {
			t.Fatalf("Update error = %v, want ErrCannotShip", err)
		}
	})
	t.Run("nothing to append", func(t *testing.T) {
		res, err := repo.Update(ctx, id, eventing.CommandMeta{CommandID: "noop"}, func(o *domain.Order) error { return o.ChangeQuantity("sku-1", 1) })
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		if len(res.Events) != 0 || res.Position != created.Position {
			t.Errorf("Result has %d events at %d, want none at %d", len(res.Events), res.Position, created.Position)
		}
	})
	t.Run("two events", func(t *testing.T) {
		res, err := repo.Update(ctx, id, eventing.CommandMeta{CommandID: "add-and-confirm"}, func(o *domain.Order) error {
			if err := o.AddItem(domain.NewItem{SKU: "sku-2", Quantity: 2, UnitPrice: eur(250)}); err != nil {
				return err
			}
			return o.Confirm()
		})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		if len(res.Events) != 2 || res.Events[0].Revision != 1 || res.Events[1].Revision != 2 ||
			res.Events[0].Position >= res.Events[1].Position || res.Position != res.Events[1].Position {
			t.Fatalf("Result events %+v position %d", res.Events, res.Position)
		}
		if res.Order.Status() != domain.StatusConfirmed || res.Order.Total() != eur(1500) || res.Order.Version() != 3 {
			t.Errorf("Result order %+v", res.Order.Snapshot())
		}
	})
}

// barrier lets n goroutines pass only together, the first time each
// arrives.
type barrier struct {
	wg   sync.WaitGroup
	done chan struct{}
}

func newBarrier(n int) *barrier {
	b := &barrier{done: make(chan struct{})}
	b.wg.Add(n)
	go func() { b.wg.Wait(); close(b.done) }()
	return b
}

func (b *barrier) wait(ctx context.Context) error {
	b.wg.Done()
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// raceUpdates runs one Update per fn concurrently; every fn's first run
// waits until all have loaded the same version, so all but one append
// loses the optimistic-concurrency check.
func raceUpdates(ctx context.Context, repo *eventing.Repository, id string, fns ...func(*domain.Order) error) []error {
	b := newBarrier(len(fns))
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			_, errs[i] = repo.Update(ctx, id, eventing.CommandMeta{CommandID: fmt.Sprint("race-", i)}, func(o *domain.Order) error {
				if first {
					first = false
					if err := b.wait(ctx); err != nil {
						return err
					}
				}
				return fn(o)
			})
		}()
	}
	wg.Wait()
	return errs
}

func TestConcurrentUpdates(t *testing.T) {
	s := startStore(t)
	ctx := testCtx(t)
	add := func(sku string) func(*domain.Order) error {
		return func(o *domain.Order) error {
			return o.AddItem(domain.NewItem{SKU: sku, Quantity: 1, UnitPrice: eur(100)})
		}
	}
	confirm := func(o *domain.Order) error { return o.Confirm() }
	tests := []struct {
		name       string
		maxRetries int
		fns        []func(*domain.Order) error
		wantErrs   []error // per fn, nil for success; order-independent
		wantEvents int     // after the create
	}{
		{"independent both land", 0, []func(*domain.Order) error{add("a"), add("b")}, []error{nil, nil}, 2},
		{"four independent all land", 0, []func(*domain.Order) error{add("a"), add("b"), add("c"), add("d")}, []error{nil, nil, nil, nil}, 4},
		{"real conflict loser gets domain error", 0, []func(*domain.Order) error{confirm, confirm}, []error{nil, domain.ErrCannotConfirm}, 1},
		{"no retries left", -1, []func(*domain.Order) error{add("a"), add("b")}, []error{nil, eventing.ErrConflict}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newRepo(s, eventing.RepositoryOptions{MaxRetries: tt.maxRetries})
			id := uuid.NewString()
			if _, err := repo.Create(ctx, id, eventing.CommandMeta{}, createOrder("c")); err != nil {
				t.Fatalf("Create: %v", err)
			}
			errs := raceUpdates(ctx, repo, id, tt.fns...)
			var failed []error
			for _, err := range errs {
				if err != nil {
					failed = append(failed, err)
				}
			}
			var want []error
			for _, err := range tt.wantErrs {
				if err != nil {
					want = append(want, err)
				}
			}
			if len(failed) != len(want) {
				t.Fatalf("errors %v, want %v", errs, tt.wantErrs)
			}
			for i := range want {
				if !errors.Is(failed[i], want[i]) {
					t.Errorf("error %v, want %v", failed[i], want[i])
				}
			}
			o, err := repo.Load(ctx, id)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if o.Version() != 1+tt.wantEvents {
				t.Errorf("order has %d events, want %d", o.Version(), 1+tt.wantEvents)
			}
		})
	}
}

// sameResult compares what a command returned, ignoring the pointer
// identity of the order and events.
func sameResult(t *testing.T, got, want eventing.Result) {
	t.Helper()
	if got.Position != want.Position || len(got.Events) != len(want.Events) {
		t.Fatalf("result at %d with %d events, want at %d with %d", got.Position, len(got.Events), want.Position, len(want.Events))
	}
	for i := range got.Events {
		g, w := got.Events[i], want.Events[i]
		if g.EventID != w.EventID || g.Stream != w.Stream || g.Revision != w.Revision || g.Position != w.Position ||
			!g.RecordedAt.Equal(w.RecordedAt) || g.Type != w.Type || string(g.Data) != string(w.Data) ||
			g.Metadata != w.Metadata || !reflect.DeepEqual(g.Event, w.Event) {
			t.Fatalf("event %d = %+v, want %+v", i, g, w)
		}
	}
	if !reflect.DeepEqual(got.Order.Snapshot(), want.Order.Snapshot()) {
		t.Fatalf("order %+v, want %+v", got.Order.Snapshot(), want.Order.Snapshot())
	}
}

// retryUnavailable retries a command while the store is unreachable, as a
// client would after a restart.
func retryUnavailable(ctx context.Context, do func() (eventing.Result, error)) (eventing.Result, error) {
	for {
		res, err := do()
		if !errors.Is(err, eventing.ErrUnavailable) || ctx.Err() != nil {
			return res, err
		}
	}
}

// TestRetrySafety repeats one create and one update command 100 times each,
// sequentially, concurrently and after a restart of the store: each stores
// its events once and returns the same Result every time.
func TestRetrySafety(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{SnapshotEvery: 2})
	ctx := testCtx(t)
	const createID, updateID = "retry-create", "retry-update"
	id := eventing.NewOrderID(createID)
	create := func() (eventing.Result, error) {
		return repo.Create(ctx, id, eventing.CommandMeta{CommandID: createID, Actor: "bob"}, createOrder("c"))
	}
	update := func() (eventing.Result, error) {
		return repo.Update(ctx, id, eventing.CommandMeta{CommandID: updateID}, func(o *domain.Order) error {
			if err := o.AddItem(domain.NewItem{SKU: "sku-2", Quantity: 3, UnitPrice: eur(5)}); err != nil {
				return err
			}
			return o.Confirm()
		})
	}
	commands := []struct {
		name string
		do   func() (eventing.Result, error)
	}{{"create", create}, {"update", update}}
	first := map[string]eventing.Result{}
	for _, c := range commands {
		res, err := c.do()
		if err != nil {
			t.Fatalf("first %s: %v", c.name, err)
		}
		first[c.name] = res
	}

	check := func(t *testing.T) {
		t.Helper()
		for _, c := range commands {
			res, err := retryUnavailable(ctx, c.do)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			sameResult(t, res, first[c.name])
		}
	}
	t.Run("sequential", func(t *testing.T) {
		for range 100 {
			check(t)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for range 100 {
			for _, c := range commands {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := c.do()
					if err == nil && res.Position != first[c.name].Position {
						err = fmt.Errorf("%s at position %d, want %d", c.name, res.Position, first[c.name].Position)
					}
					if err != nil {
						errs <- err
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	t.Run("after restart", func(t *testing.T) {
		s.restart(t)
		for range 100 {
			check(t)
		}
	})
	rs, err := s.client.ReadStream(ctx, eventing.OrderStream(id), esdb.ReadStreamOptions{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	n := 0
	for {
		if _, err := rs.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Errorf("stream has %d events, want 3", n)
	}
}

// TestLegacyOrder loads an order created by the original TypeScript
// service: no metadata, amount in major units, no currency, no items.
func TestLegacyOrder(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{})
	ctx := testCtx(t)
	id := uuid.NewString()
	_, err := s.client.AppendToStream(ctx, eventing.OrderStream(id), esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, esdb.EventData{
		EventID: uuid.New(), EventType: "OrderCreated", ContentType: esdb.ContentTypeJson,
		Data: []byte(`{"orderId":"` + id + `","customerId":"legacy-7","amount":12.5}`),
	})
	if err != nil {
		t.Fatalf("append legacy event: %v", err)
	}
	o, err := repo.Load(ctx, id)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if o.Total() != eur(1250) || o.CustomerID() != "legacy-7" || len(o.Lines()) != 0 || o.Status() != domain.StatusOpen {
		t.Errorf("loaded %+v", o.Snapshot())
	}
	res, err := repo.Update(ctx, id, eventing.CommandMeta{}, func(o *domain.Order) error {
		return o.AddItem(domain.NewItem{SKU: "x", Quantity: 1, UnitPrice: eur(50)})
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if res.Order.Total() != eur(1300) {
		t.Errorf("total after adding 0.50 = %v, want 13.00", res.Order.Total())
	}
}

// TestUndecodableEvent checks that a broken stored event fails the load
// with a *DecodeError naming it, rather than being skipped.
func TestUndecodableEvent(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{})
	ctx := testCtx(t)
	id := uuid.NewString()
	if _, err := repo.Create(ctx, id, eventing.CommandMeta{}, createOrder("c")); err != nil {
		t.Fatal(err)
	}
	_, err := s.client.AppendToStream(ctx, eventing.OrderStream(id), esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(0)}, esdb.EventData{
		EventID: uuid.New(), EventType: "OrderPaid", ContentType: esdb.ContentTypeJson, Data: []byte(`{"amount":"ten"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = repo.Load(ctx, id)
	var de *eventing.DecodeError
	if !errors.As(err, &de) || de.Stream != eventing.OrderStream(id) || de.Revision != 1 || de.Type != "OrderPaid" {
		t.Fatalf("Load error = %v, want a DecodeError for revision 1", err)
	}
}

func TestStoreUnavailable(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{})
	ctx := testCtx(t)
	id := uuid.NewString()
	if _, err := repo.Create(ctx, id, eventing.CommandMeta{}, createOrder("c")); err != nil {
		t.Fatal(err)
	}
	if err := s.srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"load", func() error { _, err := repo.Load(ctx, id); return err }},
		{"update", func() error {
			_, err := repo.Update(ctx, id, eventing.CommandMeta{}, func(o *domain.Order) error { return o.Confirm() })
			return err
		}},
		{"create", func() error {
			_, err := repo.Create(ctx, uuid.NewString(), eventing.CommandMeta{}, createOrder("c"))
			return err
		}},
	} {
		t.Run(op.name, func(t *testing.T) {
			if err := op.do(); !errors.Is(err, eventing.ErrUnavailable) {
				t.Fatalf("error = %v, want ErrUnavailable", err)
			}
		})
	}
}

// TestSnapshots checks where snapshots are written, that they are bounded,
// and that unusable ones are ignored rather than misread.
func TestSnapshots(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{SnapshotEvery: 5})
	ctx := testCtx(t)
	id := uuid.NewString()
	if _, err := repo.Create(ctx, id, eventing.CommandMeta{}, createOrder("c")); err != nil {
		t.Fatal(err)
	}
	for i := range 22 {
		_, err := repo.Update(ctx, id, eventing.CommandMeta{}, func(o *domain.Order) error {
			return o.ChangeQuantity("sku-1", int64(i+2))
		})
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	snapStream := "orderSnapshot-" + id
	meta, err := s.client.GetStreamMetadata(ctx, snapStream, esdb.ReadStreamOptions{})
	if err != nil {
		t.Fatalf("GetStreamMetadata: %v", err)
	}
	if mc := meta.MaxCount(); mc == nil || *mc != 3 {
		t.Errorf("snapshot stream $maxCount = %v, want 3", mc)
	}
	last := lastSnapshotVersion(t, s, snapStream)
	if last != 20 {
		t.Errorf("last snapshot at version %d, want 20", last)
	}
	full, err := repo.StateAt(ctx, id, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertLoads := func(t *testing.T) {
		t.Helper()
		o, err := repo.Load(ctx, id)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if !reflect.DeepEqual(o.Snapshot(), full.Snapshot()) {
			t.Fatalf("Load = %+v, full replay = %+v", o.Snapshot(), full.Snapshot())
		}
	}
	assertLoads(t)

	bad := []struct{ name, typ, data, meta string }{
		{"other schema version", "OrderSnapshot", `{"orderId":"` + id + `","version":23,"status":"CANCELLED"}`, `{"snapshotSchemaVersion":99,"revision":22}`},
		{"version past the stream", "OrderSnapshot", `{"orderId":"` + id + `","version":1000,"status":"CANCELLED"}`, `{"snapshotSchemaVersion":1,"revision":999}`},
		{"other order", "OrderSnapshot", `{"orderId":"other","version":23,"status":"CANCELLED"}`, `{"snapshotSchemaVersion":1,"revision":22}`},
		{"garbage", "OrderSnapshot", `[1,2,3]`, `{"snapshotSchemaVersion":1,"revision":22}`},
		{"no metadata", "OrderSnapshot", `{"orderId":"` + id + `","version":23,"status":"CANCELLED"}`, ``},
		{"other type", "Something", `{"orderId":"` + id + `","version":23,"status":"CANCELLED"}`, `{"snapshotSchemaVersion":1,"revision":22}`},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			_, err := s.client.AppendToStream(ctx, snapStream, esdb.AppendToStreamOptions{}, esdb.EventData{
				EventID: uuid.New(), EventType: b.typ, ContentType: esdb.ContentTypeJson, Data: []byte(b.data), Metadata: []byte(b.meta),
			})
			if err != nil {
				t.Fatal(err)
			}
			assertLoads(t)
		})
	}
}

func lastSnapshotVersion(t *testing.T, s *store, stream string) int {
	t.Helper()
	rs, err := s.client.ReadStream(testCtx(t), stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	re, err := rs.Recv()
	if err != nil {
		t.Fatalf("read snapshot: %v", err)
	}
	var snap domain.Snapshot
	if err := jsonUnmarshal(re.OriginalEvent().Data, &snap); err != nil {
		t.Fatal(err)
	}
	return snap.Version
}

// TestSnapshotEquivalence runs random command sequences and checks after
// every command that the state loaded from snapshot + tail equals the state
// from a full replay.
func TestSnapshotEquivalence(t *testing.T) {
	s := startStore(t)
	ctx := testCtx(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for run := range 4 {
		every := 1 + rng.IntN(6)
		t.Run(fmt.Sprintf("run%d-every%d", run, every), func(t *testing.T) {
			repo := newRepo(s, eventing.RepositoryOptions{SnapshotEvery: every})
			id := uuid.NewString()
			if _, err := repo.Create(ctx, id, eventing.CommandMeta{CommandID: "c0"}, createOrder("c")); err != nil {
				t.Fatal(err)
			}
			for i := range 40 {
				cmd := fmt.Sprint("c", rng.IntN(i+2)) // some repeat earlier commands
				op := randomOp(rng)
				_, err := repo.Update(ctx, id, eventing.CommandMeta{CommandID: cmd}, op)
				if err != nil && !errors.Is(err, domain.ErrInvalidInput) && !errors.Is(err, domain.ErrIllegalTransition) && !errors.Is(err, domain.ErrDuplicate) {
					t.Fatalf("command %d: %v", i, err)
				}
				loaded, err := repo.Load(ctx, id)
				if err != nil {
					t.Fatalf("Load after command %d: %v", i, err)
				}
				full, err := repo.StateAt(ctx, id, nil, nil)
				if err != nil {
					t.Fatalf("StateAt after command %d: %v", i, err)
				}
				if !reflect.DeepEqual(loaded.Snapshot(), full.Snapshot()) {
					t.Fatalf("after command %d: snapshot+tail %+v, full replay %+v", i, loaded.Snapshot(), full.Snapshot())
				}
			}
		})
	}
}

// randomOp returns a random command; many of them fail the order's rules,
// which is part of the test.
func randomOp(rng *rand.Rand) func(*domain.Order) error {
	sku := fmt.Sprint("sku-", rng.IntN(4))
	switch rng.IntN(10) {
	case 0, 1, 2:
		q, p := int64(1+rng.IntN(5)), int64(1+rng.IntN(1000))
		return func(o *domain.Order) error {
			return o.AddItem(domain.NewItem{SKU: sku, Quantity: q, UnitPrice: eur(p)})
		}
	case 3:
		return func(o *domain.Order) error { return o.RemoveItem(sku) }
	case 4:
		q := int64(1 + rng.IntN(9))
		return func(o *domain.Order) error { return o.ChangeQuantity(sku, q) }
	case 5:
		return func(o *domain.Order) error { return o.Confirm() }
	case 6:
		return func(o *domain.Order) error { return o.MarkPaid(o.Total(), "pay") }
	case 7:
		return func(o *domain.Order) error {
			if err := o.Ship("DHL", "T1"); err != nil {
				return err
			}
			return o.Deliver()
		}
	case 8:
		return func(o *domain.Order) error { return o.Cancel("reason") }
	default:
		a := int64(1 + rng.IntN(5000))
		return func(o *domain.Order) error { return o.CorrectAmount(0, eur(a), "fix") }
	}
}

// TestCreateRetryDifferentEvents retries a create whose second run raises
// more events than the first: the store rejects the partly overlapping
// append, and the original Result comes back.
func TestCreateRetryDifferentEvents(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{})
	ctx := testCtx(t)
	const cmd = "create-twice"
	id := eventing.NewOrderID(cmd)
	first, err := repo.Create(ctx, id, eventing.CommandMeta{CommandID: cmd}, createOrder("c"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := repo.Create(ctx, id, eventing.CommandMeta{CommandID: cmd}, func(o *domain.Order) error {
		if err := createOrder("c")(o); err != nil {
			return err
		}
		return o.Confirm()
	})
	if err != nil {
		t.Fatalf("retried Create: %v", err)
	}
	sameResult(t, again, first)
}

// TestSkipReadBack checks that a command's Result without the read-back
// says so, and that Repository.Events completes it with what was stored.
func TestSkipReadBack(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{SkipReadBack: true})
	ctx := testCtx(t)
	id := eventing.NewOrderID("skip-1")
	res, err := repo.Create(ctx, id, eventing.CommandMeta{CommandID: "skip-1"}, createOrder("c"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete || len(res.Events) != 1 || !res.Events[0].RecordedAt.IsZero() || res.Events[0].Position != res.Position {
		t.Fatalf("Result = complete %v, events %+v; want incomplete, one event at %d without a recorded time", res.Complete, res.Events, res.Position)
	}
	stored, err := repo.Events(ctx, id, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].EventID != res.Events[0].EventID || stored[0].Position != res.Position || stored[0].RecordedAt.IsZero() {
		t.Fatalf("Events = %+v, want the appended event with its position %d and recorded time", stored, res.Position)
	}
	again, err := repo.Create(ctx, id, eventing.CommandMeta{CommandID: "skip-1"}, createOrder("c"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Position != res.Position || len(again.Events) != 1 || again.Events[0].EventID != res.Events[0].EventID {
		t.Errorf("retried command: %+v at %d, want the same event at %d", again.Events, again.Position, res.Position)
	}
}
