package graph

import (
	"context"
	"errors"
	"strconv"

	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/graph/model"
)

type actorKey struct{}

// WithActor returns a context naming who issues commands, recorded in the
// events' metadata.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

func commandMeta(ctx context.Context, commandID *string) (eventing.CommandMeta, error) {
	meta := eventing.CommandMeta{}
	if commandID != nil {
		if *commandID == "" || len(*commandID) > 200 {
			return meta, badInput("commandId must be 1 to 200 characters")
		}
		meta.CommandID = *commandID
	}
	meta.CorrelationID = RequestID(ctx)
	if meta.CorrelationID == "" {
		meta.CorrelationID = uuid.NewString()
	}
	meta.CausationID = meta.CorrelationID
	meta.Actor, _ = ctx.Value(actorKey{}).(string)
	if meta.Actor == "" {
		meta.Actor = "anonymous"
	}
	return meta, nil
}

func requireOrderID(id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return &notFoundInput{id: id}
	}
	return nil
}

// notFoundInput is an order ID that cannot name any order.
type notFoundInput struct{ id string }

func (e *notFoundInput) Error() string { return "order " + e.id + " not found" }
func (e *notFoundInput) Is(target error) bool {
	return target == eventing.ErrNotFound
}

// update runs one command on an existing order and shapes its payload.
func (r *mutationResolver) update(ctx context.Context, orderID string, commandID *string, fn func(*domain.Order) error) (*model.OrderPayload, error) {
	if err := requireOrderID(orderID); err != nil {
		return nil, err
	}
	meta, err := commandMeta(ctx, commandID)
	if err != nil {
		return nil, err
	}
	guarded, broken := recordRule(fn)
	res, err := r.Commands.Update(ctx, orderID, meta, guarded)
	if errors.Is(err, eventing.ErrNotFound) {
		return nil, &notFoundInput{id: orderID}
	}
	if err != nil {
		return nil, clientError(err, *broken)
	}
	return r.payload(ctx, orderID, res)
}

// recordRule wraps a command so the rule it broke, if any, can be reported
// to the client as the command said it, without the repository's context
// (which names internals such as a generated order ID).
func recordRule(fn func(*domain.Order) error) (func(*domain.Order) error, *error) {
	var last error
	return func(o *domain.Order) error {
		last = fn(o)
		return last
	}, &last
}

// clientError returns the broken rule when err is that rule, wrapped.
func clientError(err, rule error) error {
	if rule != nil && errors.Is(err, rule) {
		return rule
	}
	return err
}

// payload returns the command's events and position; the order itself is
// resolved by payloadOrder, only when asked for.
func (r *Resolver) payload(_ context.Context, orderID string, res eventing.Result) (*model.OrderPayload, error) {
	p := &model.OrderPayload{OrderID: orderID, Events: toHistoryEvents(res.Events), Position: model.Position(res.Position), Complete: res.Complete}
	if len(res.Events) > 0 {
		p.FirstRevision = res.Events[0].Revision
	}
	return p, nil
}

// payloadEvents returns the command's events as stored, reading them back
// when the command's result did not.
func (r *Resolver) payloadEvents(ctx context.Context, p *model.OrderPayload) ([]*model.HistoryEvent, error) {
	if p.Complete || len(p.Events) == 0 {
		return p.Events, nil
	}
	stored, err := r.Events.Events(ctx, p.OrderID, p.FirstRevision, uint64(len(p.Events)))
	if err != nil {
		return nil, err
	}
	return toHistoryEvents(stored), nil
}

// payloadOrder returns the order as the read model shows it once it has
// caught up to the command's position, as that position left it when the
// read model still has it in memory: a client reads its own write.
func (r *Resolver) payloadOrder(ctx context.Context, p *model.OrderPayload) (*model.Order, error) {
	o, err := r.Reads.OrderAfter(ctx, p.OrderID, uint64(p.Position))
	if err != nil {
		return nil, err
	}
	return toOrder(o), nil
}

// waitFor implements minPosition: read-your-writes with a bounded wait.
func (r *Resolver) waitFor(ctx context.Context, minPosition *model.Position) error {
	if minPosition == nil || *minPosition == 0 {
		return nil
	}
	return r.Reads.WaitFor(ctx, uint64(*minPosition))
}

func (r *Resolver) pageSize(first *int) (int, error) {
	limit := r.MaxPageSize
	if limit <= 0 {
		limit = 100
	}
	n := 20
	if first != nil {
		n = *first
	}
	if n < 0 || n > limit {
		return 0, badInput("first must be between 0 and " + strconv.Itoa(limit))
	}
	return n, nil
}
