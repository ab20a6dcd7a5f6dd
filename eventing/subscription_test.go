package eventing_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
)

// recorder is a BatchHandler that keeps what it was given and signals when
// its checkpoint passes a position.
type recorder struct {
	mu         sync.Mutex
	checkpoint uint64
	events     []eventing.Envelope
	batches    int
	empty      int // batches with no events, only a checkpoint
	changed    chan struct{}
	failNext   error
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) Checkpoint(context.Context) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkpoint, nil
}

func (r *recorder) HandleBatch(_ context.Context, events []eventing.Envelope, checkpoint uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.failNext; err != nil {
		r.failNext = nil
		return err
	}
	if checkpoint <= r.checkpoint {
		return fmt.Errorf("checkpoint %d does not advance past %d", checkpoint, r.checkpoint)
	}
	for _, e := range events {
		if e.Position > checkpoint {
			return fmt.Errorf("event at %d is past the batch checkpoint %d", e.Position, checkpoint)
		}
	}
	r.events = append(r.events, events...)
	r.checkpoint = checkpoint
	r.batches++
	if len(events) == 0 {
		r.empty++
	}
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

// waitFor blocks until cond holds for the recorder or ctx ends.
func (r *recorder) waitFor(ctx context.Context, t *testing.T, what string, cond func(*recorder) bool) {
	t.Helper()
	for {
		r.mu.Lock()
		ok, ch := cond(r), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
	}
}

func (r *recorder) snapshot() ([]eventing.Envelope, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]eventing.Envelope(nil), r.events...), r.checkpoint
}

// runSubscription runs RunSubscription until the test ends, reporting its
// statuses on a channel.
func runSubscription(t *testing.T, client *esdb.Client, h eventing.BatchHandler, opts eventing.SubscriptionOptions) (statuses <-chan eventing.SubscriptionStatus, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan eventing.SubscriptionStatus, 1000)
	opts.OnStatus = func(st eventing.SubscriptionStatus) {
		select {
		case ch <- st:
		default:
		}
	}
	done := make(chan error, 1)
	go func() { done <- eventing.RunSubscription(ctx, client, newCodec(), h, opts) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("RunSubscription returned %v, want context.Canceled", err)
			}
			// A goroutine that has just signalled its end may still be
			// on its way out; give it a few scheduling rounds.
			buf := make([]byte, 1<<20)
			for i := 0; ; i++ {
				stacks := string(buf[:runtime.Stack(buf, true)])
				if !strings.Contains(stacks, "eventing.(*subscriber)") {
					break
				}
				if i == 1000 {
					t.Errorf("a subscription goroutine outlived RunSubscription:\n%s", stacks)
					break
				}
				runtime.Gosched()
			}
		})
	}
	t.Cleanup(stop)
	return ch, stop
}

// appendOrders creates n orders with one command each and returns the
// commit positions of their events.
func appendOrders(ctx context.Context, t *testing.T, repo *eventing.Repository, n int) []uint64 {
	t.Helper()
	var positions []uint64
	for range n {
		res, err := repo.Create(ctx, uuid.NewString(), eventing.CommandMeta{}, createOrder("c"))
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		positions = append(positions, res.Position)
	}
	return positions
}

// appendNoise appends n events to streams outside the order prefix.
func appendNoise(ctx context.Context, t *testing.T, s *store, n int) uint64 {
	t.Helper()
	var last uint64
	for range n {
		wr, err := s.client.AppendToStream(ctx, "noise-"+uuid.NewString(), esdb.AppendToStreamOptions{}, esdb.EventData{
			EventID: uuid.New(), EventType: "Noise", ContentType: esdb.ContentTypeJson, Data: []byte(`{}`),
		})
		if err != nil {
			t.Fatal(err)
		}
		last = wr.CommitPosition
	}
	return last
}

func checkDelivered(t *testing.T, got []eventing.Envelope, want []uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("handled %d events, want %d", len(got), len(want))
	}
	for i, e := range got {
		if e.Position != want[i] {
			t.Fatalf("event %d at position %d, want %d", i, e.Position, want[i])
		}
		if e.Event == nil || e.DecodeErr != nil {
			t.Fatalf("event %d not decoded: %v", i, e.DecodeErr)
		}
	}
}

func TestSubscription(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{SnapshotEvery: -1})
	ctx := testCtx(t)
	want := appendOrders(ctx, t, repo, 30)
	h := newRecorder()
	statuses, stop := runSubscription(t, s.client, h, eventing.SubscriptionOptions{BatchSize: 7})

	waitStatus(ctx, t, statuses, "caught up", func(st eventing.SubscriptionStatus) bool { return st.Connected && st.CaughtUp })
	want = append(want, appendOrders(ctx, t, repo, 20)...)
	h.waitFor(ctx, t, "all events", func(r *recorder) bool { return len(r.events) >= len(want) })
	got, _ := h.snapshot()
	checkDelivered(t, got, want)

	t.Run("resumes from checkpoint", func(t *testing.T) {
		stop()
		_, cp := h.snapshot()
		if cp != want[len(want)-1] {
			t.Fatalf("checkpoint %d, want %d", cp, want[len(want)-1])
		}
		want = append(want, appendOrders(ctx, t, repo, 5)...)
		runSubscription(t, s.client, h, eventing.SubscriptionOptions{})
		h.waitFor(ctx, t, "events after restart", func(r *recorder) bool { return len(r.events) >= len(want) })
		got, _ := h.snapshot()
		checkDelivered(t, got, want)
	})
}

// TestSubscriptionCheckpointsWithoutEvents checks that a filtered
// subscription moves the checkpoint past events that did not match.
func TestSubscriptionCheckpointsWithoutEvents(t *testing.T) {
	s := startStore(t)
	ctx := testCtx(t)
	last := appendNoise(ctx, t, s, 200)
	h := newRecorder()
	runSubscription(t, s.client, h, eventing.SubscriptionOptions{})
	// Checkpoints come every 32 scanned events, so the last one is within
	// 32 events of the head.
	h.waitFor(ctx, t, "checkpoint near the head", func(r *recorder) bool { return r.checkpoint+32 >= last })
	got, _ := h.snapshot()
	if len(got) != 0 {
		t.Errorf("handled %d events, want none", len(got))
	}
}

// TestSubscriptionUndecodable hands an undecodable event to the handler
// with DecodeErr set instead of skipping it.
func TestSubscriptionUndecodable(t *testing.T) {
	s := startStore(t)
	ctx := testCtx(t)
	wr, err := s.client.AppendToStream(ctx, eventing.OrderStream(uuid.NewString()), esdb.AppendToStreamOptions{}, esdb.EventData{
		EventID: uuid.New(), EventType: domain.TypeOrderPaid, ContentType: esdb.ContentTypeJson, Data: []byte(`{"amount":"x"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := newRecorder()
	runSubscription(t, s.client, h, eventing.SubscriptionOptions{})
	h.waitFor(ctx, t, "the event", func(r *recorder) bool { return len(r.events) == 1 })
	got, _ := h.snapshot()
	var de *eventing.DecodeError
	if !errors.As(got[0].DecodeErr, &de) || de.Revision != 0 || got[0].Position != wr.CommitPosition || got[0].Event != nil {
		t.Errorf("envelope %+v, want DecodeErr at revision 0", got[0])
	}
}

// TestSubscriptionRecovers resubscribes after a handler failure and after
// a restart of the store, without losing or repeating events.
func TestSubscriptionRecovers(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{SnapshotEvery: -1})
	ctx := testCtx(t)
	h := newRecorder()
	statuses, _ := runSubscription(t, s.client, h, eventing.SubscriptionOptions{})
	want := appendOrders(ctx, t, repo, 10)
	h.waitFor(ctx, t, "first events", func(r *recorder) bool { return len(r.events) >= len(want) })

	t.Run("handler error", func(t *testing.T) {
		h.mu.Lock()
		h.failNext = errors.New("disk full")
		h.mu.Unlock()
		want = append(want, appendOrders(ctx, t, repo, 10)...)
		waitStatus(ctx, t, statuses, "the handler error", func(st eventing.SubscriptionStatus) bool { return !st.Connected && st.LastError != "" })
		h.waitFor(ctx, t, "events after the error", func(r *recorder) bool { return len(r.events) >= len(want) })
		got, _ := h.snapshot()
		checkDelivered(t, got, want)
	})
	t.Run("store restart", func(t *testing.T) {
		s.restart(t)
		waitStatus(ctx, t, statuses, "disconnect", func(st eventing.SubscriptionStatus) bool { return !st.Connected })
		want = append(want, appendOrdersRetrying(ctx, t, repo, 10)...)
		h.waitFor(ctx, t, "events after the restart", func(r *recorder) bool { return len(r.events) >= len(want) })
		got, _ := h.snapshot()
		checkDelivered(t, got, want)
	})
}

// appendOrdersRetrying is appendOrders for a store that may still be
// coming back: it retries creates that found it unavailable.
func appendOrdersRetrying(ctx context.Context, t *testing.T, repo *eventing.Repository, n int) []uint64 {
	t.Helper()
	var positions []uint64
	for i := range n {
		cmd := fmt.Sprint("retrying-", uuid.NewString(), i)
		res, err := retryUnavailable(ctx, func() (eventing.Result, error) {
			return repo.Create(ctx, eventing.NewOrderID(cmd), eventing.CommandMeta{CommandID: cmd}, createOrder("c"))
		})
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		positions = append(positions, res.Position)
	}
	return positions
}

func waitStatus(ctx context.Context, t *testing.T, statuses <-chan eventing.SubscriptionStatus, what string, cond func(eventing.SubscriptionStatus) bool) {
	t.Helper()
	for {
		select {
		case st := <-statuses:
			if cond(st) {
				return
			}
		case <-ctx.Done():
			t.Fatalf("waiting for status %s: %v", what, ctx.Err())
		}
	}
}

// TestSubscriptionRedial moves the store to another port: the client gives
// up on the old address and closes itself, and Redial replaces it.
func TestSubscriptionRedial(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{SnapshotEvery: -1})
	ctx := testCtx(t)
	want := appendOrders(ctx, t, repo, 3)
	var addr atomic.Pointer[string]
	redials := make(chan struct{}, 100)
	h := newRecorder()
	statuses, _ := runSubscription(t, s.client, h, eventing.SubscriptionOptions{
		Redial: func(context.Context) (*esdb.Client, error) {
			redials <- struct{}{}
			a := addr.Load()
			if a == nil {
				return nil, errors.New("store not back yet")
			}
			return eventing.Connect(*a)
		},
	})
	h.waitFor(ctx, t, "first events", func(r *recorder) bool { return len(r.events) >= len(want) })

	if err := s.srv.Close(); err != nil {
		t.Fatal(err)
	}
	waitStatus(ctx, t, statuses, "disconnect", func(st eventing.SubscriptionStatus) bool { return !st.Connected })
	s.start(t, "") // same directory, new port, new client for the repository
	cs := s.srv.ConnectionString()
	addr.Store(&cs)
	select {
	case <-redials:
	case <-ctx.Done():
		t.Fatal("Redial was not called")
	}
	repo = newRepo(s, eventing.RepositoryOptions{SnapshotEvery: -1})
	want = append(want, appendOrders(ctx, t, repo, 3)...)
	h.waitFor(ctx, t, "events after the move", func(r *recorder) bool { return len(r.events) >= len(want) })
	got, _ := h.snapshot()
	checkDelivered(t, got, want)
}
