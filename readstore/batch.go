package readstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/ordertrail/ordertrail/domain"
)

// CustomersByIDs returns the customers among ids that exist, keyed by ID,
// in two queries whatever the number of IDs; it backs per-request
// dataloaders.
func (s *Store) CustomersByIDs(ctx context.Context, ids []string) (map[string]Customer, error) {
	out := make(map[string]Customer, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	ctx, err := bounded(ctx)
	if err != nil {
		return nil, fmt.Errorf("customers by IDs: %w", err)
	}
	q, args, err := sqlx.In(`SELECT customer_id, order_count, open_orders, first_order_at, last_order_at
		FROM customers WHERE customer_id IN (?)`, ids)
	if err != nil {
		return nil, fmt.Errorf("customers: %w", err)
	}
	var rows []customerRow
	if err := s.r.SelectContext(ctx, &rows, s.r.Rebind(q), args...); err != nil {
		return nil, fmt.Errorf("customers: %w", err)
	}
	for _, row := range rows {
		out[row.ID] = Customer{ID: row.ID, OrderCount: row.OrderCount, OpenOrders: row.OpenOrders,
			FirstOrderAt: time.Unix(0, row.FirstOrderAt).UTC(), LastOrderAt: time.Unix(0, row.LastOrderAt).UTC(),
			LifetimeValue: []domain.Money{}}
	}
	q, args, err = sqlx.In(`SELECT customer_id, currency, value FROM customer_values
		WHERE customer_id IN (?) ORDER BY customer_id, currency`, ids)
	if err != nil {
		return nil, fmt.Errorf("customer values: %w", err)
	}
	var values []struct {
		ID string `db:"customer_id"`
		valueRow
	}
	if err := s.r.SelectContext(ctx, &values, s.r.Rebind(q), args...); err != nil {
		return nil, fmt.Errorf("customer values: %w", err)
	}
	for _, v := range values {
		c, ok := out[v.ID]
		if !ok {
			continue
		}
		c.LifetimeValue = append(c.LifetimeValue, domain.Money{Amount: v.Value, Currency: v.Currency})
		out[v.ID] = c
	}
	return out, nil
}
