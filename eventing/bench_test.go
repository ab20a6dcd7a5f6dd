package eventing_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
)

// seedOrder stores an order of n events without going through the
// repository: a create, then quantity changes, appended in batches.
func seedOrder(b *testing.B, s *store, n int) string {
	b.Helper()
	ctx := context.Background()
	id := uuid.NewString()
	o := domain.New(id)
	if err := createOrder("c")(o); err != nil {
		b.Fatal(err)
	}
	for i := 1; i < n; i++ {
		if err := o.ChangeQuantity("sku-1", int64(1+i%2)); err != nil {
			b.Fatal(err)
		}
	}
	codec := newCodec()
	changes := o.Changes()
	for start := 0; start < len(changes); start += 500 {
		end := min(start+500, len(changes))
		var events []esdb.EventData
		for _, c := range changes[start:end] {
			ed, err := codec.Encode(uuid.New(), c.Event, eventing.Metadata{})
			if err != nil {
				b.Fatal(err)
			}
			events = append(events, ed)
		}
		var expected esdb.ExpectedRevision = esdb.NoStream{}
		if start > 0 {
			expected = esdb.Revision(uint64(start - 1))
		}
		if _, err := s.client.AppendToStream(ctx, eventing.OrderStream(id), esdb.AppendToStreamOptions{ExpectedRevision: expected}, events...); err != nil {
			b.Fatal(err)
		}
	}
	return id
}

// BenchmarkLoad loads orders of 10 and 10,000 events, by full replay and
// from a snapshot taken at the last event.
func BenchmarkLoad(b *testing.B) {
	s := startStore(b)
	for _, n := range []int{10, 10_000} {
		for _, snap := range []bool{false, true} {
			b.Run(fmt.Sprintf("events=%d/snapshot=%v", n, snap), func(b *testing.B) {
				ctx := context.Background()
				var id string
				var repo *eventing.Repository
				if snap {
					// The last event goes through a repository whose snapshot
					// interval it crosses.
					id = seedOrder(b, s, n-1)
					repo = newRepo(s, eventing.RepositoryOptions{SnapshotEvery: n})
					if _, err := repo.Update(ctx, id, eventing.CommandMeta{}, func(o *domain.Order) error {
						return o.ChangeQuantity("sku-1", 7)
					}); err != nil {
						b.Fatal(err)
					}
				} else {
					id = seedOrder(b, s, n)
					repo = newRepo(s, eventing.RepositoryOptions{SnapshotEvery: -1})
				}
				b.ResetTimer()
				for b.Loop() {
					o, err := repo.Load(ctx, id)
					if err != nil {
						b.Fatal(err)
					}
					if o.Version() != n {
						b.Fatalf("loaded %d events, want %d", o.Version(), n)
					}
				}
			})
		}
	}
}

// BenchmarkCreateConfirm runs create-then-confirm command pairs from 1 and
// 32 concurrent callers.
func BenchmarkCreateConfirm(b *testing.B) {
	for _, callers := range []int{1, 32} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := startStore(b)
			repo := newRepo(s, eventing.RepositoryOptions{})
			ctx := context.Background()
			var next atomic.Int64
			var failed atomic.Pointer[error]
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						cmd := uuid.NewString()
						id := eventing.NewOrderID(cmd)
						_, err := repo.Create(ctx, id, eventing.CommandMeta{CommandID: cmd}, createOrder("c"))
						if err == nil {
							_, err = repo.Update(ctx, id, eventing.CommandMeta{CommandID: cmd + "/confirm"}, func(o *domain.Order) error { return o.Confirm() })
						}
						if err != nil {
							failed.CompareAndSwap(nil, &err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if err := failed.Load(); err != nil {
				b.Fatal(*err)
			}
			b.ReportMetric(float64(2*b.N)/elapsed.Seconds(), "commands/s")
		})
	}
}
