package eventing

import (
	"context"
	"fmt"
	"time"

	"github.com/ordertrail/ordertrail/domain"
)

// History returns every stored event of an order in revision order, for
// audit views. An event that cannot be decoded is included with DecodeErr
// set rather than left out. A missing order is ErrNotFound.
func (r *Repository) History(ctx context.Context, orderID string) ([]Envelope, error) {
	return within(ctx, func() ([]Envelope, error) { return r.history(ctx, orderID) })
}

func (r *Repository) history(ctx context.Context, orderID string) ([]Envelope, error) {
	envs, err := r.readFrom(ctx, OrderStream(orderID), 0)
	if err != nil {
		return nil, fmt.Errorf("history of order %s: %w", orderID, err)
	}
	return envs, nil
}

// StateAt rebuilds an order as it was: from its events up to and including
// revision, and recorded at or before asOf, whichever of the two are given
// (neither means the current state). It never uses snapshots, so it also
// serves to check them. When no event qualifies it returns ErrNotFound.
func (r *Repository) StateAt(ctx context.Context, orderID string, revision *uint64, asOf *time.Time) (*domain.Order, error) {
	return within(ctx, func() (*domain.Order, error) { return r.stateAt(ctx, orderID, revision, asOf) })
}

func (r *Repository) stateAt(ctx context.Context, orderID string, revision *uint64, asOf *time.Time) (*domain.Order, error) {
	envs, err := r.readFrom(ctx, OrderStream(orderID), 0)
	if err != nil {
		return nil, fmt.Errorf("state of order %s: %w", orderID, err)
	}
	var recs []domain.Recorded
	for _, env := range envs {
		if (revision != nil && env.Revision > *revision) || (asOf != nil && env.RecordedAt.After(*asOf)) {
			break
		}
		if env.DecodeErr != nil {
			return nil, fmt.Errorf("state of order %s: %w", orderID, env.DecodeErr)
		}
		recs = append(recs, domain.Recorded{Event: env.Event, CommandID: env.Metadata.CommandID})
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("state of order %s: no event by then: %w", orderID, ErrNotFound)
	}
	o, err := domain.Rehydrate(orderID, recs)
	if err != nil {
		return nil, fmt.Errorf("state of order %s: %w", orderID, err)
	}
	return o, nil
}
