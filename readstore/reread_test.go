package readstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/readstore"
)

// TestCreatedAgainAfterReopen checks that an OrderCreated for an order
// committed earlier is poison even when the store has not seen the order
// since it was opened (Apply takes orders created in a batch to be new and
// must notice when one is not), for both policies.
func TestCreatedAgainAfterReopen(t *testing.T) {
	for _, policy := range []readstore.PoisonPolicy{readstore.Halt, readstore.Park} {
		t.Run(policy.String(), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "read.db")
			opts := readstore.Options{Logger: quietLogger(), Poison: map[string]readstore.PoisonPolicy{readstore.Projection: policy}}
			s, err := readstore.OpenFresh(ctx, path, opts)
			if err != nil {
				t.Fatal(err)
			}
			l := newLog()
			created := &domain.OrderCreated{OrderID: "o1", CustomerID: "c1", Currency: "EUR",
				Items: []domain.Line{{SKU: "a", Quantity: 1, UnitPrice: 100}}, Total: 100}
			apply(t, s, []readstore.Event{l.next("o1", created, time.Time{})})
			s.Close()
			s, err = readstore.Open(ctx, path, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			good := l.next("o2", &domain.OrderCreated{OrderID: "o2", CustomerID: "c1", Currency: "EUR", Total: 5}, time.Time{})
			again := l.next("o1", created, time.Time{})
			confirm := l.next("o1", &domain.OrderConfirmed{OrderID: "o1"}, time.Time{})
			changes, err := s.Apply(ctx, []readstore.Event{good, again, confirm}, confirm.Position)
			var halted *readstore.HaltedError
			switch policy {
			case readstore.Halt:
				if !errors.As(err, &halted) || halted.Position != again.Position {
					t.Fatalf("err = %v, want HaltedError at %d", err, again.Position)
				}
				if len(changes) != 1 || changes[0].Position != good.Position {
					t.Fatalf("changes = %+v, want only %d", changes, good.Position)
				}
			case readstore.Park:
				if err != nil {
					t.Fatal(err)
				}
				if len(changes) != 2 || changes[1].Order.Status != domain.StatusConfirmed || changes[1].Order.Total != 100 {
					t.Fatalf("changes = %+v, want o2 created and o1 confirmed", changes)
				}
				dl, err := s.DeadLetters(ctx, 10)
				if err != nil || len(dl) != 1 || dl[0].Position != again.Position {
					t.Fatalf("dead letters = %+v, %v", dl, err)
				}
			}
		})
	}
}
