package readstore

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/ordertrail/ordertrail/eventing"
)

// Projector is the read-model projection as eventing.RunSubscription
// feeds it: each batch of decoded events is applied, with its checkpoint,
// to the store Live serves at that moment.
type Projector struct {
	Live *Live
	// Gate, if set, is held while a batch is applied. A rebuild locks it
	// while it swaps stores, so no batch lands on the old store after the
	// new one has caught up; tests lock it to hold the projection back.
	Gate sync.Locker
	// OnApplied, if set, is called with every batch once it is committed.
	OnApplied func(events []eventing.Envelope)

	applied atomic.Int64
}

// Checkpoint is the current store's checkpoint.
func (p *Projector) Checkpoint(ctx context.Context) (uint64, error) {
	return p.Live.Current().Checkpoint(ctx)
}

// HandleBatch applies events to the current store and stores checkpoint.
func (p *Projector) HandleBatch(ctx context.Context, events []eventing.Envelope, checkpoint uint64) error {
	batch := FromEnvelopes(events)
	if p.Gate != nil {
		p.Gate.Lock()
		defer p.Gate.Unlock()
	}
	if _, err := p.Live.Current().Apply(ctx, batch, checkpoint); err != nil {
		return err
	}
	p.applied.Add(int64(len(events)))
	if p.OnApplied != nil {
		p.OnApplied(events)
	}
	return nil
}

// Applied returns the number of events applied so far.
func (p *Projector) Applied() int64 { return p.applied.Load() }

// FromEnvelopes converts decoded store events to Apply's input.
func FromEnvelopes(events []eventing.Envelope) []Event {
	batch := make([]Event, len(events))
	for i, e := range events {
		batch[i] = Event{
			Position: e.Position, Stream: e.Stream, Revision: e.Revision, EventID: e.EventID,
			Type: e.Type, RecordedAt: e.RecordedAt, Metadata: e.RawMeta, Data: e.Data,
			Event: e.Event, DecodeErr: e.DecodeErr,
		}
	}
	return batch
}
