package eventing_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
)

func TestHistoryAndStateAt(t *testing.T) {
	s := startStore(t)
	repo := newRepo(s, eventing.RepositoryOptions{SnapshotEvery: 2})
	ctx := testCtx(t)
	id := uuid.NewString()
	if _, err := repo.Create(ctx, id, eventing.CommandMeta{CommandID: "h0", Actor: "ann"}, createOrder("c")); err != nil {
		t.Fatal(err)
	}
	steps := []func(*domain.Order) error{
		func(o *domain.Order) error {
			return o.AddItem(domain.NewItem{SKU: "sku-2", Quantity: 1, UnitPrice: eur(500)})
		},
		func(o *domain.Order) error { return o.Confirm() },
		func(o *domain.Order) error { return o.MarkPaid(eur(1500), "pay-1") },
	}
	for i, fn := range steps {
		if _, err := repo.Update(ctx, id, eventing.CommandMeta{CommandID: "h" + string(rune('1'+i))}, fn); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}

	hist, err := repo.History(ctx, id)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	wantTypes := []string{domain.TypeOrderCreated, domain.TypeOrderItemAdded, domain.TypeOrderConfirmed, domain.TypeOrderPaid}
	if len(hist) != len(wantTypes) {
		t.Fatalf("History has %d events, want %d", len(hist), len(wantTypes))
	}
	for i, e := range hist {
		if e.Type != wantTypes[i] || e.Revision != uint64(i) || e.RecordedAt.IsZero() || e.Event == nil || len(e.Data) == 0 ||
			(i > 0 && e.Position <= hist[i-1].Position) || e.Metadata.CommandID != "h"+string(rune('0'+i)) {
			t.Errorf("event %d: %s rev %d pos %d at %v cmd %q", i, e.Type, e.Revision, e.Position, e.RecordedAt, e.Metadata.CommandID)
		}
	}

	rev := func(r uint64) *uint64 { return &r }
	at := func(tm time.Time) *time.Time { return &tm }
	tests := []struct {
		name       string
		revision   *uint64
		asOf       *time.Time
		wantStatus domain.Status
		wantTotal  int64
		wantErr    error
	}{
		{"current", nil, nil, domain.StatusPaid, 1500, nil},
		{"first revision", rev(0), nil, domain.StatusOpen, 1000, nil},
		{"revision 2", rev(2), nil, domain.StatusConfirmed, 1500, nil},
		{"revision past the end", rev(99), nil, domain.StatusPaid, 1500, nil},
		{"at the second event", nil, at(hist[1].RecordedAt), domain.StatusOpen, 1500, nil},
		{"before the first event", nil, at(hist[0].RecordedAt.Add(-time.Microsecond)), "", 0, eventing.ErrNotFound},
		{"earlier of both bounds", rev(3), at(hist[2].RecordedAt), domain.StatusConfirmed, 1500, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := repo.StateAt(ctx, id, tt.revision, tt.asOf)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("StateAt error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("StateAt: %v", err)
			}
			if o.Status() != tt.wantStatus || o.Total().Amount != tt.wantTotal {
				t.Errorf("StateAt = %s %d, want %s %d", o.Status(), o.Total().Amount, tt.wantStatus, tt.wantTotal)
			}
		})
	}

	t.Run("missing order", func(t *testing.T) {
		if _, err := repo.History(ctx, uuid.NewString()); !errors.Is(err, eventing.ErrNotFound) {
			t.Errorf("History error = %v, want ErrNotFound", err)
		}
		if _, err := repo.StateAt(ctx, uuid.NewString(), nil, nil); !errors.Is(err, eventing.ErrNotFound) {
			t.Errorf("StateAt error = %v, want ErrNotFound", err)
		}
	})
}
