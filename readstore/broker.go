package readstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// BufferSize is the number of items a subscriber may fall behind before it
// is dropped with ErrSlowSubscriber.
const BufferSize = 256

// Subscription is a stream of changes or trend rows. C is closed when the
// subscription ends; Err then says why (nil while it runs).
type Subscription[T any] struct {
	C <-chan T

	caughtUp chan struct{}
	mu       sync.Mutex
	err      error
}

func newSubscription[T any](c <-chan T) *Subscription[T] {
	return &Subscription[T]{C: c, caughtUp: make(chan struct{})}
}

// CaughtUp is closed once the replay is done and the subscription is
// registered for live items; items sent after it are live.
func (s *Subscription[T]) CaughtUp() <-chan struct{} { return s.caughtUp }

// Err returns why the subscription ended: ErrSlowSubscriber, ErrClosed,
// the context's error, or a read error. It is nil while C is open.
func (s *Subscription[T]) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Subscription[T]) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// liveSub is a broker's view of one subscriber.
type liveSub[T any] struct {
	ch    chan T
	keep  func(T) bool
	owner *Subscription[T] // failed when the broker removes the subscriber, if set
	err   error            // why the broker removed it; read once ch is closed
}

// broker fans committed items out to subscribers. It owns its state behind
// one mutex and never blocks: a subscriber whose buffer is full is removed
// and its channel closed.
type broker[T any] struct {
	mu     sync.Mutex
	subs   map[*liveSub[T]]struct{}
	closed bool
}

func (b *broker[T]) add(s *liveSub[T]) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if b.subs == nil {
		b.subs = map[*liveSub[T]]struct{}{}
	}
	b.subs[s] = struct{}{}
	return nil
}

// remove ends a subscriber with err; it is a no-op when already removed.
func (b *broker[T]) remove(s *liveSub[T], err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removeLocked(s, err)
}

func (b *broker[T]) removeLocked(s *liveSub[T], err error) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	s.err = err
	if s.owner != nil {
		s.owner.fail(err)
	}
	close(s.ch)
}

func (b *broker[T]) publish(items []T) {
	if len(items) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
	deliver:
		for _, it := range items {
			if s.keep != nil && !s.keep(it) {
				continue
			}
			select {
			case s.ch <- it:
			default:
				b.removeLocked(s, fmt.Errorf("%w: %d items behind", ErrSlowSubscriber, BufferSize))
				break deliver
			}
		}
	}
}

func (b *broker[T]) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		b.removeLocked(s, ErrClosed)
	}
}

// ChangeFilter selects the changes a subscriber gets; empty fields match
// everything.
type ChangeFilter struct {
	OrderID    string
	CustomerID string
	// FromNow starts after the current checkpoint, ignoring fromPosition.
	FromNow bool
}

func (f ChangeFilter) keep(c Change) bool {
	return (f.OrderID == "" || c.OrderID == f.OrderID) && (f.CustomerID == "" || c.CustomerID == f.CustomerID)
}

// replayPage is the number of change-log rows read per query while
// catching up.
const replayPage = 500

// Subscribe streams the changes after fromPosition (exclusive) that match
// filter: first from the change log, then live, without gap or duplicate.
// It catches up from the log, registers with the broker, reads the log once
// more from the last position sent, and then forwards live changes above
// that position. Registering after the bulk of the replay means a long
// replay cannot overflow the live buffer. A subscriber that falls BufferSize changes behind is
// dropped with ErrSlowSubscriber and may subscribe again from the last
// position it received.
func (s *Store) Subscribe(ctx context.Context, fromPosition uint64, filter ChangeFilter) (*Subscription[Change], error) {
	s.mu.Lock()
	closed, cp := s.closed, s.checkpoint
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if filter.FromNow {
		fromPosition = cp
	}
	out := make(chan Change)
	sub := newSubscription[Change](out)
	go func() {
		defer close(out)
		if _, err := s.stream(ctx, out, fromPosition, filter, nil, func() { close(sub.caughtUp) }); err != nil {
			sub.fail(err)
		}
	}()
	return sub, nil
}

// errSwapped ends a stream whose store Live has swapped out.
var errSwapped = errors.New("read model swapped")

// stream sends to out the changes after last that match f: first from the
// change log, then live. It runs until ctx ends, the store closes, the
// broker drops the subscriber, or swapped is closed (errSwapped), and
// returns the last position sent and why it stopped. caughtUp is called
// once the replay is done and the subscriber is registered for live
// changes.
func (s *Store) stream(ctx context.Context, out chan<- Change, last uint64, f ChangeFilter, swapped <-chan struct{}, caughtUp func()) (uint64, error) {
	send := func(c Change) error {
		select {
		case out <- c:
			last = c.Position
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return ErrClosed
		case <-swapped:
			return errSwapped
		}
	}
	catchUp := func() error {
		for {
			page, err := s.readLog(ctx, last, f)
			if err != nil {
				select {
				case <-s.done:
					return ErrClosed
				default:
					return err
				}
			}
			for _, c := range page {
				if err := send(c); err != nil {
					return err
				}
			}
			if len(page) < replayPage {
				return nil
			}
		}
	}
	if err := catchUp(); err != nil {
		return last, err
	}
	live := &liveSub[Change]{ch: make(chan Change, BufferSize), keep: f.keep}
	if err := s.changes.add(live); err != nil {
		return last, err
	}
	defer s.changes.remove(live, nil)
	if err := catchUp(); err != nil {
		return last, err
	}
	caughtUp()
	for {
		select {
		case c, ok := <-live.ch:
			if !ok {
				return last, live.err // the broker recorded why
			}
			if c.Position > last {
				if err := send(c); err != nil {
					return last, err
				}
			}
		case <-ctx.Done():
			return last, ctx.Err()
		case <-swapped:
			return last, errSwapped
		}
	}
}

type changeRow struct {
	Position   int64  `db:"position"`
	OrderID    string `db:"order_id"`
	CustomerID string `db:"customer_id"`
	EventType  string `db:"event_type"`
	Revision   int64  `db:"revision"`
	RecordedAt int64  `db:"recorded_at"`
	Snapshot   string `db:"snapshot"`
}

// readLog reads up to replayPage change-log rows after position.
func (s *Store) readLog(ctx context.Context, after uint64, f ChangeFilter) ([]Change, error) {
	query := `SELECT position, order_id, customer_id, event_type, revision, recorded_at, snapshot
		FROM change_log WHERE position > ?`
	args := []any{int64(after)}
	if f.OrderID != "" {
		query, args = query+" AND order_id = ?", append(args, f.OrderID)
	}
	if f.CustomerID != "" {
		query, args = query+" AND customer_id = ?", append(args, f.CustomerID)
	}
	var rows []changeRow
	if err := s.r.SelectContext(ctx, &rows, query+" ORDER BY position LIMIT ?", append(args, replayPage)...); err != nil {
		return nil, fmt.Errorf("read change log after %d: %w", after, err)
	}
	out := make([]Change, 0, len(rows))
	for _, r := range rows {
		c := Change{Position: uint64(r.Position), OrderID: r.OrderID, CustomerID: r.CustomerID,
			EventType: r.EventType, Revision: uint64(r.Revision), RecordedAt: timeOf(r.RecordedAt)}
		if err := jsonUnmarshal(r.Snapshot, &c.Order); err != nil {
			return nil, fmt.Errorf("change log at %d: %w", r.Position, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// SubscribeTrends streams the trend rows of one bucket width (and one
// currency, unless empty) as each committed batch changes them. It has no
// replay: query Trends first. The slow-subscriber rule of Subscribe applies.
func (s *Store) SubscribeTrends(ctx context.Context, bucket Bucket, currency string) (*Subscription[Trend], error) {
	if bucket != Hour && bucket != Day {
		return nil, fmt.Errorf("%w: bucket %q", ErrBadQuery, bucket)
	}
	ch := make(chan Trend, BufferSize)
	sub := newSubscription[Trend](ch)
	close(sub.caughtUp)
	live := &liveSub[Trend]{ch: ch, owner: sub, keep: func(t Trend) bool {
		return t.Bucket == bucket && (currency == "" || t.Currency == currency)
	}}
	if err := s.trends.add(live); err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { s.trends.remove(live, ctx.Err()) })
	return sub, nil
}
