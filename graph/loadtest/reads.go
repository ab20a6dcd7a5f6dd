package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

const (
	typenameQuery = `{ __typename }`
	orderQuery    = `query($id: ID!) {
  order(id: $id) { id customerId status total { amount currency } items { sku quantity unitPrice } createdAt version lastPosition }
}`
	ordersQuery = `{
  orders(first: 20) {
    edges { cursor node { id customerId status total { amount currency } createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}`
)

// readResult is goal 2: p99 latencies in milliseconds of the two read
// queries and of a query that touches no storage, each the median of the
// rounds.
type readResult struct {
	order, orders, typename float64
}

func measureReads(ctx context.Context, cfg config, gql *client, ids []string) (readResult, error) {
	var orderP, ordersP, typeP []float64
	for r := 1; r <= cfg.rounds; r++ {
		tp, tn, terrs := latencies(ctx, cfg.clients, cfg.duration, func(ctx context.Context, _ *rand.Rand) error {
			return gql.do(ctx, typenameQuery, nil, nil)
		})
		op, on, oerrs := latencies(ctx, cfg.clients, cfg.duration, func(ctx context.Context, rng *rand.Rand) error {
			var out struct{ Order *struct{ ID string } }
			id := ids[rng.IntN(len(ids))]
			if err := gql.do(ctx, orderQuery, map[string]any{"id": id}, &out); err != nil {
				return err
			}
			if out.Order == nil || out.Order.ID != id {
				return fmt.Errorf("order %s: not found", id)
			}
			return nil
		})
		lp, ln, lerrs := latencies(ctx, cfg.clients, cfg.duration, func(ctx context.Context, _ *rand.Rand) error {
			var out struct{ Orders struct{ Edges []struct{} } }
			if err := gql.do(ctx, ordersQuery, nil, &out); err != nil {
				return err
			}
			if len(out.Orders.Edges) == 0 {
				return fmt.Errorf("orders(first: 20): no edges")
			}
			return nil
		})
		if ctx.Err() != nil {
			return readResult{}, ctx.Err()
		}
		fmt.Fprintf(cfg.stderr, "round %d/%d: p99 __typename %.2fms (%d ok, %v); order(id:) %.2fms = %.2fx (%d ok, %v); orders %.2fms = %.2fx (%d ok, %v)\n",
			r, cfg.rounds, tp, tn, terrs, op, op/tp, on, oerrs, lp, lp/tp, ln, lerrs)
		for _, c := range []struct {
			n    int
			errs errCounter
			what string
		}{{tn, terrs, "__typename"}, {on, oerrs, "order(id:)"}, {ln, lerrs, "orders"}} {
			if c.n == 0 {
				return readResult{}, fmt.Errorf("no %s query succeeded: %v", c.what, c.errs)
			}
		}
		typeP, orderP, ordersP = append(typeP, tp), append(orderP, op), append(ordersP, lp)
	}
	return readResult{order: median(orderP), orders: median(ordersP), typename: median(typeP)}, nil
}

// latencies runs clients goroutines calling op back to back for d and
// returns the p99 in milliseconds of the successful calls and their number.
func latencies(ctx context.Context, clients int, d time.Duration, op func(context.Context, *rand.Rand) error) (float64, int, errCounter) {
	var (
		mu   sync.Mutex
		all  []time.Duration
		errs errCounter
		wg   sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	for w := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			var mine []time.Duration
			var myErrs errCounter
			for i := 0; i < maxOpsPerWorker && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				start := time.Now()
				if err := op(ctx, rng); err != nil {
					myErrs.add(err)
					continue
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			all = append(all, mine...)
			errs.merge(myErrs)
			mu.Unlock()
		})
	}
	wg.Wait()
	return ms(percentile(all, 0.99)), len(all), errs
}

// percentile returns the nearest-rank p-th percentile of ds (0 if empty).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// median returns the median of vs (the mean of the middle two for an even
// count).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
