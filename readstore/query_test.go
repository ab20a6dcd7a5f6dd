package readstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/readstore"
)

// pageStore holds 25 orders; orders 10–14 share one creation time, so the
// ID breaks ties.
func pageStore(t *testing.T) (*readstore.Store, []string) {
	s := openStore(t, readstore.Options{})
	l := newLog()
	var evs []readstore.Event
	var ids []string
	for i := range 25 {
		id := fmt.Sprintf("p%02d", i)
		ids = append(ids, id)
		when := at(time.Duration(i) * time.Minute)
		if i >= 10 && i < 15 {
			when = at(10 * time.Minute)
		}
		evs = append(evs, l.next(id, &domain.OrderCreated{OrderID: id, CustomerID: fmt.Sprintf("c%d", i%3),
			Currency: "EUR", Total: int64(100 + i)}, when))
		if i%2 == 0 {
			evs = append(evs, l.next(id, &domain.OrderConfirmed{OrderID: id}, when))
		}
	}
	apply(t, s, evs)
	return s, ids
}

func pageAll(t *testing.T, s *readstore.Store, q readstore.OrderQuery) []string {
	t.Helper()
	var ids []string
	for range 100 {
		page, err := s.Orders(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Orders) > q.First {
			t.Fatalf("page of %d, first %d", len(page.Orders), q.First)
		}
		for _, o := range page.Orders {
			ids = append(ids, o.ID)
		}
		if !page.HasNextPage {
			return ids
		}
		q.After = page.EndCursor
	}
	t.Fatal("pagination did not end")
	return nil
}

func TestOrdersPagination(t *testing.T) {
	s, ids := pageStore(t)
	desc := slices.Clone(ids)
	slices.Reverse(desc)
	from, to := at(5*time.Minute), at(20*time.Minute)
	tests := []struct {
		name string
		q    readstore.OrderQuery
		want []string
	}{
		{"ascending", readstore.OrderQuery{First: 4}, ids},
		{"descending", readstore.OrderQuery{First: 7, OrderBy: readstore.CreatedAtDesc}, desc},
		{"one page", readstore.OrderQuery{First: 25}, ids},
		{"by customer", readstore.OrderQuery{First: 3, CustomerID: "c1"}, filterIDs(ids, func(i int) bool { return i%3 == 1 })},
		{"by status", readstore.OrderQuery{First: 5, Status: []domain.Status{domain.StatusConfirmed}}, filterIDs(ids, func(i int) bool { return i%2 == 0 })},
		{"by created range", readstore.OrderQuery{First: 2, CreatedFrom: &from, CreatedTo: &to}, filterIDs(ids, func(i int) bool { return i >= 5 && i < 20 })},
		{"all filters", readstore.OrderQuery{First: 1, CustomerID: "c0", Status: []domain.Status{domain.StatusOpen, domain.StatusConfirmed},
			CreatedFrom: &from, OrderBy: readstore.CreatedAtDesc}, reversed(filterIDs(ids, func(i int) bool { return i%3 == 0 && i >= 5 }))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pageAll(t, s, tt.q); !slices.Equal(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func filterIDs(ids []string, keep func(int) bool) []string {
	var out []string
	for i, id := range ids {
		if keep(i) {
			out = append(out, id)
		}
	}
	return out
}

func reversed(s []string) []string { s = slices.Clone(s); slices.Reverse(s); return s }

func TestOrdersBadInput(t *testing.T) {
	ctx := context.Background()
	s, _ := pageStore(t)
	page, err := s.Orders(ctx, readstore.OrderQuery{First: 3})
	if err != nil {
		t.Fatal(err)
	}
	for name, q := range map[string]readstore.OrderQuery{
		"not base64":         {After: "!!!"},
		"not JSON":           {After: "bm90IGpzb24"},
		"unknown fields":     {After: "eyJ4IjoxfQ"},
		"other sort order":   {After: page.EndCursor, OrderBy: readstore.CreatedAtDesc},
		"tampered version":   {After: "eyJ2IjoyLCJvIjoiQ1JFQVRFRF9BVF9BU0MiLCJ0IjoxLCJpIjoieCJ9"},
		"empty key in valid": {After: "eyJ2IjoxLCJvIjoiQ1JFQVRFRF9BVF9BU0MiLCJ0IjoxLCJpIjoiIn0"},
	} {
		if _, err := s.Orders(ctx, q); !errors.Is(err, readstore.ErrBadCursor) {
			t.Errorf("%s: err = %v, want ErrBadCursor", name, err)
		}
	}
	for name, q := range map[string]readstore.OrderQuery{
		"negative first": {First: -1},
		"huge first":     {First: readstore.MaxPageSize + 1},
		"bad order by":   {OrderBy: "PRICE"},
	} {
		if _, err := s.Orders(ctx, q); !errors.Is(err, readstore.ErrBadQuery) {
			t.Errorf("%s: err = %v, want ErrBadQuery", name, err)
		}
	}
	empty, err := s.Orders(ctx, readstore.OrderQuery{CustomerID: "nobody"})
	if err != nil || len(empty.Orders) != 0 || empty.HasNextPage || empty.EndCursor != "" {
		t.Errorf("empty page = %+v, %v", empty, err)
	}
}

// TestQueriesHonourDoneContext checks that the point and page queries,
// which run without watching their context once started, still refuse to
// start once it is done.
func TestQueriesHonourDoneContext(t *testing.T) {
	s := openStore(t, readstore.Options{})
	applyBatches(t, s, history(4, 5), 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	checks := map[string]func() error{
		"Order":          func() error { _, err := s.Order(ctx, "x"); return err },
		"Orders":         func() error { _, err := s.Orders(ctx, readstore.OrderQuery{}); return err },
		"OrdersByIDs":    func() error { _, err := s.OrdersByIDs(ctx, []string{"x"}); return err },
		"Customer":       func() error { _, err := s.Customer(ctx, "x"); return err },
		"CustomersByIDs": func() error { _, err := s.CustomersByIDs(ctx, []string{"x"}); return err },
	}
	for name, call := range checks {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want context.Canceled", name, err)
		}
	}
}

// TestOrderAfter: a command's payload gets its order as the command's last
// event left it, the same as a read would have shown then; once that
// event is no longer among the recent ones, as the read model holds it now.
func TestOrderAfter(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, readstore.Options{})
	l := newLog()
	created := l.next("o1", &domain.OrderCreated{OrderID: "o1", CustomerID: "c1", Currency: "EUR", Total: 500,
		Items: []domain.Line{{SKU: "A", Quantity: 2, UnitPrice: 250}}}, at(0))
	apply(t, s, []readstore.Event{created})
	asRead, err := s.Order(ctx, "o1")
	if err != nil {
		t.Fatal(err)
	}
	confirmed := l.next("o1", &domain.OrderConfirmed{OrderID: "o1"}, at(time.Minute))
	apply(t, s, []readstore.Event{confirmed})

	got, err := s.OrderAfter(ctx, "o1", created.Position)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := jsonOf(t, got), jsonOf(t, asRead); g != w {
		t.Errorf("OrderAfter(created) = %s, want the order as read after its creation: %s", g, w)
	}
	now, err := s.Order(ctx, "o1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.OrderAfter(ctx, "o1", confirmed.Position); err != nil || jsonOf(t, got) != jsonOf(t, now) {
		t.Errorf("OrderAfter(confirmed) = %s, %v; want %s", jsonOf(t, got), err, jsonOf(t, now))
	}
	if _, err := s.OrderAfter(ctx, "o2", created.Position); !errors.Is(err, readstore.ErrNotFound) {
		t.Errorf("OrderAfter of another order at o1's position: err = %v, want ErrNotFound", err)
	}

	// Push the creation out of the recent changes: the read model's state now.
	var more []readstore.Event
	for i := range 4096 {
		id := fmt.Sprintf("f%04d", i)
		more = append(more, l.next(id, &domain.OrderCreated{OrderID: id, CustomerID: "c2", Currency: "EUR", Total: 1}, at(2*time.Minute)))
	}
	apply(t, s, more)
	if got, err := s.OrderAfter(ctx, "o1", created.Position); err != nil || got.Status != domain.StatusConfirmed {
		t.Errorf("OrderAfter(created) once forgotten = %+v, %v; want the confirmed order", got, err)
	}
}
