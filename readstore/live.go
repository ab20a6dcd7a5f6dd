package readstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Live holds the store that serves queries and lets a rebuilt store take
// its place. A rebuild opens a fresh file with OpenFresh, applies the full
// history to it while the current store keeps serving, and calls Swap once
// it has caught up. Subscriptions made through Live move to the new store:
// they resubscribe from the last position they delivered, which names the
// same event in both stores, so there is no gap and no duplicate.
type Live struct {
	cur atomic.Pointer[Store]

	mu      sync.Mutex
	swapped chan struct{} // closed and replaced by every Swap
}

// NewLive returns a Live serving s.
func NewLive(s *Store) *Live {
	l := &Live{swapped: make(chan struct{})}
	l.cur.Store(s)
	return l
}

// Current returns the store to query now.
func (l *Live) Current() *Store { return l.cur.Load() }

// Swap makes next the current store and returns the previous one, which
// the caller closes once in-flight queries are done. It fails with
// ErrBehind when next's checkpoint is below the current one, so queries
// never go back in time. A store still in bulk-load mode gets its indexes
// first (EndBulkLoad).
func (l *Live) Swap(ctx context.Context, next *Store) (*Store, error) {
	if err := next.EndBulkLoad(ctx); err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := l.cur.Load()
	pcp, err := prev.Checkpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	ncp, err := next.Checkpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	if ncp < pcp {
		return nil, fmt.Errorf("%w: %d < %d", ErrBehind, ncp, pcp)
	}
	l.cur.Store(next)
	close(l.swapped)
	l.swapped = make(chan struct{})
	return prev, nil
}

func (l *Live) current() (*Store, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur.Load(), l.swapped
}

// Subscribe is Store.Subscribe on the current store, continued on every
// store swapped in later.
func (l *Live) Subscribe(ctx context.Context, fromPosition uint64, filter ChangeFilter) (*Subscription[Change], error) {
	s, swapped := l.current()
	if filter.FromNow {
		cp, err := s.Checkpoint(ctx)
		if err != nil {
			return nil, err
		}
		fromPosition, filter.FromNow = cp, false
	}
	out := make(chan Change)
	sub := newSubscription[Change](out)
	go func() {
		defer close(out)
		caughtUp := sync.OnceFunc(func() { close(sub.caughtUp) })
		last := fromPosition
		for {
			var err error
			last, err = s.stream(ctx, out, last, filter, swapped, caughtUp)
			if ctx.Err() == nil && closed(swapped) {
				// The old store ended the stream, or is closed after the
				// swap: go on from the last position sent, which names the
				// same event in the new store.
				s, swapped = l.current()
				continue
			}
			switch {
			case ctx.Err() != nil:
				err = ctx.Err()
			case err == nil || errors.Is(err, errSwapped):
				err = ErrClosed
			}
			sub.fail(err)
			return
		}
	}()
	return sub, nil
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// The queries below answer from the current store, so a rebuilt store
// serves them as soon as it is swapped in.

// WaitFor is Store.WaitFor on the current store, continued on its
// successor when a swap closes it during the wait.
func (l *Live) WaitFor(ctx context.Context, position uint64) error {
	for {
		s := l.Current()
		err := s.WaitFor(ctx, position)
		if !errors.Is(err, ErrClosed) || l.Current() == s {
			return err
		}
	}
}

// OrderAfter is Store.OrderAfter on the current store, continued on its
// successor when a swap closes it during the wait.
func (l *Live) OrderAfter(ctx context.Context, id string, position uint64) (Order, error) {
	for {
		s := l.Current()
		o, err := s.OrderAfter(ctx, id, position)
		if !errors.Is(err, ErrClosed) || l.Current() == s {
			return o, err
		}
	}
}

// Order is Store.Order on the current store.
func (l *Live) Order(ctx context.Context, id string) (Order, error) {
	return l.Current().Order(ctx, id)
}

// Orders is Store.Orders on the current store.
func (l *Live) Orders(ctx context.Context, q OrderQuery) (OrderPage, error) {
	return l.Current().Orders(ctx, q)
}

// Customer is Store.Customer on the current store.
func (l *Live) Customer(ctx context.Context, id string) (Customer, error) {
	return l.Current().Customer(ctx, id)
}

// CustomersByIDs is Store.CustomersByIDs on the current store.
func (l *Live) CustomersByIDs(ctx context.Context, ids []string) (map[string]Customer, error) {
	return l.Current().CustomersByIDs(ctx, ids)
}

// Trends is Store.Trends on the current store.
func (l *Live) Trends(ctx context.Context, q TrendQuery) ([]Trend, error) {
	return l.Current().Trends(ctx, q)
}

// Status is Store.Status on the current store.
func (l *Live) Status(ctx context.Context) (ProjectionStatus, error) {
	return l.Current().Status(ctx)
}

// SubscribeTrends is Store.SubscribeTrends on the current store; it ends
// with ErrClosed when that store is swapped out, and the client
// resubscribes.
func (l *Live) SubscribeTrends(ctx context.Context, bucket Bucket, currency string) (*Subscription[Trend], error) {
	return l.Current().SubscribeTrends(ctx, bucket, currency)
}

// DeadLetters is Store.DeadLetters on the current store.
func (l *Live) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	return l.Current().DeadLetters(ctx, limit)
}
