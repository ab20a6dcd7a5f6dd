package readstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("apply: begin: %w", err)
	}
	defer tx.Rollback()

	b := newBatch(tx)
	if err := b.prefetch(ctx, events, cp, hasCP); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	newCP, hasNew := cp, hasCP
	for _, ev := range events {
		if hasCP && ev.Position <= cp {
			continue
		}
		if s.failHook != nil {
			if err := s.failHook(ev); err != nil {
				return nil, fmt.Errorf("apply event at %d: %w", ev.Position, err)
			}
		}
		err := b.apply(ctx, ev)
		var poison *poisonError
		if errors.As(err, &poison) {
			s.log.Error("poison event", "projection", Projection, "position", ev.Position, "stream", ev.Stream,
				"revision", ev.Revision, "type", ev.Type, "policy", s.policy.String(), "error", err)
			if s.policy == Park {
				if err := b.park(ctx, ev, err); err != nil {
					return nil, fmt.Errorf("park event at %d: %w", ev.Position, err)
				}
				newCP, hasNew = ev.Position, true
				continue
			}
			halted = &HaltedError{Projection: Projection, Position: ev.Position, Err: err}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("apply event at %d: %w", ev.Position, err)
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
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	if hasNew && (!hasCP || newCP != cp) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO checkpoints (projection, position) VALUES (?, ?)
			ON CONFLICT (projection) DO UPDATE SET position = excluded.position`, Projection, int64(newCP)); err != nil {
			return nil, fmt.Errorf("apply: store checkpoint: %w", err)
		}
	}
	if halted != nil {
		if _, err := tx.ExecContext(ctx, `UPDATE projection_status SET state = ?, halted_position = ?, error = ?
			WHERE projection = ?`, stateHalted, int64(halted.Position), halted.Err.Error(), Projection); err != nil {
			return nil, fmt.Errorf("apply: store halt: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("apply: commit: %w", err)
	}
	s.committedState(newCP, hasNew, halted)
	s.changes.publish(b.changes)
	s.trends.publish(trends)
	if halted != nil {
		return b.changes, halted
	}
	return b.changes, nil
}

// committedState records a commit in memory and wakes WaitFor callers.
func (s *Store) committedState(cp uint64, has bool, halted *HaltedError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpoint, s.hasCP, s.halted = cp, has, halted
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
	orders      map[string]*Order // nil value: known not to exist
	dirty       []string
	isDirty     map[string]bool
	corrections []correctionRow
	customers   map[string]*customerDelta
	custOrder   []string
	trends      map[trendKey]*Trend
	trendOrder  []trendKey
	changes     []Change
}

func newBatch(tx *sqlx.Tx) *batch {
	return &batch{tx: tx, orders: map[string]*Order{}, isDirty: map[string]bool{},
		customers: map[string]*customerDelta{}, trends: map[trendKey]*Trend{}}
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

// prefetch loads, in a few queries, the orders the batch's new events
// belong to, so the events then find them in memory.
func (b *batch) prefetch(ctx context.Context, events []Event, cp uint64, hasCP bool) error {
	var ids []string
	for _, ev := range events {
		id, ok := orderIDOf(ev.Stream)
		if _, seen := b.orders[id]; !ok || seen || (hasCP && ev.Position <= cp) {
			continue
		}
		b.orders[id] = nil
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
// are after the batch.
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
	if len(b.changes) == 0 {
		return trends, nil
	}
	ins, err := b.tx.PreparexContext(ctx, `INSERT INTO change_log
		(position, order_id, customer_id, event_type, revision, recorded_at, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return nil, fmt.Errorf("change log: %w", err)
	}
	defer ins.Close()
	for _, c := range b.changes {
		snap, err := json.Marshal(c.Order)
		if err != nil {
			return nil, fmt.Errorf("change log: %w", err)
		}
		if _, err := ins.ExecContext(ctx, int64(c.Position), c.OrderID, c.CustomerID, c.EventType,
			int64(c.Revision), c.RecordedAt.UnixNano(), string(snap)); err != nil {
			return nil, fmt.Errorf("change log at %d: %w", c.Position, err)
		}
	}
	return trends, nil
}

func (b *batch) flushOrders(ctx context.Context) error {
	if len(b.dirty) == 0 {
		return nil
	}
	up, err := b.tx.PrepareNamedContext(ctx, `INSERT INTO orders (id, customer_id, currency, status, total,
		adjustment, items, created_at, confirmed_at, paid_at, shipped_at, delivered_at, cancelled_at, cancel_reason,
		carrier, tracking_reference, corrections_count, revision, last_position) VALUES (:id, :customer_id,
		:currency, :status, :total, :adjustment, :items, :created_at, :confirmed_at, :paid_at, :shipped_at,
		:delivered_at, :cancelled_at, :cancel_reason, :carrier, :tracking_reference, :corrections_count,
		:revision, :last_position)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, total = excluded.total,
		adjustment = excluded.adjustment, items = excluded.items, confirmed_at = excluded.confirmed_at,
		paid_at = excluded.paid_at, shipped_at = excluded.shipped_at, delivered_at = excluded.delivered_at,
		cancelled_at = excluded.cancelled_at, cancel_reason = excluded.cancel_reason, carrier = excluded.carrier,
		tracking_reference = excluded.tracking_reference, corrections_count = excluded.corrections_count,
		revision = excluded.revision, last_position = excluded.last_position`)
	if err != nil {
		return fmt.Errorf("orders: %w", err)
	}
	defer up.Close()
	for _, id := range b.dirty {
		row, err := toOrderRow(b.orders[id])
		if err != nil {
			return fmt.Errorf("order %s: %w", id, err)
		}
		if _, err := up.ExecContext(ctx, row); err != nil {
			return fmt.Errorf("order %s: %w", id, err)
		}
	}
	for _, c := range b.corrections {
		if _, err := b.tx.NamedExecContext(ctx, `INSERT INTO order_corrections (order_id, revision,
			corrected_revision, old_amount, new_amount, reason, at) VALUES (:order_id, :revision,
			:corrected_revision, :old_amount, :new_amount, :reason, :at)`, c); err != nil {
			return fmt.Errorf("order %s correction: %w", c.OrderID, err)
		}
	}
	return nil
}

func (b *batch) flushCustomers(ctx context.Context) error {
	for _, id := range b.custOrder {
		d := b.customers[id]
		var err error
		if d.orders > 0 {
			_, err = b.tx.ExecContext(ctx, `INSERT INTO customers (customer_id, order_count, open_orders,
				first_order_at, last_order_at) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (customer_id) DO UPDATE SET order_count = order_count + excluded.order_count,
				open_orders = open_orders + excluded.open_orders,
				first_order_at = min(first_order_at, excluded.first_order_at),
				last_order_at = max(last_order_at, excluded.last_order_at)`, id, d.orders, d.open, d.first, d.last)
		} else {
			_, err = b.tx.ExecContext(ctx, `UPDATE customers SET open_orders = open_orders + ? WHERE customer_id = ?`, d.open, id)
		}
		if err != nil {
			return fmt.Errorf("customer %s: %w", id, err)
		}
		for _, cur := range d.currencies {
			if _, err := b.tx.ExecContext(ctx, `INSERT INTO customer_values (customer_id, currency, value)
				VALUES (?, ?, ?) ON CONFLICT (customer_id, currency) DO UPDATE SET value = value + excluded.value`,
				id, cur, d.values[cur]); err != nil {
				return fmt.Errorf("customer %s value: %w", id, err)
			}
		}
	}
	return nil
}

func (b *batch) flushTrends(ctx context.Context) ([]Trend, error) {
	out := make([]Trend, 0, len(b.trendOrder))
	for _, k := range b.trendOrder {
		d := b.trends[k]
		var row trendRow
		err := b.tx.GetContext(ctx, &row, `INSERT INTO order_trends (bucket_kind, bucket_start, currency, created,
			confirmed, shipped, cancelled, revenue) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (bucket_kind, bucket_start, currency) DO UPDATE SET created = created + excluded.created,
			confirmed = confirmed + excluded.confirmed, shipped = shipped + excluded.shipped,
			cancelled = cancelled + excluded.cancelled, revenue = revenue + excluded.revenue
			RETURNING `+trendColumns, string(k.bucket), k.start, k.currency, d.Created, d.Confirmed, d.Shipped,
			d.Cancelled, d.Revenue)
		if err != nil {
			return nil, fmt.Errorf("trend %s %d %s: %w", k.bucket, k.start, k.currency, err)
		}
		out = append(out, row.trend())
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

func toOrderRow(o *Order) (orderRow, error) {
	items, err := json.Marshal(o.Items)
	if err != nil {
		return orderRow{}, err
	}
	return orderRow{ID: o.ID, CustomerID: o.CustomerID, Currency: o.Currency, Status: string(o.Status),
		Total: o.Total, Adjustment: o.adjustment, Items: string(items), CreatedAt: o.CreatedAt.UnixNano(),
		ConfirmedAt: nullTime(o.ConfirmedAt), PaidAt: nullTime(o.PaidAt), ShippedAt: nullTime(o.ShippedAt),
		DeliveredAt: nullTime(o.DeliveredAt), CancelledAt: nullTime(o.CancelledAt), CancelReason: o.CancelReason,
		Carrier: o.Carrier, TrackingReference: o.TrackingReference, CorrectionsCount: int64(len(o.Corrections)),
		Revision: int64(o.Revision), LastPosition: int64(o.LastPosition)}, nil
}

func (r orderRow) order() (Order, error) {
	o := Order{ID: r.ID, CustomerID: r.CustomerID, Currency: r.Currency, Status: domainStatus(r.Status),
		Total: r.Total, CreatedAt: time.Unix(0, r.CreatedAt).UTC(), ConfirmedAt: timePtr(r.ConfirmedAt),
		PaidAt: timePtr(r.PaidAt), ShippedAt: timePtr(r.ShippedAt), DeliveredAt: timePtr(r.DeliveredAt),
		CancelledAt: timePtr(r.CancelledAt), CancelReason: r.CancelReason, Carrier: r.Carrier,
		TrackingReference: r.TrackingReference, Corrections: []Correction{}, Revision: uint64(r.Revision),
		LastPosition: uint64(r.LastPosition), adjustment: r.Adjustment}
	if err := json.Unmarshal([]byte(r.Items), &o.Items); err != nil {
		return Order{}, fmt.Errorf("order %s items: %w", r.ID, err)
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
