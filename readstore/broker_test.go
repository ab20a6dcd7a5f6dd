package readstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/readstore"
)

// collect reads changes until it has one at or past last, and checks that
// positions strictly increase (no duplicate). It may run on any goroutine.
func collect(sub *readstore.Subscription[readstore.Change], last uint64) ([]uint64, error) {
	var got []uint64
	timeout := time.After(20 * time.Second) // a hang guard, not a wait
	for {
		select {
		case c, ok := <-sub.C:
			if !ok {
				return got, fmt.Errorf("subscription ended after %d changes: %w", len(got), sub.Err())
			}
			if n := len(got); n > 0 && c.Position <= got[n-1] {
				return got, fmt.Errorf("position %d after %d", c.Position, got[n-1])
			}
			got = append(got, c.Position)
			if c.Position >= last {
				return got, nil
			}
		case <-timeout:
			return got, fmt.Errorf("timed out after %d changes", len(got))
		}
	}
}

// applyAll applies events in batches of n; it may run on any goroutine.
func applyAll(s *readstore.Store, events []readstore.Event, n int) error {
	for i := 0; i < len(events); i += n {
		batch := events[i:min(i+n, len(events))]
		if _, err := s.Apply(context.Background(), batch, batch[len(batch)-1].Position); err != nil {
			return err
		}
	}
	return nil
}

func positions(events []readstore.Event, after uint64, keep func(readstore.Event) bool) []uint64 {
	var out []uint64
	for _, e := range events {
		if e.Position > after && (keep == nil || keep(e)) {
			out = append(out, e.Position)
		}
	}
	return out
}

func equalPositions(t *testing.T, got, want []uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("change %d at %d, want %d (gap or duplicate)", i, got[i], want[i])
		}
	}
}

// TestSubscribeReplayThenLive subscribes while Apply runs concurrently: the
// subscriber must see every position after its start exactly once.
func TestSubscribeReplayThenLive(t *testing.T) {
	events := history(9, 200)
	last := events[len(events)-1].Position
	half := len(events) / 2
	for _, tc := range []struct {
		name   string
		from   uint64
		filter readstore.ChangeFilter
		keep   func(readstore.Event) bool
	}{
		{name: "all from start"},
		{name: "from a position", from: events[half/2].Position},
		{name: "one order", filter: readstore.ChangeFilter{OrderID: "o00007"},
			keep: func(e readstore.Event) bool { return e.Stream == "order-o00007" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := openStore(t, readstore.Options{})
			applyBatches(t, s, events[:half], 50)
			want := positions(events, tc.from, tc.keep)
			sub, err := s.Subscribe(ctx, tc.from, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			applied := make(chan error, 1)
			go func() { applied <- applyAll(s, events[half:], 7) }()
			got, err := collect(sub, want[len(want)-1])
			if err != nil {
				t.Fatal(err)
			}
			if err := <-applied; err != nil {
				t.Fatal(err)
			}
			equalPositions(t, got, want)
			if want[len(want)-1] != last && tc.keep == nil {
				t.Errorf("last = %d, want %d", want[len(want)-1], last)
			}
		})
	}
}

func TestSubscribeFromNow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := history(2, 30)
	s := openStore(t, readstore.Options{})
	half := len(events) / 2
	applyBatches(t, s, events[:half], 20)
	sub, err := s.Subscribe(ctx, 0, readstore.ChangeFilter{FromNow: true})
	if err != nil {
		t.Fatal(err)
	}
	applyBatches(t, s, events[half:], 20)
	got, err := collect(sub, events[len(events)-1].Position)
	if err != nil {
		t.Fatal(err)
	}
	equalPositions(t, got, positions(events, events[half-1].Position, nil))
	cancel()
	for range sub.C {
	}
	if !errors.Is(sub.Err(), context.Canceled) {
		t.Errorf("Err = %v, want context.Canceled", sub.Err())
	}
}

// TestSlowSubscriberDropped never reads: Apply must not block, and the
// subscriber ends with ErrSlowSubscriber after a prefix without gaps.
func TestSlowSubscriberDropped(t *testing.T) {
	ctx := context.Background()
	events := history(4, 120)
	s := openStore(t, readstore.Options{})
	slow, err := s.Subscribe(ctx, 0, readstore.ChangeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	fast, err := s.Subscribe(ctx, 0, readstore.ChangeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	trends, err := s.SubscribeTrends(ctx, readstore.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	// The service subscribes through Live; its slow subscribers end the same way.
	liveSlow, err := readstore.NewLive(s).Subscribe(ctx, 0, readstore.ChangeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var fastGot []uint64
	var fastErr error
	fastDone := make(chan struct{})
	go func() { defer close(fastDone); fastGot, fastErr = collect(fast, events[len(events)-1].Position) }()
	<-slow.CaughtUp()
	<-fast.CaughtUp()
	<-liveSlow.CaughtUp()
	applyBatches(t, s, events, 10) // returns although nobody reads slow or trends
	<-fastDone
	if fastErr != nil {
		t.Fatal(fastErr)
	}
	equalPositions(t, fastGot, positions(events, 0, nil))

	for name, sub := range map[string]*readstore.Subscription[readstore.Change]{"store": slow, "live": liveSlow} {
		var got []uint64
		for c := range sub.C {
			got = append(got, c.Position)
		}
		if !errors.Is(sub.Err(), readstore.ErrSlowSubscriber) {
			t.Errorf("%s: slow Err = %v, want ErrSlowSubscriber", name, sub.Err())
		}
		if len(got) == 0 || len(got) >= len(events) {
			t.Errorf("%s: slow subscriber got %d of %d changes", name, len(got), len(events))
		}
		equalPositions(t, got, positions(events, 0, nil)[:len(got)])
	}
	for range trends.C {
	}
	if !errors.Is(trends.Err(), readstore.ErrSlowSubscriber) {
		t.Errorf("trends Err = %v, want ErrSlowSubscriber", trends.Err())
	}
}

func TestSubscribeTrends(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openStore(t, readstore.Options{})
	sub, err := s.SubscribeTrends(ctx, readstore.Day, "EUR")
	if err != nil {
		t.Fatal(err)
	}
	l := newLog()
	apply(t, s, []readstore.Event{
		l.next("o1", &domain.OrderCreated{OrderID: "o1", CustomerID: "c", Currency: "EUR", Total: 500}, time.Time{}),
		l.next("o2", &domain.OrderCreated{OrderID: "o2", CustomerID: "c", Currency: "USD", Total: 100}, time.Time{}),
		l.next("o1", &domain.OrderCancelled{OrderID: "o1", Reason: "r"}, time.Time{}),
	})
	got := <-sub.C
	want := readstore.Trend{Bucket: readstore.Day, BucketStart: t0.Truncate(24 * time.Hour), Currency: "EUR",
		Created: 1, Cancelled: 1, Revenue: 0}
	if got != want {
		t.Errorf("trend = %+v, want %+v", got, want)
	}
	cancel()
	for range sub.C {
	}
	if !errors.Is(sub.Err(), context.Canceled) {
		t.Errorf("Err = %v", sub.Err())
	}
}

func TestCloseEndsSubscriptions(t *testing.T) {
	ctx := context.Background()
	s, err := readstore.OpenFresh(ctx, filepath.Join(t.TempDir(), "r.db"), readstore.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := s.Subscribe(ctx, 0, readstore.ChangeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for range sub.C {
	}
	if !errors.Is(sub.Err(), readstore.ErrClosed) {
		t.Errorf("Err = %v, want ErrClosed", sub.Err())
	}
	if _, err := s.Apply(ctx, nil, 1); !errors.Is(err, readstore.ErrClosed) {
		t.Errorf("Apply after Close: %v", err)
	}
}

// TestLiveSwap moves a subscription to a rebuilt store: no gap, no
// duplicate, and queries follow the swap.
func TestLiveSwap(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := history(8, 150)
	old := openStore(t, readstore.Options{})
	third := len(events) / 3
	applyBatches(t, old, events[:third], 25)
	live := readstore.NewLive(old)
	sub, err := live.Subscribe(ctx, 0, readstore.ChangeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	var gotErr error
	done := make(chan struct{})
	go func() { defer close(done); got, gotErr = collect(sub, events[len(events)-1].Position) }()

	applyBatches(t, old, events[third:2*third], 25)
	rebuilt := openStore(t, readstore.Options{})
	applyBatches(t, rebuilt, events[:third], 100)
	if _, err := live.Swap(ctx, rebuilt); !errors.Is(err, readstore.ErrBehind) {
		t.Fatalf("swap to a store behind: err = %v, want ErrBehind", err)
	}
	applyBatches(t, rebuilt, events[third:2*third], 100)
	prev, err := live.Swap(ctx, rebuilt)
	if err != nil {
		t.Fatal(err)
	}
	if hash(t, prev) != hash(t, rebuilt) {
		t.Error("the rebuilt store differs from the incrementally fed one")
	}
	prev.Close()
	applyBatches(t, live.Current(), events[2*third:], 25)
	<-done
	if gotErr != nil {
		t.Fatal(gotErr)
	}
	equalPositions(t, got, positions(events, 0, nil))
	if live.Current() != rebuilt {
		t.Error("Current is not the rebuilt store")
	}
}

func TestWaitFor(t *testing.T) {
	ctx := context.Background()
	events := history(6, 10)
	s := openStore(t, readstore.Options{WaitTimeout: 10 * time.Second})
	target := events[len(events)-1].Position
	done := make(chan error, 1)
	go func() { done <- s.WaitFor(ctx, target) }()
	for _, e := range events {
		apply(t, s, []readstore.Event{e})
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitFor: %v", err)
	}
	if err := s.WaitFor(ctx, target); err != nil {
		t.Errorf("WaitFor a reached position: %v", err)
	}
	short := openStore(t, readstore.Options{WaitTimeout: 50 * time.Millisecond})
	apply(t, short, events[:1])
	err := short.WaitFor(ctx, target)
	if !errors.Is(err, readstore.ErrStale) {
		t.Errorf("WaitFor ahead: err = %v, want ErrStale", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	s2 := openStore(t, readstore.Options{WaitTimeout: time.Hour})
	if err := s2.WaitFor(cctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitFor with a cancelled context: %v", err)
	}
}
