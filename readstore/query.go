package readstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/jmoiron/sqlx"

	"github.com/ordertrail/ordertrail/domain"
)

const orderColumns = `id, customer_id, currency, status, total, adjustment, items, created_at, confirmed_at,
	paid_at, shipped_at, delivered_at, cancelled_at, cancel_reason, carrier, tracking_reference,
	corrections_count, revision, last_position`

// orderColumnsWithoutItems reads an order with an empty item list.
var orderColumnsWithoutItems = strings.Replace(orderColumns, "items", "'' AS items", 1)

const correctionColumns = `order_id, revision, corrected_revision, old_amount, new_amount, reason, at`

func domainStatus(s string) domain.Status { return domain.Status(s) }

type queryer interface {
	sqlx.QueryerContext
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
}

// loadOrder reads one order with its corrections, or ErrNotFound.
func loadOrder(ctx context.Context, q queryer, id string) (Order, error) {
	var row orderRow
	err := q.GetContext(ctx, &row, `SELECT `+orderColumns+` FROM orders WHERE id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, fmt.Errorf("order %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Order{}, fmt.Errorf("load order %s: %w", id, err)
	}
	o, err := row.order()
	if err != nil {
		return Order{}, err
	}
	if row.CorrectionsCount == 0 {
		return o, nil
	}
	var cs []correctionRow
	if err := q.SelectContext(ctx, &cs, `SELECT `+correctionColumns+` FROM order_corrections
		WHERE order_id = ? ORDER BY revision`, id); err != nil {
		return Order{}, fmt.Errorf("load order %s corrections: %w", id, err)
	}
	for _, c := range cs {
		o.Corrections = append(o.Corrections, c.correction())
	}
	return o, nil
}

// OrderAfter returns order id once the event at position is projected: as
// that event left it when the event is one of the last recentKept
// committed, without a read; otherwise as the read model holds it now. A
// command's payload asks for its order this way, at the position of the
// command's last event.
func (s *Store) OrderAfter(ctx context.Context, id string, position uint64) (Order, error) {
	if err := s.WaitFor(ctx, position); err != nil {
		return Order{}, err
	}
	s.mu.Lock()
	c, ok := s.recent.get(position)
	s.mu.Unlock()
	if ok && c.OrderID == id {
		return c.Order, nil
	}
	return s.Order(ctx, id)
}

// recentKept is the number of committed changes OrderAfter finds in memory.
const recentKept = 4096

// recentChanges holds the last recentKept committed changes by position.
// Their orders are shared with subscribers, so never modified.
type recentChanges struct {
	byPos map[uint64]Change
	ring  []uint64 // positions in byPos, oldest at next once full
	next  int
}

func (r *recentChanges) put(c Change) {
	if r.byPos == nil {
		r.byPos, r.ring = make(map[uint64]Change, recentKept), make([]uint64, 0, recentKept)
	}
	if len(r.ring) < recentKept {
		r.ring = append(r.ring, c.Position)
	} else {
		delete(r.byPos, r.ring[r.next])
		r.ring[r.next] = c.Position
		r.next = (r.next + 1) % recentKept
	}
	r.byPos[c.Position] = c
}

func (r *recentChanges) get(position uint64) (Change, bool) {
	c, ok := r.byPos[position]
	return c, ok
}

// Order returns one order, or an error wrapping ErrNotFound.
func (s *Store) Order(ctx context.Context, id string) (Order, error) {
	ctx, err := bounded(ctx)
	if err != nil {
		return Order{}, fmt.Errorf("order %s: %w", id, err)
	}
	return loadOrder(ctx, s.r, id)
}

// bounded returns the context for a query that reads a bounded number of
// rows by index: one that cannot be cancelled, so the driver runs it on
// the calling goroutine instead of watching ctx from a goroutine of its
// own for every row, which costs more than such a query. It fails at once
// when ctx is done.
func bounded(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

// OrdersByIDs returns the orders that exist among ids, keyed by ID, for
// dataloaders; missing IDs are simply absent from the map.
func (s *Store) OrdersByIDs(ctx context.Context, ids []string) (map[string]Order, error) {
	out := make(map[string]Order, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	ctx, err := bounded(ctx)
	if err != nil {
		return nil, fmt.Errorf("orders by IDs: %w", err)
	}
	query, args, err := sqlx.In(`SELECT `+orderColumns+` FROM orders WHERE id IN (?)`, ids)
	if err != nil {
		return nil, fmt.Errorf("orders by IDs: %w", err)
	}
	var rows []orderRow
	if err := s.r.SelectContext(ctx, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("orders by IDs: %w", err)
	}
	orders, err := withCorrections(ctx, s.r, rows)
	if err != nil {
		return nil, fmt.Errorf("orders by IDs: %w", err)
	}
	for _, o := range orders {
		out[o.ID] = o
	}
	return out, nil
}

// withCorrections turns rows into orders, loading the corrections of those
// that have any in one query.
func withCorrections(ctx context.Context, q queryer, rows []orderRow) ([]Order, error) {
	orders := make([]Order, 0, len(rows))
	index := map[string]int{}
	var corrected []string
	for _, r := range rows {
		o, err := r.order()
		if err != nil {
			return nil, err
		}
		if r.CorrectionsCount > 0 {
			index[o.ID] = len(orders)
			corrected = append(corrected, o.ID)
		}
		orders = append(orders, o)
	}
	if len(corrected) == 0 {
		return orders, nil
	}
	query, args, err := sqlx.In(`SELECT `+correctionColumns+` FROM order_corrections
		WHERE order_id IN (?) ORDER BY order_id, revision`, corrected)
	if err != nil {
		return nil, err
	}
	var cs []correctionRow
	if err := q.SelectContext(ctx, &cs, query, args...); err != nil {
		return nil, err
	}
	for _, c := range cs {
		o := &orders[index[c.OrderID]]
		o.Corrections = append(o.Corrections, c.correction())
	}
	return orders, nil
}

// OrderBy is the sort order of an order page.
type OrderBy string

// Sort orders; ties on the creation time are broken by order ID.
const (
	CreatedAtAsc  OrderBy = "CREATED_AT_ASC"
	CreatedAtDesc OrderBy = "CREATED_AT_DESC"
)

// OrderQuery selects a page of orders. Empty fields do not filter.
type OrderQuery struct {
	CustomerID  string
	Status      []domain.Status
	CreatedFrom *time.Time // inclusive
	CreatedTo   *time.Time // exclusive
	OrderBy     OrderBy    // CreatedAtAsc when empty
	After       string     // EndCursor of the previous page
	First       int        // page size: 20 when 0, at most MaxPageSize
	// WithoutItems leaves each order's Items empty, for callers that do
	// not show them; the page skips reading and decoding them.
	WithoutItems bool
}

// MaxPageSize bounds OrderQuery.First.
const MaxPageSize = 500

// OrderPage is one page of orders.
type OrderPage struct {
	Orders      []Order
	HasNextPage bool
	EndCursor   string // "" when the page is empty
}

// cursor is the decoded form of an opaque page cursor.
type cursor struct {
	Version   int     `json:"v"`
	OrderBy   OrderBy `json:"o"`
	CreatedAt int64   `json:"t"`
	ID        string  `json:"i"`
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c) // cannot fail: plain fields
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, by OrderBy) (cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, fmt.Errorf("%w: not base64", ErrBadCursor)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c cursor
	if err := dec.Decode(&c); err != nil {
		return cursor{}, fmt.Errorf("%w: malformed", ErrBadCursor)
	}
	if c.Version != 1 || c.ID == "" {
		return cursor{}, fmt.Errorf("%w: unknown version or empty key", ErrBadCursor)
	}
	if c.OrderBy != by {
		return cursor{}, fmt.Errorf("%w: made for %s, used with %s", ErrBadCursor, c.OrderBy, by)
	}
	return c, nil
}

// Orders returns a page of orders by keyset pagination on (created_at, id).
// A cursor that does not decode, or was made for another sort order,
// fails with ErrBadCursor.
func (s *Store) Orders(ctx context.Context, q OrderQuery) (OrderPage, error) {
	by := q.OrderBy
	if by == "" {
		by = CreatedAtAsc
	}
	if by != CreatedAtAsc && by != CreatedAtDesc {
		return OrderPage{}, fmt.Errorf("%w: order by %q", ErrBadQuery, by)
	}
	first := q.First
	if first == 0 {
		first = 20
	}
	if first < 0 || first > MaxPageSize {
		return OrderPage{}, fmt.Errorf("%w: first %d not in 1..%d", ErrBadQuery, q.First, MaxPageSize)
	}
	ctx, err := bounded(ctx)
	if err != nil {
		return OrderPage{}, fmt.Errorf("orders: %w", err)
	}
	var where []string
	var args []any
	if q.CustomerID != "" {
		where, args = append(where, "customer_id = ?"), append(args, q.CustomerID)
	}
	if len(q.Status) > 0 {
		where = append(where, "status IN (?"+strings.Repeat(", ?", len(q.Status)-1)+")")
		for _, st := range q.Status {
			args = append(args, string(st))
		}
	}
	if q.CreatedFrom != nil {
		where, args = append(where, "created_at >= ?"), append(args, q.CreatedFrom.UnixNano())
	}
	if q.CreatedTo != nil {
		where, args = append(where, "created_at < ?"), append(args, q.CreatedTo.UnixNano())
	}
	cmp, dir := ">", "ASC"
	if by == CreatedAtDesc {
		cmp, dir = "<", "DESC"
	}
	if q.After != "" {
		c, err := decodeCursor(q.After, by)
		if err != nil {
			return OrderPage{}, err
		}
		where, args = append(where, "(created_at, id) "+cmp+" (?, ?)"), append(args, c.CreatedAt, c.ID)
	}
	cols := orderColumns
	if q.WithoutItems {
		cols = orderColumnsWithoutItems
	}
	query := `SELECT ` + cols + ` FROM orders`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += fmt.Sprintf(" ORDER BY created_at %s, id %s LIMIT %d", dir, dir, first+1)
	rows := make([]orderRow, 0, first+1) // sqlx appends: no regrowing a page of wide rows
	if err := s.r.SelectContext(ctx, &rows, query, args...); err != nil {
		return OrderPage{}, fmt.Errorf("orders: %w", err)
	}
	page := OrderPage{HasNextPage: len(rows) > first}
	if page.HasNextPage {
		rows = rows[:first]
	}
	orders, err := withCorrections(ctx, s.r, rows)
	if err != nil {
		return OrderPage{}, fmt.Errorf("orders: %w", err)
	}
	page.Orders = orders
	if n := len(rows); n > 0 {
		page.EndCursor = encodeCursor(cursor{Version: 1, OrderBy: by, CreatedAt: rows[n-1].CreatedAt, ID: rows[n-1].ID})
	}
	return page, nil
}

type customerRow struct {
	ID           string `db:"customer_id"`
	OrderCount   int64  `db:"order_count"`
	OpenOrders   int64  `db:"open_orders"`
	FirstOrderAt int64  `db:"first_order_at"`
	LastOrderAt  int64  `db:"last_order_at"`
}

type valueRow struct {
	Currency string `db:"currency"`
	Value    int64  `db:"value"`
}

// Customer returns one customer, or an error wrapping ErrNotFound.
func (s *Store) Customer(ctx context.Context, id string) (Customer, error) {
	ctx, err := bounded(ctx)
	if err != nil {
		return Customer{}, fmt.Errorf("customer %s: %w", id, err)
	}
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Customer{}, fmt.Errorf("customer %s: %w", id, err)
	}
	defer tx.Rollback()
	var row customerRow
	err = tx.GetContext(ctx, &row, `SELECT customer_id, order_count, open_orders, first_order_at, last_order_at
		FROM customers WHERE customer_id = ?`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Customer{}, fmt.Errorf("customer %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Customer{}, fmt.Errorf("customer %s: %w", id, err)
	}
	var values []valueRow
	if err := tx.SelectContext(ctx, &values, `SELECT currency, value FROM customer_values
		WHERE customer_id = ? ORDER BY currency`, id); err != nil {
		return Customer{}, fmt.Errorf("customer %s values: %w", id, err)
	}
	c := Customer{ID: row.ID, OrderCount: row.OrderCount, OpenOrders: row.OpenOrders,
		FirstOrderAt: time.Unix(0, row.FirstOrderAt).UTC(), LastOrderAt: time.Unix(0, row.LastOrderAt).UTC(),
		LifetimeValue: make([]domain.Money, 0, len(values))}
	for _, v := range values {
		c.LifetimeValue = append(c.LifetimeValue, domain.Money{Amount: v.Value, Currency: v.Currency})
	}
	return c, nil
}

// TrendQuery selects trend buckets starting in [From, To).
type TrendQuery struct {
	From, To time.Time
	Bucket   Bucket
	Currency string // all currencies when empty
}

// Trends returns the buckets that had activity, by start time and currency.
func (s *Store) Trends(ctx context.Context, q TrendQuery) ([]Trend, error) {
	if q.Bucket != Hour && q.Bucket != Day {
		return nil, fmt.Errorf("%w: bucket %q", ErrBadQuery, q.Bucket)
	}
	if !q.To.After(q.From) {
		return nil, fmt.Errorf("%w: empty time range", ErrBadQuery)
	}
	query := `SELECT ` + trendColumns + ` FROM order_trends WHERE bucket_kind = ? AND bucket_start >= ? AND bucket_start < ?`
	args := []any{string(q.Bucket), q.From.UnixNano(), q.To.UnixNano()}
	if q.Currency != "" {
		query, args = query+" AND currency = ?", append(args, q.Currency)
	}
	var rows []trendRow
	if err := s.r.SelectContext(ctx, &rows, query+" ORDER BY bucket_start, currency", args...); err != nil {
		return nil, fmt.Errorf("trends: %w", err)
	}
	out := make([]Trend, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.trend())
	}
	return out, nil
}

// Status returns the projection's checkpoint, state and dead-letter count.
func (s *Store) Status(ctx context.Context) (ProjectionStatus, error) {
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return ProjectionStatus{}, fmt.Errorf("status: %w", err)
	}
	defer tx.Rollback()
	var st ProjectionStatus
	var cp int64
	err = tx.GetContext(ctx, &cp, `SELECT position FROM checkpoints WHERE projection = ?`, Projection)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return ProjectionStatus{}, fmt.Errorf("status: %w", err)
	}
	var row statusRow
	if err := tx.GetContext(ctx, &row, `SELECT state, halted_position, error FROM projection_status WHERE projection = ?`, Projection); err != nil {
		return ProjectionStatus{}, fmt.Errorf("status: %w", err)
	}
	if err := tx.GetContext(ctx, &st.DeadLetters, `SELECT count(*) FROM dead_letters WHERE projection = ?`, Projection); err != nil {
		return ProjectionStatus{}, fmt.Errorf("status: %w", err)
	}
	st.Checkpoint, st.State, st.HaltedAt, st.Error = uint64(cp), row.State, uint64(row.HaltedPosition.Int64), row.Error
	return st, nil
}

// DeadLetters returns up to limit parked events, oldest position first.
func (s *Store) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: limit %d", ErrBadQuery, limit)
	}
	var rows []struct {
		DeadLetter
		ParkedAt int64 `db:"parked_at"`
	}
	if err := s.r.SelectContext(ctx, &rows, `SELECT projection, position, stream, revision, event_type, error,
		data, parked_at FROM dead_letters WHERE projection = ? ORDER BY position LIMIT ?`, Projection, limit); err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	out := make([]DeadLetter, 0, len(rows))
	for _, r := range rows {
		d := r.DeadLetter
		d.ParkedAt = time.Unix(0, r.ParkedAt).UTC()
		d.Data = slices.Clone(d.Data)
		out = append(out, d)
	}
	return out, nil
}

func timeOf(n int64) time.Time { return time.Unix(0, n).UTC() }

// jsonUnmarshal decodes JSON this package wrote, with the v2 decoder: it
// is several times faster than encoding/json's.
func jsonUnmarshal(s string, v any) error { return jsonv2.Unmarshal([]byte(s), v) }
