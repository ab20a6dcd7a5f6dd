package graph

import (
	"context"
	"errors"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ordertrail/ordertrail/graph/model"
	"github.com/ordertrail/ordertrail/readstore"
)

func (r *Resolver) orderConnection(ctx context.Context, q readstore.OrderQuery, first *int, after *string) (*model.OrderConnection, error) {
	n, err := r.pageSize(first)
	if err != nil {
		return nil, err
	}
	q.First = max(n, 1) // readstore reads 0 as its default page size
	q.WithoutItems = !selects(ctx, "edges", "node", "items")
	if after != nil {
		q.After = *after
	}
	page, err := r.Reads.Orders(ctx, q)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return &model.OrderConnection{Edges: []*model.OrderEdge{}, PageInfo: model.PageInfo{HasNextPage: len(page.Orders) > 0}}, nil
	}
	conn := &model.OrderConnection{Edges: make([]*model.OrderEdge, len(page.Orders))}
	for i, o := range page.Orders {
		conn.Edges[i] = &model.OrderEdge{Cursor: readstore.Cursor(o, q.OrderBy), Node: *toOrder(o)}
	}
	conn.PageInfo.HasNextPage = page.HasNextPage
	if page.EndCursor != "" {
		end := page.EndCursor
		conn.PageInfo.EndCursor = &end
	}
	return conn, nil
}

func toCustomer(c readstore.Customer) *model.Customer {
	out := &model.Customer{
		ID:            c.ID,
		OrderCount:    int(c.OrderCount),
		OpenOrders:    int(c.OpenOrders),
		LifetimeValue: make([]*model.Money, len(c.LifetimeValue)),
	}
	if !c.FirstOrderAt.IsZero() {
		first, last := c.FirstOrderAt, c.LastOrderAt
		out.FirstOrderAt, out.LastOrderAt = &first, &last
	}
	for i, v := range c.LifetimeValue {
		m := money(v.Amount, v.Currency)
		out.LifetimeValue[i] = &m
	}
	return out
}

func (r *Resolver) projectionStatus(ctx context.Context) (*model.ProjectionStatus, error) {
	st, err := r.Reads.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := &model.ProjectionStatus{
		Projection:  "readmodel",
		State:       model.ProjectionState(st.State),
		Checkpoint:  model.Position(st.Checkpoint),
		DeadLetters: st.DeadLetters,
		Error:       optString(st.Error),
	}
	if st.HaltedAt != 0 {
		p := model.Position(st.HaltedAt)
		out.HaltedAt = &p
	}
	if r.Feed != nil {
		fs := r.Feed.Status()
		out.Connected, out.CaughtUp = fs.Connected, fs.CaughtUp
		if !fs.Since.IsZero() {
			since := fs.Since
			out.Since = &since
		}
		if head, err := r.Feed.Head(ctx); err == nil {
			h, lag := model.Position(head), model.Position(0)
			if head > st.Checkpoint && !(fs.Connected && fs.CaughtUp) {
				lag = model.Position(head - st.Checkpoint)
			}
			out.Head, out.Lag = &h, &lag
		}
		if !fs.Connected && fs.LastError != "" && out.Error == nil {
			out.Error = optString("event store subscription: " + fs.LastError)
		}
	}
	return out, nil
}

func toOrderChange(c readstore.Change) *model.OrderChange {
	return &model.OrderChange{
		Order:      *toOrder(c.Order),
		EventType:  c.EventType,
		Revision:   clampInt(c.Revision),
		Position:   model.Position(c.Position),
		RecordedAt: c.RecordedAt.UTC(),
	}
}

// selects reports whether the current field's selection reaches the field
// at path, through fragments too.
func selects(ctx context.Context, path ...string) bool {
	return selectsIn(graphql.GetOperationContext(ctx), graphql.CollectFieldsCtx(ctx, nil), path)
}

func selectsIn(oc *graphql.OperationContext, fields []graphql.CollectedField, path []string) bool {
	for _, f := range fields {
		if f.Name != path[0] {
			continue
		}
		if len(path) == 1 || selectsIn(oc, graphql.CollectFields(oc, f.Selections, nil), path[1:]) {
			return true
		}
	}
	return false
}

// forward converts values from a broker subscription and hands them to
// gqlgen. It owns one goroutine that ends with the request or the source; a
// send never blocks past the request's end. When the source ends with an
// error (a subscriber too slow to keep up is dropped by the broker), the
// client gets it as the subscription's final error with a code, so it knows
// to resubscribe from the last position it received.
func forward[T, U any](ctx context.Context, m *Metrics, sub *readstore.Subscription[T], conv func(T) U) <-chan U {
	out := make(chan U, 1)
	m.subscriberAdded()
	go func() {
		defer m.subscriberGone()
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case v, ok := <-sub.C:
				if !ok {
					reportEnd(ctx, sub.Err())
					return
				}
				select {
				case <-ctx.Done():
					return
				case out <- conv(v):
				}
			}
		}
	}()
	return out
}

// feedChanges hands sub's changes to gqlgen through the operation's feed
// (see sharedResults), so that subscribers running the same operation
// share one execution per change. It needs no goroutine of its own: the
// subscription's response loop pulls each change. Outside a feed it
// forwards them.
func feedChanges(ctx context.Context, m *Metrics, sub *readstore.Subscription[readstore.Change]) <-chan *model.OrderChange {
	out := make(chan *model.OrderChange, 1)
	ended := false
	next := func(ctx context.Context) (uint64, func(), bool) {
		if ended {
			return 0, nil, false
		}
		select {
		case c, ok := <-sub.C:
			if !ok {
				ended = true
				reportEnd(ctx, sub.Err())
				close(out)
				return 0, nil, false
			}
			return c.Position, func() {
				select {
				case out <- toOrderChange(c):
				case <-ctx.Done():
				}
			}, true
		case <-ctx.Done():
			return 0, nil, false
		}
	}
	if !attachFeed(ctx, next) {
		return forward(ctx, m, sub, toOrderChange)
	}
	m.subscriberAdded()
	context.AfterFunc(ctx, m.subscriberGone)
	return out
}

// reportEnd gives the client why the server ended its subscription.
func reportEnd(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil {
		transport.AddSubscriptionError(ctx, subscriptionError(err))
	}
}

// subscriptionError explains why the server ended a subscription.
func subscriptionError(err error) *gqlerror.Error {
	if errors.Is(err, readstore.ErrSlowSubscriber) {
		e := gqlerror.Errorf("subscription dropped: the client did not keep up with the changes; resubscribe with fromPosition set to the last position received")
		e.Extensions = map[string]any{"code": "SLOW_SUBSCRIBER"}
		return e
	}
	e := gqlerror.Errorf("subscription ended: the read model is unavailable; resubscribe with fromPosition set to the last position received")
	e.Extensions = map[string]any{"code": CodeUnavailable}
	return e
}
