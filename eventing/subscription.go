package eventing

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// Checkpointer reports how far a consumer of $all has got.
type Checkpointer interface {
	// Checkpoint returns the commit position stored with the last handled
	// batch, or 0 when nothing has been handled yet.
	Checkpoint(ctx context.Context) (uint64, error)
}

// BatchHandler is the consumer that RunSubscription feeds, typically a
// projection that writes its rows and its checkpoint in one transaction.
type BatchHandler interface {
	Checkpointer
	// HandleBatch handles events in position order, then stores checkpoint:
	// the commit position of the last event the store scanned, which may be
	// past the last event in the batch (events may even be empty). Events
	// that could not be decoded have DecodeErr set; the handler decides to
	// halt (return an error) or to park them. An error makes RunSubscription
	// resubscribe from the stored checkpoint after a backoff.
	HandleBatch(ctx context.Context, events []Envelope, checkpoint uint64) error
}

// SubscriptionOptions tunes RunSubscription. The zero value gives the
// defaults.
type SubscriptionOptions struct {
	BatchSize int           // most events per batch; 0 means 500
	BatchWait time.Duration // longest wait to fill a batch while catching up; 0 means 20 ms
	// OnStatus, if set, is called on every change of status, from the
	// subscription's goroutine; it must not block.
	OnStatus func(SubscriptionStatus)
	// Redial, if set, replaces the client once it has closed itself (the
	// esdb client gives up for good when its discovery attempts all fail).
	// Without it RunSubscription then returns an ErrUnavailable error.
	Redial func(ctx context.Context) (*esdb.Client, error)
}

// SubscriptionStatus describes a running subscription, for health checks.
type SubscriptionStatus struct {
	Connected bool      // subscribed to the store
	CaughtUp  bool      // has handled everything the store had when it subscribed
	LastError string    // why it last lost its subscription, if it did
	Since     time.Time // when this status began
}

// Resubscription backoff bounds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// RunSubscription feeds h with the events of every order stream, in $all
// order, from h's checkpoint on: a catch-up subscription to $all filtered
// on the server by OrderStreamPrefix. It batches events (BatchSize,
// BatchWait; without waiting once caught up) and hands over the store's
// filter checkpoints even when no event matched, so a restart rescans
// little. When the subscription drops or h fails, it resubscribes from h's
// checkpoint with exponential backoff and jitter (100 ms to 5 s). Delivery
// is at least once across resubscriptions and exactly once within one.
// It returns ctx's error when ctx is done, or an ErrUnavailable error when
// the client has closed itself and opts.Redial is nil.
func RunSubscription(ctx context.Context, client *esdb.Client, codec *Codec, h BatchHandler, opts SubscriptionOptions) error {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.BatchWait <= 0 {
		opts.BatchWait = 20 * time.Millisecond
	}
	s := &subscriber{client: client, codec: codec, h: h, opts: opts}
	defer s.closeRedialed()
	var backoff time.Duration
	for {
		s.progressed = false
		err := s.run(ctx)
		if ctx.Err() != nil {
			s.setStatus(false, false, s.status.LastError)
			return ctx.Err()
		}
		s.setStatus(false, false, err.Error())
		if isStoreCode(err, esdb.ErrorCodeConnectionClosed) || s.stuck {
			s.stuck = false
			if s.opts.Redial == nil {
				return fmt.Errorf("subscription to $all: the client has closed itself: %w", err) // err wraps ErrUnavailable
			}
			if c, rerr := s.opts.Redial(ctx); rerr != nil {
				s.setStatus(false, false, fmt.Sprintf("redial: %v", rerr))
			} else {
				s.closeRedialed()
				s.client, s.redialed = c, true
			}
		}
		if s.progressed {
			backoff = 0
		}
		backoff = min(max(2*backoff, minBackoff), maxBackoff)
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			s.setStatus(false, false, s.status.LastError)
			return ctx.Err()
		case <-t.C:
		}
	}
}

type subscriber struct {
	client     *esdb.Client
	redialed   bool // client was made by Redial and is ours to close
	codec      *Codec
	h          BatchHandler
	opts       SubscriptionOptions
	status     SubscriptionStatus
	progressed bool // the current subscription handed over a batch or caught up
	stuck      bool // the last attempt was never confirmed: replace the client
}

func (s *subscriber) closeRedialed() {
	if s.redialed {
		s.client.Close()
		s.redialed = false
	}
}

func (s *subscriber) setStatus(connected, caughtUp bool, lastError string) {
	if connected == s.status.Connected && caughtUp == s.status.CaughtUp && lastError == s.status.LastError && !s.status.Since.IsZero() {
		return
	}
	s.status = SubscriptionStatus{Connected: connected, CaughtUp: caughtUp, LastError: lastError, Since: time.Now()}
	if s.opts.OnStatus != nil {
		s.opts.OnStatus(s.status)
	}
}

// confirmTimeout bounds the wait for a subscription's confirmation. After
// the store has been killed, the official client can leave a new
// subscription waiting for ever; past this bound the client is replaced.
const confirmTimeout = 10 * time.Second

// errNoConfirmation reports a subscription the store never confirmed.
var errNoConfirmation = fmt.Errorf("%w: subscription not confirmed within %s", ErrUnavailable, confirmTimeout)

// subscribe starts the $all subscription, giving up when it is not
// confirmed within confirmTimeout (cancel then ends the attempt).
func (s *subscriber) subscribe(ctx context.Context, cancel context.CancelFunc, from esdb.AllPosition) (*esdb.Subscription, error) {
	type result struct {
		sub *esdb.Subscription
		err error
	}
	done := make(chan result, 1)
	client := s.client
	go func() {
		sub, err := client.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{
			From:   from,
			Filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{OrderStreamPrefix}},
		})
		done <- result{sub, err}
	}()
	timer := time.NewTimer(confirmTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, storeError("subscribe to", "$all", r.err)
		}
		return r.sub, nil
	case <-timer.C:
		cancel()
		go func() { // the attempt may still succeed; close what it made
			if r := <-done; r.sub != nil {
				r.sub.Close()
			}
		}()
		s.stuck = true
		return nil, errNoConfirmation
	}
}

// run subscribes once from the handler's checkpoint and feeds it until the
// subscription drops, the handler fails or ctx is done.
func (s *subscriber) run(ctx context.Context) error {
	last, err := s.h.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	var from esdb.AllPosition = esdb.Start{}
	if last > 0 {
		from = esdb.Position{Commit: last, Prepare: last}
	}
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub, err := s.subscribe(subCtx, cancel, from)
	if err != nil {
		return err
	}
	s.setStatus(true, false, s.status.LastError)

	// The receiver decodes, so decoding overlaps with handling batches.
	events := make(chan received, s.opts.BatchSize)
	receiverDone := make(chan struct{})
	go func() {
		defer close(receiverDone)
		for {
			ev := received{ev: sub.Recv()}
			if ev.ev.EventAppeared != nil {
				// No de-duplication by position: on EventStoreDB the events of
				// one append can share a commit position. DecodeErr travels in
				// env.
				ev.env, _ = s.codec.DecodeResolved(ev.ev.EventAppeared)
			}
			select {
			case events <- ev:
			case <-subCtx.Done():
				return
			}
			if ev.ev.SubscriptionDropped != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		sub.Close()
		<-receiverDone
	}()

	b := batcher{s: s, last: last, scanned: last}
	caughtUp := false
	var timer *time.Timer
	var timeout <-chan time.Time
	// flush hands over the batch; the batch timer starts with its first
	// event and stops with every flush.
	flush := func() error {
		if timer != nil {
			timer.Stop()
		}
		timeout = nil
		return b.flush(ctx)
	}
	// arm starts the batch timer, which flushes whatever is pending.
	arm := func() {
		if timer == nil {
			timer = time.NewTimer(s.opts.BatchWait)
		} else {
			timer.Reset(s.opts.BatchWait)
		}
		timeout = timer.C
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var r received
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			if err := flush(); err != nil {
				return err
			}
			continue
		case r = <-events:
		}
		ev := r.ev
		switch {
		case ev.SubscriptionDropped != nil:
			if err := flush(); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return storeError("subscription to", "$all", ev.SubscriptionDropped.Error)
		case ev.EventAppeared != nil:
			b.events = append(b.events, r.env)
			b.scanned = max(b.scanned, r.env.Position)
			switch {
			case len(b.events) >= s.opts.BatchSize, caughtUp && len(events) == 0:
				if err := flush(); err != nil {
					return err
				}
			case timeout == nil:
				arm()
			}
		case ev.CheckPointReached != nil:
			// A checkpoint arrives every few dozen scanned events; it joins
			// the pending batch rather than cutting it short, so catching up
			// still applies full batches.
			b.scanned = max(b.scanned, ev.CheckPointReached.Commit)
			switch {
			case len(b.events) == 0 && caughtUp:
				if err := flush(); err != nil {
					return err
				}
			case timeout == nil:
				arm()
			}
		case ev.CaughtUp != nil:
			caughtUp = true
			if err := flush(); err != nil {
				return err
			}
			s.progressed = true
			s.setStatus(true, true, s.status.LastError)
		case ev.FellBehind != nil:
			caughtUp = false
			s.setStatus(true, false, s.status.LastError)
		}
	}
}

// received is what the subscription delivered, with the event decoded.
type received struct {
	ev  *esdb.SubscriptionEvent
	env Envelope // decoded ev.EventAppeared
}

// batcher collects events until they are handed over.
type batcher struct {
	s       *subscriber
	events  []Envelope
	last    uint64 // checkpoint handed over last
	scanned uint64 // position of the last event or checkpoint the store sent
}

// flush hands over the collected events and the scanned position, unless
// there is nothing new.
func (b *batcher) flush(ctx context.Context) error {
	if len(b.events) == 0 && b.scanned <= b.last {
		return nil
	}
	if err := b.s.h.HandleBatch(ctx, b.events, b.scanned); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("handle batch up to position %d: %w", b.scanned, err)
	}
	// The handler may keep the slice; the next batch likely has as many.
	b.events, b.last = make([]Envelope, 0, len(b.events)), b.scanned
	b.s.progressed = true
	return nil
}
