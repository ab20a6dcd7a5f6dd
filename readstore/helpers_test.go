package readstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/readstore"
)

var t0 = time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openStore opens a store in a fresh file that is closed with the test.
func openStore(t testing.TB, opts readstore.Options) *readstore.Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s, err := readstore.Open(context.Background(), filepath.Join(t.TempDir(), "read.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func apply(t testing.TB, s *readstore.Store, events []readstore.Event) []readstore.Change {
	t.Helper()
	var cp uint64
	if len(events) > 0 {
		cp = events[len(events)-1].Position
	}
	changes, err := s.Apply(context.Background(), events, cp)
	if err != nil {
		t.Fatal(err)
	}
	return changes
}

func hash(t testing.TB, s *readstore.Store) string {
	t.Helper()
	h, err := s.Hash(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// log builds events with strictly increasing, non-contiguous positions and
// per-stream revisions, as $all would deliver them.
type eventLog struct {
	pos  uint64
	revs map[string]uint64
	at   time.Time
}

func newLog() *eventLog { return &eventLog{pos: 100, revs: map[string]uint64{}, at: t0} }

// next records e for the order at time at (the log's clock when zero).
func (l *eventLog) next(orderID string, e domain.Event, at time.Time) readstore.Event {
	if !at.IsZero() {
		l.at = at
	}
	l.pos += 7 // positions are not contiguous
	stream := "order-" + orderID
	rev := l.revs[stream]
	l.revs[stream] = rev + 1
	data, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return readstore.Event{Position: l.pos, Stream: stream, Revision: rev, EventID: fmt.Sprintf("ev-%d", l.pos),
		Type: e.EventType(), RecordedAt: l.at, Metadata: json.RawMessage(`{"schemaVersion":1}`), Data: data, Event: e}
}

// history drives real Order aggregates through random commands and returns
// their events interleaved as $all would hold them: valid by construction.
func history(seed uint64, orders int) []readstore.Event {
	rng := rand.New(rand.NewPCG(seed, 42))
	l := newLog()
	type live struct {
		o    *domain.Order
		seen int
	}
	var open []*live
	var out []readstore.Event
	currencies := []string{"EUR", "USD", "JPY"}
	created := 0
	money := func(o *domain.Order, amount int64) domain.Money {
		return domain.Money{Amount: amount, Currency: o.Currency()}
	}
	for created < orders || len(open) > 0 {
		l.at = l.at.Add(time.Duration(rng.IntN(20)) * time.Minute)
		var acted int
		if created < orders && (len(open) < 5 || rng.IntN(4) == 0) {
			created++
			id := fmt.Sprintf("o%05d", created)
			o := domain.New(id)
			cur := currencies[rng.IntN(len(currencies))]
			items := []domain.NewItem{{SKU: "sku-1", Quantity: int64(1 + rng.IntN(3)), UnitPrice: domain.Money{Amount: int64(100 + rng.IntN(5000)), Currency: cur}}}
			if err := o.Create(fmt.Sprintf("c%03d", rng.IntN(orders/3+1)), cur, items); err != nil {
				panic(err)
			}
			open = append(open, &live{o: o})
			acted = len(open) - 1
		} else {
			i := rng.IntN(len(open))
			acted = i
			o := open[i].o
			switch rng.IntN(12) {
			case 0:
				_ = o.AddItem(domain.NewItem{SKU: fmt.Sprintf("sku-%d", 2+rng.IntN(4)), Quantity: 1, UnitPrice: money(o, int64(50+rng.IntN(900)))})
			case 1:
				_ = o.RemoveItem(fmt.Sprintf("sku-%d", 1+rng.IntN(5)))
			case 2:
				_ = o.ChangeQuantity(fmt.Sprintf("sku-%d", 1+rng.IntN(5)), int64(1+rng.IntN(4)))
			case 3, 4:
				_ = o.Confirm()
			case 5:
				_ = o.MarkPaid(o.Total(), "pay-"+o.ID())
			case 6:
				_ = o.Ship("DHL", "track-"+o.ID())
			case 7:
				_ = o.Deliver()
			case 8:
				if rng.IntN(3) == 0 {
					_ = o.Cancel("customer asked")
				}
			case 9:
				_ = o.CorrectAmount(0, money(o, o.Total().Amount+int64(rng.IntN(200))-100), "price fix")
			default:
				// time passes
			}
		}
		lv := open[acted]
		ch := lv.o.Changes()
		for _, r := range ch[lv.seen:] {
			out = append(out, l.next(lv.o.ID(), r.Event, time.Time{}))
		}
		lv.seen = len(ch)
		if st := lv.o.Status(); st == domain.StatusDelivered || st == domain.StatusCancelled {
			open = append(open[:acted], open[acted+1:]...)
		}
	}
	return out
}

// applyBatches applies events in batches of n.
func applyBatches(t testing.TB, s *readstore.Store, events []readstore.Event, n int) {
	t.Helper()
	for i := 0; i < len(events); i += n {
		apply(t, s, events[i:min(i+n, len(events))])
	}
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func quietLoggerOptions() readstore.Options { return readstore.Options{Logger: quietLogger()} }
