package readstore_test

import (
	"context"
	"testing"

	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/readstore"
)

// TestProjector feeds a store through Projector, as RunSubscription does,
// and checks that it ends up as a store fed by Apply directly.
func TestProjector(t *testing.T) {
	ctx := context.Background()
	events := history(7, 40)
	direct := openStore(t, readstore.Options{})
	applyBatches(t, direct, events, 25)

	s := openStore(t, readstore.Options{})
	var notified int
	p := &readstore.Projector{Live: readstore.NewLive(s), OnApplied: func(evs []eventing.Envelope) { notified += len(evs) }}
	for i := 0; i < len(events); i += 25 {
		batch := events[i:min(i+25, len(events))]
		envs := make([]eventing.Envelope, len(batch))
		for j, e := range batch {
			envs[j] = eventing.Envelope{Position: e.Position, Stream: e.Stream, Revision: e.Revision, EventID: e.EventID,
				Type: e.Type, RecordedAt: e.RecordedAt, RawMeta: e.Metadata, Data: e.Data, Event: e.Event, DecodeErr: e.DecodeErr}
		}
		if err := p.HandleBatch(ctx, envs, batch[len(batch)-1].Position); err != nil {
			t.Fatal(err)
		}
	}
	if p.Applied() != int64(len(events)) || notified != len(events) {
		t.Errorf("Applied() = %d, OnApplied saw %d events; want %d", p.Applied(), notified, len(events))
	}
	if cp, err := p.Checkpoint(ctx); err != nil || cp != events[len(events)-1].Position {
		t.Errorf("Checkpoint() = %d, %v; want %d", cp, err, events[len(events)-1].Position)
	}
	if got, want := hash(t, s), hash(t, direct); got != want {
		t.Errorf("hash through Projector %s, through Apply %s", got, want)
	}
}
