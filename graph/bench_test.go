package graph_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkQuery measures the CPU cost of the load script's read queries,
// served in process by the full handler (request IDs, loaders, gqlgen) on
// 100 orders, against a query that touches no storage. It reports each
// query's cost as a ratio to that baseline:
//
//	go test -run '^$' -bench Query -count 5 ./graph/
func BenchmarkQuery(b *testing.B) {
	e := newEnv(b, config{})
	var ids []string
	var last string
	for i := range 100 {
		p := e.createOrder(b, fmt.Sprintf("cust-%d", i%10))
		ids = append(ids, p.Order.ID)
		last = p.Position
	}
	e.mustDo(b, `query($p: Position!) { orders(first: 1, minPosition: $p) { pageInfo { hasNextPage } } }`, map[string]any{"p": last}, nil)

	queries := []struct {
		name, query string
		vars        func(i int) map[string]any
	}{
		{"typename", `{ __typename }`, nil},
		{"order", `query($id: ID!) {
  order(id: $id) { id customerId status total { amount currency } items { sku quantity unitPrice } createdAt version lastPosition }
}`, func(i int) map[string]any { return map[string]any{"id": ids[i%len(ids)]} }},
		{"orders", `{
  orders(first: 20) {
    edges { cursor node { id customerId status total { amount currency } createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}`, nil},
	}
	var base float64
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			bodies := make([][]byte, len(ids))
			for i := range bodies {
				var vars map[string]any
				if q.vars != nil {
					vars = q.vars(i)
				}
				body, err := json.Marshal(map[string]any{"query": q.query, "variables": vars})
				if err != nil {
					b.Fatal(err)
				}
				bodies[i] = body
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(bodies[i%len(bodies)]))
					req.Header.Set("Content-Type", "application/json")
					w := httptest.NewRecorder()
					e.handler.ServeHTTP(w, req)
					if w.Code != http.StatusOK || bytes.Contains(w.Body.Bytes(), []byte(`"errors"`)) {
						b.Errorf("%s: %d %s", q.name, w.Code, w.Body.Bytes())
						return
					}
					i++
				}
			})
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if q.name == "typename" {
				base = ns
			} else if base > 0 {
				b.ReportMetric(ns/base, "x_typename")
			}
		})
	}
}
