package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/eventing/embedded"
)

// baselineWriters is fixed by the goal: the store's own rate from 32 writers.
const baselineWriters = 32

// maxOpsPerWorker bounds every timed loop in count as well as in time.
const maxOpsPerWorker = 1_000_000

const createOrderMutation = `mutation($in: CreateOrderInput!) {
  createOrder(input: $in) { position order { id } }
}`

// The one item every created order has, as the API takes it and as the
// domain records it.
const (
	itemSKU       = "SKU-LOAD-1"
	itemQuantity  = 2
	itemUnitPrice = "12.50"
	itemMinor     = 1250
)

func createOrderVars(customerID string) map[string]any {
	return map[string]any{"in": map[string]any{
		"commandId":  uuid.NewString(),
		"customerId": customerID,
		"currency":   "USD",
		"items":      []map[string]any{{"sku": itemSKU, "quantity": itemQuantity, "unitPrice": itemUnitPrice}},
	}}
}

// errNoData is a createOrder answer without its order or an error.
var errNoData = errors.New("response has no order")

type createdOrder struct {
	CreateOrder struct {
		Position string
		Order    *struct{ ID string }
	}
}

// writeResult is goal 1: acknowledged createOrder mutations per second and
// the IDs they created, against the embedded store's own append rate.
type writeResult struct {
	rate, baseRate float64
	ids            []string
}

func measureWrites(ctx context.Context, cfg config, gql *client, storeDir string) (writeResult, error) {
	var res writeResult
	store, err := embedded.Start(ctx, embedded.Config{
		Dir:    storeDir,
		Logger: slog.New(slog.NewTextHandler(cfg.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return res, fmt.Errorf("start baseline store: %w", err)
	}
	defer store.Close()
	es, err := eventing.Connect(store.ConnectionString())
	if err != nil {
		return res, err
	}
	defer es.Close()
	codec := eventing.NewCodec(eventing.DefaultUpcasters("USD"))

	var rates, baseRates []float64
	for r := 1; r <= cfg.rounds; r++ {
		rate, ids, errs := createOrders(ctx, gql, cfg.clients, cfg.duration)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		baseRate, baseErrs := appendOrders(ctx, es, codec, cfg.duration)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		fmt.Fprintf(cfg.stderr, "round %d/%d: createOrder %.0f/s (%v); embedded append %.0f/s (%v); ratio %.2f\n",
			r, cfg.rounds, rate, errs, baseRate, baseErrs, rate/baseRate)
		if baseErrs.n > 0 && baseRate == 0 {
			return res, fmt.Errorf("baseline appends all failed: %w", baseErrs.first)
		}
		rates, baseRates = append(rates, rate), append(baseRates, baseRate)
		res.ids = append(res.ids, ids...)
	}
	if len(res.ids) == 0 {
		return res, fmt.Errorf("no createOrder succeeded, so there is nothing to read")
	}
	res.rate, res.baseRate = median(rates), median(baseRates)
	return res, nil
}

// createOrders runs clients goroutines posting createOrder back to back for
// d and returns the rate of successful acknowledgements.
func createOrders(ctx context.Context, gql *client, clients int, d time.Duration) (float64, []string, errCounter) {
	var (
		mu   sync.Mutex
		ids  []string
		errs errCounter
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range clients {
		wg.Go(func() {
			var mine []string
			var myErrs errCounter
			customer := fmt.Sprintf("load-customer-%03d", w)
			for i := 0; i < maxOpsPerWorker && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				var out createdOrder
				err := gql.do(ctx, createOrderMutation, createOrderVars(customer), &out)
				if err == nil && out.CreateOrder.Order == nil {
					err = errNoData
				}
				if err != nil {
					myErrs.add(err)
					continue
				}
				mine = append(mine, out.CreateOrder.Order.ID)
			}
			mu.Lock()
			ids = append(ids, mine...)
			errs.merge(myErrs)
			mu.Unlock()
		})
	}
	wg.Wait()
	return float64(len(ids)) / time.Since(start).Seconds(), ids, errs
}

// appendOrders appends the OrderCreated event a createOrder makes to fresh
// streams from baselineWriters goroutines for d: what the store can do
// without the service around it.
func appendOrders(ctx context.Context, es *esdb.Client, codec *eventing.Codec, d time.Duration) (float64, errCounter) {
	var (
		mu   sync.Mutex
		n    int
		errs errCounter
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range baselineWriters {
		wg.Go(func() {
			var mine int
			var myErrs errCounter
			customer := fmt.Sprintf("load-customer-%03d", w)
			for i := 0; i < maxOpsPerWorker && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				cmd, corr := uuid.NewString(), uuid.NewString()
				orderID := eventing.NewOrderID(cmd)
				ev, err := codec.Encode(uuid.New(), &domain.OrderCreated{
					OrderID: orderID, CustomerID: customer, Currency: "USD",
					Items: []domain.Line{{SKU: itemSKU, Quantity: itemQuantity, UnitPrice: itemMinor}},
					Total: itemQuantity * itemMinor,
				}, eventing.Metadata{CommandID: cmd, CorrelationID: corr, CausationID: corr, Actor: "anonymous"})
				if err == nil {
					_, err = es.AppendToStream(ctx, "order-"+orderID,
						esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, ev)
				}
				if err != nil {
					myErrs.add(err)
					continue
				}
				mine++
			}
			mu.Lock()
			n += mine
			errs.merge(myErrs)
			mu.Unlock()
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds(), errs
}
