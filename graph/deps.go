package graph

import (
	"context"
	"log/slog"
	"time"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/readstore"
)

// Commands runs order commands on the write side.
type Commands interface {
	Create(ctx context.Context, orderID string, meta eventing.CommandMeta, fn func(*domain.Order) error) (eventing.Result, error)
	Update(ctx context.Context, orderID string, meta eventing.CommandMeta, fn func(*domain.Order) error) (eventing.Result, error)
}

// History reads an order's stored events and rebuilds past states.
type History interface {
	History(ctx context.Context, orderID string) ([]eventing.Envelope, error)
	StateAt(ctx context.Context, orderID string, revision *uint64, asOf *time.Time) (*domain.Order, error)
	Events(ctx context.Context, orderID string, from, count uint64) ([]eventing.Envelope, error)
}

// Reads answers queries from the current read model.
type Reads interface {
	WaitFor(ctx context.Context, position uint64) error
	Order(ctx context.Context, id string) (readstore.Order, error)
	// OrderAfter is Order once position is projected: what a command's
	// payload shows.
	OrderAfter(ctx context.Context, id string, position uint64) (readstore.Order, error)
	Orders(ctx context.Context, q readstore.OrderQuery) (readstore.OrderPage, error)
	Customer(ctx context.Context, id string) (readstore.Customer, error)
	Trends(ctx context.Context, q readstore.TrendQuery) ([]readstore.Trend, error)
	Status(ctx context.Context) (readstore.ProjectionStatus, error)
	DeadLetters(ctx context.Context, limit int) ([]readstore.DeadLetter, error)
}

// Live streams read-model changes to subscribers.
type Live interface {
	Subscribe(ctx context.Context, fromPosition uint64, filter readstore.ChangeFilter) (*readstore.Subscription[readstore.Change], error)
	SubscribeTrends(ctx context.Context, bucket readstore.Bucket, currency string) (*readstore.Subscription[readstore.Trend], error)
}

// Feed reports the state of the subscription that feeds the read model
// and the head of the store it reads.
type Feed interface {
	Status() eventing.SubscriptionStatus
	Head(ctx context.Context) (uint64, error)
}

// Rebuilder rebuilds the read models from the full history.
type Rebuilder interface {
	Rebuild(ctx context.Context) (RebuildReport, error)
}

// RebuildReport describes a finished rebuild.
type RebuildReport struct {
	Checkpoint, PreviousCheckpoint uint64
	Hash, PreviousHash             string
	Events                         int
	Duration                       time.Duration
}

// Deps are the resolvers' dependencies, filled by the wiring in package main.
type Deps struct {
	Commands Commands
	Events   History
	Reads    Reads
	Live     Live
	Feed     Feed
	Rebuild  Rebuilder
	Logger   *slog.Logger
	// MaxPageSize bounds `first` on every connection; 0 means 100.
	MaxPageSize int
}
