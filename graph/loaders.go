package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/vikstrous/dataloadgen"

	"github.com/ordertrail/ordertrail/readstore"
)

// BatchReads are the batched reads behind the per-request dataloaders.
type BatchReads interface {
	CustomersByIDs(ctx context.Context, ids []string) (map[string]readstore.Customer, error)
}

// loaders are built per request, so nothing is cached across requests.
type loaders struct {
	customers *dataloadgen.Loader[string, readstore.Customer]
}

type loadersKey struct{}

// WithLoaders installs fresh dataloaders in every request's context, so
// lists of orders fetch their customers in one query instead of one each.
func WithLoaders(reads BatchReads, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := &loaders{customers: dataloadgen.NewMappedLoader(reads.CustomersByIDs, dataloadgen.WithWait(time.Millisecond))}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), loadersKey{}, l)))
	})
}

func loadersFor(ctx context.Context) *loaders {
	l, _ := ctx.Value(loadersKey{}).(*loaders)
	return l
}

// customer loads one customer through the request's dataloader, or
// directly when there is none (websocket operations).
func (r *Resolver) customer(ctx context.Context, id string) (readstore.Customer, error) {
	l := loadersFor(ctx)
	if l == nil {
		return r.Reads.Customer(ctx, id)
	}
	c, err := l.customers.Load(ctx, id)
	if errors.Is(err, dataloadgen.ErrNotFound) {
		return readstore.Customer{}, fmt.Errorf("customer %s: %w", id, readstore.ErrNotFound)
	}
	return c, err
}
