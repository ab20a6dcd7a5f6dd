package graph

import (
	"context"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vektah/gqlparser/v2/ast"
)

// Metrics are the GraphQL server's Prometheus metrics.
type Metrics struct {
	latency     *prometheus.HistogramVec
	mutations   *prometheus.CounterVec
	errors      *prometheus.CounterVec
	subscribers prometheus.Gauge
	sockets     prometheus.Gauge
}

// NewMetrics registers the GraphQL metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ordertrail_graphql_request_duration_seconds",
			Help:    "GraphQL operation latency by operation type and name.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"type", "operation"}),
		mutations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ordertrail_graphql_mutations_total",
			Help: "GraphQL mutations by field and outcome.",
		}, []string{"field", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ordertrail_graphql_errors_total",
			Help: "GraphQL errors by extensions.code.",
		}, []string{"code"}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ordertrail_live_subscribers",
			Help: "Live GraphQL subscriptions being served.",
		}),
		sockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ordertrail_websocket_connections",
			Help: "Open GraphQL websocket connections.",
		}),
	}
	reg.MustRegister(m.latency, m.mutations, m.errors, m.subscribers, m.sockets)
	return m
}

var _ interface {
	graphql.HandlerExtension
	graphql.ResponseInterceptor
} = (*Metrics)(nil)

// ExtensionName implements graphql.HandlerExtension.
func (*Metrics) ExtensionName() string { return "Metrics" }

// Validate implements graphql.HandlerExtension.
func (*Metrics) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptResponse records latency and error codes of each response.
func (m *Metrics) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	start := time.Now()
	resp := next(ctx)
	if resp == nil {
		return resp
	}
	opType, opName := "unknown", "anonymous"
	if graphql.HasOperationContext(ctx) {
		oc := graphql.GetOperationContext(ctx)
		if oc.Operation != nil {
			opType = string(oc.Operation.Operation)
			if oc.Operation.Name != "" {
				opName = oc.Operation.Name
			}
			if oc.Operation.Operation == ast.Mutation {
				m.countMutations(oc.Operation.SelectionSet, resp)
			}
		}
	}
	if opType != string(ast.Subscription) {
		m.latency.WithLabelValues(opType, opName).Observe(time.Since(start).Seconds())
	}
	for _, e := range resp.Errors {
		code, _ := e.Extensions["code"].(string)
		if code == "" {
			code = "UNKNOWN"
		}
		m.errors.WithLabelValues(code).Inc()
	}
	return resp
}

// countMutations counts each mutation field of a response by outcome; a
// field failed when an error's path starts at it.
func (m *Metrics) countMutations(set ast.SelectionSet, resp *graphql.Response) {
	for _, sel := range set {
		f, ok := sel.(*ast.Field)
		if !ok {
			continue
		}
		key := f.Alias
		if key == "" {
			key = f.Name
		}
		outcome := "ok"
		for _, e := range resp.Errors {
			if len(e.Path) > 0 && e.Path[0] == ast.PathName(key) {
				outcome = "error"
				break
			}
		}
		m.mutations.WithLabelValues(f.Name, outcome).Inc()
	}
}

func (m *Metrics) socketOpened() {
	if m != nil {
		m.sockets.Inc()
	}
}

func (m *Metrics) socketClosed() {
	if m != nil {
		m.sockets.Dec()
	}
}

func (m *Metrics) subscriberAdded() {
	if m != nil {
		m.subscribers.Inc()
	}
}

func (m *Metrics) subscriberGone() {
	if m != nil {
		m.subscribers.Dec()
	}
}
