package graph

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ordertrail/ordertrail/graph/model"
)

// Options are the GraphQL server's limits and policies.
type Options struct {
	// AllowedOrigins are the origins (host patterns such as
	// "app.example.com" or "localhost:*") allowed to open websockets;
	// empty means same-origin only.
	AllowedOrigins []string
	// Tokens are the accepted bearer tokens; empty means the API is open.
	Tokens []string
	// Introspection enables __schema and __type queries.
	Introspection bool
	// Suggestions enables "Did you mean …" hints in validation errors.
	Suggestions bool
	// MaxDepth bounds the nesting of selections (default 12).
	MaxDepth int
	// MaxComplexity bounds the cost of an operation, lists weighted by
	// their page size (default 2000).
	MaxComplexity int
	// MaxTokens bounds the parser's tokens per document (default 10000).
	MaxTokens int
	// MaxAliases bounds the aliased fields per operation (default 100).
	MaxAliases int
	// KeepAlive is the websocket keep-alive ping interval (default 10s).
	KeepAlive time.Duration
	// InitTimeout bounds the wait for connection_init (default 10s).
	InitTimeout time.Duration
	// Metrics, if set, receives the server's metrics.
	Metrics *Metrics
}

func (o *Options) defaults() {
	if o.MaxDepth == 0 {
		o.MaxDepth = 12
	}
	if o.MaxComplexity == 0 {
		o.MaxComplexity = 2000
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = 10000
	}
	if o.MaxAliases == 0 {
		o.MaxAliases = 100
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 10 * time.Second
	}
	if o.InitTimeout == 0 {
		o.InitTimeout = 10 * time.Second
	}
}

// NewServer builds the GraphQL handler with only the transports the API
// serves: POST (JSON), GET (queries only) and websockets with both the
// graphql-transport-ws and the legacy graphql-ws subprotocols.
func NewServer(deps Deps, opts Options) *handler.Server {
	opts.defaults()
	logger := deps.Logger
	if logger == nil {
		logger = slog.Default()
		deps.Logger = logger
	}
	cfg := Config{Resolvers: &Resolver{Deps: deps, metrics: opts.Metrics}}
	weighComplexity(&cfg, deps.MaxPageSize)
	srv := handler.New(NewExecutableSchema(cfg))

	srv.AddTransport(transport.Websocket{
		Implementation: specCloseCodes{transport.CoderWebsocketImplementation{AcceptOptions: websocket.AcceptOptions{
			OriginPatterns: opts.AllowedOrigins,
			Subprotocols:   []string{"graphql-transport-ws", "graphql-ws"},
		}}},
		KeepAlivePingInterval: opts.KeepAlive,
		InitTimeout:           opts.InitTimeout,
		InitFunc:              wsInit(opts.Tokens, opts.Metrics),
		CloseFunc: func(ctx context.Context, _ int) {
			if counted, _ := ctx.Value(socketCountedKey{}).(bool); counted {
				opts.Metrics.socketClosed()
			}
		},
	})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})

	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.SetParserTokenLimit(opts.MaxTokens)
	srv.SetDisableSuggestion(!opts.Suggestions)
	if opts.Introspection {
		srv.Use(extension.Introspection{})
	}
	srv.Use(shapeLimit{maxDepth: opts.MaxDepth, maxAliases: opts.MaxAliases, maxFields: opts.MaxComplexity})
	srv.Use(extension.FixedComplexityLimit(opts.MaxComplexity))
	srv.Use(authGate{open: len(opts.Tokens) == 0})
	if opts.Metrics != nil {
		srv.Use(opts.Metrics)
	}
	srv.Use(newSharedResults()) // innermost: its shared replies skip the interceptors inside it
	srv.SetErrorPresenter(ErrorPresenter(logger))
	srv.SetRecoverFunc(RecoverFunc(logger))
	return srv
}

// weighComplexity makes list fields cost their page size times their
// children, so `orders(first: 100) { … }` costs 100 times one order.
func weighComplexity(cfg *Config, maxPage int) {
	if maxPage <= 0 {
		maxPage = 100
	}
	page := func(first *int) int {
		if first == nil {
			return 20
		}
		if *first < 1 {
			return 1
		}
		return min(*first, maxPage)
	}
	cfg.Complexity.Query.Orders = func(child int, first *int, _ *string, _ *model.OrderFilter, _ *model.OrderOrder, _ *model.Position) int {
		return 1 + page(first)*child
	}
	cfg.Complexity.Customer.Orders = func(child int, first *int, _ *string) int {
		return 1 + page(first)*child
	}
	cfg.Complexity.Order.History = func(child int) int { return 1 + 50*child }
	cfg.Complexity.Query.OrderTrends = func(child int, _, _ time.Time, _ *model.TrendBucket, _ *string, _ *model.Position) int {
		return 1 + 48*child
	}
}

// shapeLimit rejects operations nested too deep, with too many aliases or
// expanding to more fields than the complexity limit allows, before any
// resolver runs and before gqlgen's complexity walk, which visits every
// expanded field. Fragments are measured once each, so a document whose
// fragments spread each other many times costs time linear in its size.
type shapeLimit struct {
	maxDepth, maxAliases, maxFields int
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = shapeLimit{}

func (shapeLimit) ExtensionName() string                   { return "ShapeLimit" }
func (shapeLimit) Validate(graphql.ExecutableSchema) error { return nil }
func (l shapeLimit) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	m := measurer{frags: oc.Doc.Fragments, memo: map[string]shape{}, onPath: map[string]bool{}}
	s := m.set(oc.Operation.SelectionSet)
	switch {
	case s.depth > l.maxDepth:
		err := gqlerror.Errorf("operation is nested %d levels deep; the limit is %d", s.depth, l.maxDepth)
		err.Extensions = map[string]any{"code": "DEPTH_LIMIT_EXCEEDED"}
		return err
	case s.aliases > l.maxAliases:
		err := gqlerror.Errorf("operation has %d aliases; the limit is %d", s.aliases, l.maxAliases)
		err.Extensions = map[string]any{"code": "ALIAS_LIMIT_EXCEEDED"}
		return err
	case s.fields > l.maxFields:
		err := gqlerror.Errorf("operation expands to more than %d fields", l.maxFields)
		err.Extensions = map[string]any{"code": "COMPLEXITY_LIMIT_EXCEEDED"}
		return err
	}
	return nil
}

// shape is what a selection set adds below its parent: its depth and the
// aliases and fields it expands to (saturating).
type shape struct{ depth, aliases, fields int }

type measurer struct {
	frags  ast.FragmentDefinitionList
	memo   map[string]shape
	onPath map[string]bool
}

const saturated = 1 << 40

func (m *measurer) set(set ast.SelectionSet) shape {
	var out shape
	add := func(s shape) {
		out.depth = max(out.depth, s.depth)
		out.aliases = min(out.aliases+s.aliases, saturated)
		out.fields = min(out.fields+s.fields, saturated)
	}
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			child := m.set(s.SelectionSet)
			child.depth++
			child.fields = min(child.fields+1, saturated)
			if s.Alias != "" && s.Alias != s.Name {
				child.aliases = min(child.aliases+1, saturated)
			}
			add(child)
		case *ast.InlineFragment:
			add(m.set(s.SelectionSet))
		case *ast.FragmentSpread:
			if sh, ok := m.memo[s.Name]; ok {
				add(sh)
				continue
			}
			f := m.frags.ForName(s.Name)
			if f == nil || m.onPath[s.Name] {
				continue
			}
			m.onPath[s.Name] = true
			sh := m.set(f.SelectionSet)
			delete(m.onPath, s.Name)
			m.memo[s.Name] = sh
			add(sh)
		}
	}
	return out
}

type authKey struct{}

// WithAuthenticated marks ctx as carrying a valid token.
func WithAuthenticated(ctx context.Context) context.Context {
	return context.WithValue(ctx, authKey{}, true)
}

func authenticated(ctx context.Context) bool {
	ok, _ := ctx.Value(authKey{}).(bool)
	return ok
}

// authGate requires a token for mutations and subscriptions when auth is on.
type authGate struct{ open bool }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = authGate{}

func (authGate) ExtensionName() string                   { return "AuthGate" }
func (authGate) Validate(graphql.ExecutableSchema) error { return nil }
func (g authGate) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if g.open || oc.Operation == nil || oc.Operation.Operation == ast.Query || authenticated(ctx) {
		return nil
	}
	err := gqlerror.Errorf("%s", ErrUnauthenticated.Error())
	err.Extensions = map[string]any{"code": CodeUnauthenticated}
	return err
}

// TokenValid reports whether token is one of tokens, in constant time.
func TokenValid(tokens []string, token string) bool {
	ok := false
	for _, t := range tokens {
		if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
			ok = true
		}
	}
	return ok && token != ""
}

// BearerToken returns the token of an "Authorization: Bearer …" value.
func BearerToken(header string) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

type socketCountedKey struct{}

// wsInit authenticates a websocket from its connection_init payload
// ({"Authorization": "Bearer …"} or {"token": "…"}) when auth is on; a
// socket without a valid token is closed with 4403 Forbidden before any
// operation runs.
func wsInit(tokens []string, m *Metrics) transport.WebsocketInitFunc {
	return func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
		if len(tokens) > 0 {
			token := BearerToken(p.Authorization())
			if token == "" {
				token, _ = p["token"].(string)
			}
			if !TokenValid(tokens, token) {
				ctx = transport.WithWebsocketCloseCode(ctx, 4403)
				ctx = transport.AppendCloseReason(ctx, "Forbidden")
				return ctx, nil, errors.New("unauthenticated: a valid bearer token is required in connection_init")
			}
			ctx = WithAuthenticated(ctx)
		}
		m.socketOpened()
		return context.WithValue(ctx, socketCountedKey{}, true), nil, nil
	}
}

// HTTPAuth marks requests carrying a valid bearer token as authenticated.
func HTTPAuth(tokens []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(tokens) > 0 && TokenValid(tokens, BearerToken(r.Header.Get("Authorization"))) {
			r = r.WithContext(WithAuthenticated(r.Context()))
		}
		next.ServeHTTP(w, r)
	})
}

// specCloseCodes closes a graphql-transport-ws socket that sent no
// connection_init in time with 4408, as that protocol requires; gqlgen
// closes it with 1002.
type specCloseCodes struct {
	transport.WebsocketImplementation
}

func (s specCloseCodes) Accept(w http.ResponseWriter, r *http.Request, o transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	c, err := s.WebsocketImplementation.Accept(w, r, o)
	if err != nil {
		return nil, err
	}
	return &initTimeoutConn{c}, nil
}

type initTimeoutConn struct{ transport.WebsocketConn }

func (c *initTimeoutConn) WriteClose(code int, msg string) error {
	if code == transport.WebsocketCloseProtocolError && msg == "connection initialisation timeout" &&
		c.Subprotocol() == "graphql-transport-ws" {
		code = 4408
	}
	return c.WebsocketConn.WriteClose(code, msg)
}

// SetReadLimit and SetReadDeadline keep the optional interfaces of the
// wrapped connection.
func (c *initTimeoutConn) SetReadLimit(n int64) {
	if l, ok := c.WebsocketConn.(transport.WebsocketReadLimiter); ok {
		l.SetReadLimit(n)
	}
}

func (c *initTimeoutConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.WebsocketConn.(transport.WebsocketReadDeadliner); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}
