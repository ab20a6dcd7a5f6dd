package readstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/ordertrail/ordertrail/domain"
)

// Apply projects a batch of events, in position order, in one transaction
// that also stores the checkpoint: max(checkpoint, last event position).
// Events at or below the stored checkpoint are skipped, so a batch can be
// delivered again without counting anything twice. It returns the changes
// it committed, which are also published to subscribers.
//
// An event that cannot be projected (DecodeErr, or an invariant such as an
// event for an unknown order) is poison. With the Halt policy the events
// before it are committed, the checkpoint is set to its position − 1, the
// projection is marked HALTED and Apply returns a *HaltedError, as do all
// later calls until Resume. With the Park policy it is written to
// dead_letters in the same transaction and the batch goes on.
func (s *Store) Apply(ctx context.Context, events []Event, checkpoint uint64) ([]Change, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	closed, halted, cp, hasCP := s.closed, s.halted, s.checkpoint, s.hasCP
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if halted != nil {
		return nil, halted
	}
	for i := 1; i < len(events); i++ {
		if events[i].Position <= events[i-1].Position {
			return nil, fmt.Errorf("apply: positions out of order: %d after %d", events[i].Position, events[i-1].Position)
		}
	}
	// The first attempt takes the orders created in the batch to be new
	// without reading them; if one exists after all, the attempt is rolled
	// back and the batch applied again with every order read, so the
	// result is always that of reading them.
	r, err := s.applyTx(ctx, events, checkpoint, cp, hasCP, false)
	if errors.Is(err, errNotNew) {
		r, err = s.applyTx(ctx, events, checkpoint, cp, hasCP, true)
	}
	if err != nil {
		s.cache.reset() // a failed commit may have happened after all
		return nil, err
	}
	for _, id := range r.b.dirty {
		s.cache.put(r.b.orders[id])
	}
	s.committedState(r.cp, r.hasCP, r.halted, r.b.changes)
	s.changes.publish(r.b.changes)
	s.trends.publish(r.trends)
	if r.halted != nil {
		return r.b.changes, r.halted
	}
	return r.b.changes, nil
}

// errNotNew reports that an order taken to be new already exists.
var errNotNew = errors.New("order created in the batch already exists")

// applied is what one committed Apply transaction did.
type applied struct {
	b      *batch
	trends []Trend
	cp     uint64
	hasCP  bool
	halted *HaltedError
}

// applyTx applies events in one transaction and commits it. Unless
// readAll, orders whose first event in the batch creates them are not
// read, and errNotNew reports one that existed.
func (s *Store) applyTx(ctx context.Context, events []Event, checkpoint, cp uint64, hasCP, readAll bool) (applied, error) {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return applied{}, fmt.Errorf("apply: begin: %w", err)
	}
	defer tx.Rollback()
	// The transaction still ends when ctx does (database/sql rolls it back
	// and later statements fail), but its statements get a context that
	// cannot be cancelled: for one that can, the driver runs every
	// statement and row on a goroutine of its own, which under load costs
	// more than the statement.
	ctx = context.WithoutCancel(ctx)

	b := newBatch(tx, len(events))
	if err := b.prefetch(ctx, events, cp, hasCP, &s.cache, readAll); err != nil {
		return applied{}, fmt.Errorf("apply: %w", err)
	}
	newCP, hasNew := cp, hasCP
	var halted *HaltedError
	type poisoned struct {
		ev  Event
		err error
	}
	var poisons []poisoned
	for _, ev := range events {
		if hasCP && ev.Position <= cp {
			continue
		}
		if s.failHook != nil {
			if err := s.failHook(ev); err != nil {
				return applied{}, fmt.Errorf("apply event at %d: %w", ev.Position, err)
			}
		}
		err := b.apply(ctx, ev)
		var poison *poisonError
		if errors.As(err, &poison) {
			poisons = append(poisons, poisoned{ev, err})
			if s.policy == Park {
				if err := b.park(ctx, ev, err); err != nil {
					return applied{}, fmt.Errorf("park event at %d: %w", ev.Position, err)
				}
				newCP, hasNew = ev.Position, true
				continue
			}
			halted = &HaltedError{Projection: Projection, Position: ev.Position, Err: err}
			break
		}
		if err != nil {
			return applied{}, fmt.Errorf("apply event at %d: %w", ev.Position, err)
		}
		newCP, hasNew = ev.Position, true
	}
	switch {
	case halted != nil && halted.Position > 0 && (!hasNew || halted.Position-1 > newCP):
		newCP, hasNew = halted.Position-1, true
	case halted == nil && checkpoint > newCP:
		newCP, hasNew = checkpoint, true
	}
	trends, err := b.flush(ctx)
	if errors.Is(err, errNotNew) {
		return applied{}, err
	}
	if err != nil {
		return applied{}, fmt.Errorf("apply: %w", err)
	}
	for _, p := range poisons {
		s.log.Error("poison event", "projection", Projection, "position", p.ev.Position, "stream", p.ev.Stream,
			"revision", p.ev.Revision, "type", p.ev.Type, "policy", s.policy.String(), "error", p.err)
	}
	if hasNew && (!hasCP || newCP != cp) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO checkpoints (projection, position) VALUES (?, ?)
			ON CONFLICT (projection) DO UPDATE SET position = excluded.position`, Projection, int64(newCP)); err != nil {
			return applied{}, fmt.Errorf("apply: store checkpoint: %w", err)
		}
	}
	if halted != nil {
		if _, err := tx.ExecContext(ctx, `UPDATE projection_status SET state = ?, halted_position = ?, error = ?
			WHERE projection = ?`, stateHalted, int64(halted.Position), halted.Err.Error(), Projection); err != nil {
			return applied{}, fmt.Errorf("apply: store halt: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return applied{}, fmt.Errorf("apply: commit: %w", err)
	}
	return applied{b: b, trends: trends, cp: newCP, hasCP: hasNew, halted: halted}, nil
}

// committedState records a commit in memory and wakes WaitFor callers.
func (s *Store) committedState(cp uint64, has bool, halted *HaltedError, changes []Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpoint, s.hasCP, s.halted = cp, has, halted
	for _, c := range changes[max(0, len(changes)-recentKept):] { // a rebuild's batch holds thousands
		s.recent.put(c)
	}
	close(s.committed)
	s.committed = make(chan struct{})
}

// Resume clears a halt. The caller then delivers events again from
// Checkpoint(); a poison event that still cannot be applied halts the
// projection again unless the store was opened with the Park policy.
func (s *Store) Resume(ctx context.Context) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if _, err := s.w.ExecContext(ctx, `UPDATE projection_status SET state = ?, halted_position = NULL, error = ''
		WHERE projection = ?`, stateRunning, Projection); err != nil {
		return fmt.Errorf("resume %s: %w", Projection, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.halted = nil
	return nil
}

// String returns "halt" or "park".
func (p PoisonPolicy) String() string {
	if p == Park {
		return "park"
	}
	return "halt"
}

type trendKey struct {
	bucket   Bucket
	start    int64
	currency string
}

type customerDelta struct {
	orders, open int64
	first, last  int64 // creation times of new orders, when orders > 0
	values       map[string]int64
	currencies   []string // touch order of values, for a stable statement order
}

// batch accumulates one Apply call's changes in memory; flush writes them.
type batch struct {
	tx          *sqlx.Tx
	orders      map[string]*Order // nil value: known (or, in assumed, taken) not to exist
	assumed     map[string]bool   // orders taken to be new without reading them
	dirty       []string
	isDirty     map[string]bool
	corrections []correctionRow
	customers   map[string]*customerDelta
	custOrder   []string
	trends      map[trendKey]*Trend
	trendOrder  []trendKey
	changes     []Change
}

// newBatch returns an empty batch for up to n events.
func newBatch(tx *sqlx.Tx, n int) *batch {
	return &batch{tx: tx, orders: map[string]*Order{}, assumed: map[string]bool{}, isDirty: map[string]bool{},
		customers: map[string]*customerDelta{}, trends: map[trendKey]*Trend{}, changes: make([]Change, 0, n)}
}

// apply projects one event; a *poisonError leaves the batch unchanged.
func (b *batch) apply(ctx context.Context, ev Event) error {
	var cur *Order
	if id, ok := orderIDOf(ev.Stream); ok {
		o, err := b.order(ctx, id)
		if err != nil {
			return err
		}
		cur = o
	}
	next, eff, err := project(cur, ev)
	if err != nil {
		return err
	}
	b.orders[next.ID] = next
	if !b.isDirty[next.ID] {
		b.isDirty[next.ID] = true
		b.dirty = append(b.dirty, next.ID)
	}
	if n := len(next.Corrections); cur != nil && n > len(cur.Corrections) {
		b.corrections = append(b.corrections, newCorrectionRow(next.ID, next.Corrections[n-1]))
	}
	b.customer(next, eff)
	if touchesTrends(ev.Event) {
		for _, k := range []Bucket{Hour, Day} {
			b.trend(k, next.Currency, ev.RecordedAt, eff)
		}
	}
	b.changes = append(b.changes, Change{Position: ev.Position, OrderID: next.ID, CustomerID: next.CustomerID,
		EventType: ev.Event.EventType(), Revision: ev.Revision, RecordedAt: norm(ev.RecordedAt), Order: *next})
	return nil
}

// touchesTrends reports whether an event is booked in the trend buckets of
// its RecordedAt. It depends on the event type only, so a bucket row exists
// or not whatever the batch boundaries were.
func touchesTrends(e domain.Event) bool {
	switch e.(type) {
	case *domain.OrderPaid, *domain.OrderDelivered:
		return false
	}
	return true
}

func (b *batch) customer(o *Order, eff effect) {
	d, ok := b.customers[o.CustomerID]
	if !ok {
		d = &customerDelta{values: map[string]int64{}}
		b.customers[o.CustomerID] = d
		b.custOrder = append(b.custOrder, o.CustomerID)
	}
	if eff.created > 0 {
		t := o.CreatedAt.UnixNano()
		if d.orders == 0 || t < d.first {
			d.first = t
		}
		if d.orders == 0 || t > d.last {
			d.last = t
		}
		d.orders++
	}
	d.open += eff.open
	if _, ok := d.values[o.Currency]; !ok {
		d.currencies = append(d.currencies, o.Currency)
	}
	d.values[o.Currency] += eff.value
}

func (b *batch) trend(kind Bucket, currency string, at time.Time, eff effect) {
	k := trendKey{bucket: kind, start: bucketStart(kind, at).UnixNano(), currency: currency}
	t, ok := b.trends[k]
	if !ok {
		t = &Trend{}
		b.trends[k] = t
		b.trendOrder = append(b.trendOrder, k)
	}
	t.Created += eff.created
	t.Confirmed += eff.confirmed
	t.Shipped += eff.shipped
	t.Cancelled += eff.cancelled
	t.Revenue += eff.value
}

// order returns the current state of an order: from this batch, or from
// the database, or nil when it does not exist.
func (b *batch) order(ctx context.Context, id string) (*Order, error) {
	if o, ok := b.orders[id]; ok {
		return o, nil
	}
	o, err := loadOrder(ctx, b.tx, id)
	if errors.Is(err, ErrNotFound) {
		b.orders[id] = nil
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b.orders[id] = &o
	return &o, nil
}

// prefetch finds, in the order cache or in a few queries, the orders the
// batch's new events belong to, so the events then find them in memory.
// Unless readAll, an order not cached whose first new event creates it is
// taken to be new; flush checks that it was.
func (b *batch) prefetch(ctx context.Context, events []Event, cp uint64, hasCP bool, cache *orderCache, readAll bool) error {
	var ids []string
	for _, ev := range events {
		id, ok := orderIDOf(ev.Stream)
		if _, seen := b.orders[id]; !ok || seen || (hasCP && ev.Position <= cp) {
			continue
		}
		if o := cache.get(id); o != nil {
			b.orders[id] = o
			continue
		}
		b.orders[id] = nil
		if _, creates := ev.Event.(*domain.OrderCreated); creates && ev.DecodeErr == nil && !readAll {
			b.assumed[id] = true
			continue
		}
		ids = append(ids, id)
	}
	for chunk := range slices.Chunk(ids, 500) {
		query, args, err := sqlx.In(`SELECT `+orderColumns+` FROM orders WHERE id IN (?)`, chunk)
		if err != nil {
			return err
		}
		var rows []orderRow
		if err := b.tx.SelectContext(ctx, &rows, query, args...); err != nil {
			return fmt.Errorf("load orders: %w", err)
		}
		orders, err := withCorrections(ctx, b.tx, rows)
		if err != nil {
			return fmt.Errorf("load orders: %w", err)
		}
		for i := range orders {
			b.orders[orders[i].ID] = &orders[i]
		}
	}
	return nil
}

// park records a poison event in dead_letters.
func (b *batch) park(ctx context.Context, ev Event, cause error) error {
	_, err := b.tx.ExecContext(ctx, `INSERT INTO dead_letters
		(projection, position, stream, revision, event_type, error, data, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		Projection, int64(ev.Position), ev.Stream, int64(ev.Revision), ev.Type, cause.Error(), []byte(ev.Data),
		ev.RecordedAt.UnixNano())
	return err
}

// flush writes the batch and returns the trend rows it changed, as they
// are after the batch. Rows go out in multi-row statements (see rowSQL).
func (b *batch) flush(ctx context.Context) ([]Trend, error) {
	if err := b.flushOrders(ctx); err != nil {
		return nil, err
	}
	if err := b.flushCustomers(ctx); err != nil {
		return nil, err
	}
	trends, err := b.flushTrends(ctx)
	if err != nil {
		return nil, err
	}
	if err := b.flushChanges(ctx); err != nil {
		return nil, err
	}
	return trends, nil
}

// chunkSizes are the row counts of multi-row statements, largest first.
// A fixed set keeps the few statement texts in the connection's statement
// cache, prepared once and reused by every batch.
var chunkSizes = [...]int{64, 16, 4, 1}

// rowSQL is one multi-row statement, "head VALUES (?, …), … tail", in
// each of the chunkSizes.
type rowSQL struct {
	cols  int
	texts [len(chunkSizes)]string
}

func newRowSQL(head string, cols int, tail string) *rowSQL {
	r := &rowSQL{cols: cols}
	row := "(" + strings.Repeat("?, ", cols-1) + "?)"
	for i, n := range chunkSizes {
		r.texts[i] = head + " VALUES " + strings.Repeat(row+", ", n-1) + row + tail
	}
	return r
}

// chunks calls fn with the statement text for each chunk [lo, hi) of n rows.
func (r *rowSQL) chunks(n int, fn func(query string, lo, hi int) error) error {
	lo := 0
	for i, size := range chunkSizes {
		for ; n-lo >= size; lo += size {
			if err := fn(r.texts[i], lo, lo+size); err != nil {
				return err
			}
		}
	}
	return nil
}

// exec writes n rows, row appending the values of row i to args, and
// returns the number of rows changed.
func (r *rowSQL) exec(ctx context.Context, tx *sqlx.Tx, n int, row func(args []any, i int) []any) (int64, error) {
	args := make([]any, 0, min(n, chunkSizes[0])*r.cols)
	var changed int64
	err := r.chunks(n, func(query string, lo, hi int) error {
		args = args[:0]
		for i := lo; i < hi; i++ {
			args = row(args, i)
		}
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		k, err := res.RowsAffected()
		changed += k
		return err
	})
	return changed, err
}

const insertOrdersHead = `INSERT INTO orders (id, customer_id, currency, status, total, adjustment, items,
		created_at, confirmed_at, paid_at, shipped_at, delivered_at, cancelled_at, cancel_reason, carrier,
		tracking_reference, corrections_count, revision, last_position)`

var (
	insertNewOrders = newRowSQL(insertOrdersHead, 19, ` ON CONFLICT (id) DO NOTHING`)
	upsertOrders    = newRowSQL(insertOrdersHead, 19, `
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, total = excluded.total,
		adjustment = excluded.adjustment, items = excluded.items, confirmed_at = excluded.confirmed_at,
		paid_at = excluded.paid_at, shipped_at = excluded.shipped_at, delivered_at = excluded.delivered_at,
		cancelled_at = excluded.cancelled_at, cancel_reason = excluded.cancel_reason, carrier = excluded.carrier,
		tracking_reference = excluded.tracking_reference, corrections_count = excluded.corrections_count,
		revision = excluded.revision, last_position = excluded.last_position`)
	insertCorrections = newRowSQL(`INSERT INTO order_corrections (order_id, revision, corrected_revision,
		old_amount, new_amount, reason, at)`, 7, "")
	upsertCustomers = newRowSQL(`INSERT INTO customers (customer_id, order_count, open_orders, first_order_at,
		last_order_at)`, 5, `
		ON CONFLICT (customer_id) DO UPDATE SET order_count = order_count + excluded.order_count,
		open_orders = open_orders + excluded.open_orders,
		first_order_at = min(first_order_at, excluded.first_order_at),
		last_order_at = max(last_order_at, excluded.last_order_at)`)
	upsertCustomerValues = newRowSQL(`INSERT INTO customer_values (customer_id, currency, value)`, 3, `
		ON CONFLICT (customer_id, currency) DO UPDATE SET value = value + excluded.value`)
	upsertTrends = newRowSQL(`INSERT INTO order_trends (bucket_kind, bucket_start, currency, created, confirmed,
		shipped, cancelled, revenue)`, 8, `
		ON CONFLICT (bucket_kind, bucket_start, currency) DO UPDATE SET created = created + excluded.created,
		confirmed = confirmed + excluded.confirmed, shipped = shipped + excluded.shipped,
		cancelled = cancelled + excluded.cancelled, revenue = revenue + excluded.revenue
		RETURNING `+trendColumns)
	insertChanges = newRowSQL(`INSERT INTO change_log (position, order_id, customer_id, event_type, revision,
		recorded_at, snapshot)`, 7, "")
)

func (b *batch) flushChanges(ctx context.Context) error {
	snaps := make([]string, len(b.changes))
	for i := range b.changes {
		snap, err := json.Marshal(&b.changes[i].Order)
		if err != nil {
			return fmt.Errorf("change log at %d: %w", b.changes[i].Position, err)
		}
		snaps[i] = string(snap)
	}
	_, err := insertChanges.exec(ctx, b.tx, len(b.changes), func(args []any, i int) []any {
		c := &b.changes[i]
		return append(args, int64(c.Position), c.OrderID, c.CustomerID, c.EventType, int64(c.Revision),
			c.RecordedAt.UnixNano(), snaps[i])
	})
	if err != nil {
		return fmt.Errorf("change log: %w", err)
	}
	return nil
}

func (b *batch) flushOrders(ctx context.Context) error {
	for id := range b.assumed {
		if b.isDirty[id] {
			continue
		}
		var n int
		if err := b.tx.GetContext(ctx, &n, `SELECT count(*) FROM orders WHERE id = ?`, id); err != nil {
			return fmt.Errorf("order %s: %w", id, err)
		}
		if n > 0 {
			return errNotNew
		}
	}
	var created, updated []*Order
	for _, id := range b.dirty {
		if b.assumed[id] {
			created = append(created, b.orders[id])
		} else {
			updated = append(updated, b.orders[id])
		}
	}
	for _, w := range []struct {
		sql    *rowSQL
		orders []*Order
	}{{insertNewOrders, created}, {upsertOrders, updated}} {
		items := make([]string, len(w.orders))
		for i, o := range w.orders {
			j, err := json.Marshal(o.Items)
			if err != nil {
				return fmt.Errorf("order %s: %w", o.ID, err)
			}
			items[i] = string(j)
		}
		n, err := w.sql.exec(ctx, b.tx, len(w.orders), func(args []any, i int) []any {
			o := w.orders[i]
			return append(args, o.ID, o.CustomerID, o.Currency, string(o.Status), o.Total, o.adjustment, items[i],
				o.CreatedAt.UnixNano(), nullTime(o.ConfirmedAt), nullTime(o.PaidAt), nullTime(o.ShippedAt),
				nullTime(o.DeliveredAt), nullTime(o.CancelledAt), o.CancelReason, o.Carrier, o.TrackingReference,
				int64(len(o.Corrections)), int64(o.Revision), int64(o.LastPosition))
		})
		if err != nil {
			return fmt.Errorf("orders: %w", err)
		}
		if w.sql == insertNewOrders && n != int64(len(created)) {
			return errNotNew
		}
	}
	_, err := insertCorrections.exec(ctx, b.tx, len(b.corrections), func(args []any, i int) []any {
		c := &b.corrections[i]
		return append(args, c.OrderID, c.Revision, c.CorrectedRevision, c.OldAmount, c.NewAmount, c.Reason, c.At)
	})
	if err != nil {
		return fmt.Errorf("order corrections: %w", err)
	}
	return nil
}

func (b *batch) flushCustomers(ctx context.Context) error {
	var created []string // customers with new orders, upserted together
	type value struct{ customer, currency string }
	var values []value
	for _, id := range b.custOrder {
		d := b.customers[id]
		if d.orders > 0 {
			created = append(created, id)
		} else if _, err := b.tx.ExecContext(ctx, `UPDATE customers SET open_orders = open_orders + ?
			WHERE customer_id = ?`, d.open, id); err != nil {
			return fmt.Errorf("customer %s: %w", id, err)
		}
		for _, cur := range d.currencies {
			values = append(values, value{id, cur})
		}
	}
	_, err := upsertCustomers.exec(ctx, b.tx, len(created), func(args []any, i int) []any {
		d := b.customers[created[i]]
		return append(args, created[i], d.orders, d.open, d.first, d.last)
	})
	if err != nil {
		return fmt.Errorf("customers: %w", err)
	}
	_, err = upsertCustomerValues.exec(ctx, b.tx, len(values), func(args []any, i int) []any {
		v := values[i]
		return append(args, v.customer, v.currency, b.customers[v.customer].values[v.currency])
	})
	if err != nil {
		return fmt.Errorf("customer values: %w", err)
	}
	return nil
}

func (b *batch) flushTrends(ctx context.Context) ([]Trend, error) {
	after := make(map[trendKey]Trend, len(b.trendOrder))
	args := make([]any, 0, min(len(b.trendOrder), chunkSizes[0])*upsertTrends.cols)
	err := upsertTrends.chunks(len(b.trendOrder), func(query string, lo, hi int) error {
		args = args[:0]
		for _, k := range b.trendOrder[lo:hi] {
			d := b.trends[k]
			args = append(args, string(k.bucket), k.start, k.currency, d.Created, d.Confirmed, d.Shipped,
				d.Cancelled, d.Revenue)
		}
		rows, err := b.tx.QueryxContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var row trendRow
			if err := rows.StructScan(&row); err != nil {
				return err
			}
			after[trendKey{bucket: Bucket(row.BucketKind), start: row.BucketStart, currency: row.Currency}] = row.trend()
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("trends: %w", err)
	}
	out := make([]Trend, 0, len(b.trendOrder))
	for _, k := range b.trendOrder {
		t, ok := after[k]
		if !ok {
			return nil, fmt.Errorf("trend %s %d %s: not returned by its upsert", k.bucket, k.start, k.currency)
		}
		out = append(out, t)
	}
	return out, nil
}

// orderRow is an orders row.
type orderRow struct {
	ID                string        `db:"id"`
	CustomerID        string        `db:"customer_id"`
	Currency          string        `db:"currency"`
	Status            string        `db:"status"`
	Total             int64         `db:"total"`
	Adjustment        int64         `db:"adjustment"`
	Items             string        `db:"items"`
	CreatedAt         int64         `db:"created_at"`
	ConfirmedAt       sql.NullInt64 `db:"confirmed_at"`
	PaidAt            sql.NullInt64 `db:"paid_at"`
	ShippedAt         sql.NullInt64 `db:"shipped_at"`
	DeliveredAt       sql.NullInt64 `db:"delivered_at"`
	CancelledAt       sql.NullInt64 `db:"cancelled_at"`
	CancelReason      string        `db:"cancel_reason"`
	Carrier           string        `db:"carrier"`
	TrackingReference string        `db:"tracking_reference"`
	CorrectionsCount  int64         `db:"corrections_count"`
	Revision          int64         `db:"revision"`
	LastPosition      int64         `db:"last_position"`
}

type correctionRow struct {
	OrderID           string `db:"order_id"`
	Revision          int64  `db:"revision"`
	CorrectedRevision int64  `db:"corrected_revision"`
	OldAmount         int64  `db:"old_amount"`
	NewAmount         int64  `db:"new_amount"`
	Reason            string `db:"reason"`
	At                int64  `db:"at"`
}

func newCorrectionRow(orderID string, c Correction) correctionRow {
	return correctionRow{OrderID: orderID, Revision: int64(c.Revision), CorrectedRevision: int64(c.CorrectedRevision),
		OldAmount: c.OldAmount, NewAmount: c.NewAmount, Reason: c.Reason, At: c.At.UnixNano()}
}

func (r correctionRow) correction() Correction {
	return Correction{Revision: uint64(r.Revision), CorrectedRevision: uint64(r.CorrectedRevision),
		OldAmount: r.OldAmount, NewAmount: r.NewAmount, Reason: r.Reason, At: time.Unix(0, r.At).UTC()}
}

func (r orderRow) order() (Order, error) {
	o := Order{ID: r.ID, CustomerID: r.CustomerID, Currency: r.Currency, Status: domainStatus(r.Status),
		Total: r.Total, CreatedAt: time.Unix(0, r.CreatedAt).UTC(), ConfirmedAt: timePtr(r.ConfirmedAt),
		PaidAt: timePtr(r.PaidAt), ShippedAt: timePtr(r.ShippedAt), DeliveredAt: timePtr(r.DeliveredAt),
		CancelledAt: timePtr(r.CancelledAt), CancelReason: r.CancelReason, Carrier: r.Carrier,
		TrackingReference: r.TrackingReference, Corrections: []Correction{}, Revision: uint64(r.Revision),
		LastPosition: uint64(r.LastPosition), adjustment: r.Adjustment}
	if r.Items != "" { // "": not read (orderColumnsWithoutItems)
		if err := jsonUnmarshal(r.Items, &o.Items); err != nil {
			return Order{}, fmt.Errorf("order %s items: %w", r.ID, err)
		}
	}
	if o.Items == nil {
		o.Items = []Item{}
	}
	return o, nil
}

func nullTime(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

func timePtr(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := time.Unix(0, n.Int64).UTC()
	return &t
}

const trendColumns = `bucket_kind, bucket_start, currency, created, confirmed, shipped, cancelled, revenue`

type trendRow struct {
	BucketKind  string `db:"bucket_kind"`
	BucketStart int64  `db:"bucket_start"`
	Currency    string `db:"currency"`
	Created     int64  `db:"created"`
	Confirmed   int64  `db:"confirmed"`
	Shipped     int64  `db:"shipped"`
	Cancelled   int64  `db:"cancelled"`
	Revenue     int64  `db:"revenue"`
}

func (r trendRow) trend() Trend {
	t := Trend{Bucket: Bucket(r.BucketKind), BucketStart: time.Unix(0, r.BucketStart).UTC(), Currency: r.Currency,
		Created: r.Created, Confirmed: r.Confirmed, Shipped: r.Shipped, Cancelled: r.Cancelled, Revenue: r.Revenue}
	if t.Created > 0 {
		t.AverageOrderValue = t.Revenue / t.Created
	}
	return t
}
