package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"
	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/eventing/embedded"
	"github.com/ordertrail/ordertrail/graph"
	"github.com/ordertrail/ordertrail/readstore"
)

var quiet = slog.New(slog.DiscardHandler)

func TestMain(m *testing.M) {
	slog.SetDefault(quiet) // the esdb client logs routine subscription drops
	os.Exit(m.Run())
}

// config tunes one test environment.
type config struct {
	opts     graph.Options
	readWait time.Duration // readstore.Options.WaitTimeout; 0 means 5 s
	logger   *slog.Logger  // the GraphQL server's logger; nil means quiet
	deps     func(*graph.Deps)
}

// env is the service as server.go wires it, in process: an embedded event
// store reached through the official client, a SQLite read model fed by the
// real subscription runner, and the GraphQL handler behind request IDs and
// bearer-token auth, served by httptest.
type env struct {
	client  *esdb.Client
	repo    *eventing.Repository
	store   *readstore.Store
	live    *readstore.Live
	handler http.Handler
	srv     *httptest.Server
	gql     *client.Client
	// readCalls counts the resolvers' calls to the read model.
	readCalls atomic.Int64
	// gate is held for reading by every projected batch; pause holds it
	// for writing.
	gate sync.RWMutex
}

// pause stops the projection after the batch in progress, until the
// returned func (also run at cleanup) resumes it.
func (e *env) pause(t testing.TB) (resume func()) {
	e.gate.Lock()
	resume = sync.OnceFunc(e.gate.Unlock)
	t.Cleanup(resume)
	return resume
}

// newEnv starts an environment that the test's cleanup tears down.
func newEnv(t testing.TB, cfg config) *env {
	t.Helper()
	ctx := context.Background()
	es, err := embedded.Start(ctx, embedded.Config{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatalf("start embedded store: %v", err)
	}
	t.Cleanup(func() { _ = es.Close() })
	c, err := eventing.Connect(es.ConnectionString())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })

	codec := eventing.NewCodec(eventing.DefaultUpcasters("USD"))
	repo := eventing.NewRepository(c, codec, eventing.RepositoryOptions{Logger: quiet, SkipReadBack: true})
	wait := cfg.readWait
	if wait == 0 {
		wait = 5 * time.Second
	}
	store, err := readstore.Open(ctx, filepath.Join(t.TempDir(), "readmodel.db"), readstore.Options{WaitTimeout: wait, Logger: quiet})
	if err != nil {
		t.Fatalf("open read model: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	live := readstore.NewLive(store)
	e := &env{client: c, repo: repo, store: store, live: live}
	reads := countingReads{liveReads{live}, &e.readCalls}
	feed := &feedStatus{client: c}

	runCtx, cancelRun := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = eventing.RunSubscription(runCtx, c, codec, &readstore.Projector{Live: live, Gate: e.gate.RLocker()}, eventing.SubscriptionOptions{OnStatus: feed.set})
	}()
	t.Cleanup(func() { cancelRun(); <-done })

	logger := cfg.logger
	if logger == nil {
		logger = quiet
	}
	deps := graph.Deps{
		Commands: repo,
		Events:   repo,
		Reads:    reads,
		Live:     reads,
		Feed:     feed,
		Logger:   logger,
	}
	if cfg.deps != nil {
		cfg.deps(&deps)
	}
	gql := graph.NewServer(deps, cfg.opts)
	e.handler = withRequestID(graph.HTTPAuth(cfg.opts.Tokens, graph.WithLoaders(reads, gql)))
	e.srv = httptest.NewServer(e.handler)
	t.Cleanup(e.srv.Close)
	e.gql = client.New(e.handler)
	return e
}

// withRequestID is server.go's request-ID middleware: the client's
// X-Request-ID or a fresh UUID, echoed and put in the context.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if id == "" || len(id) > 64 {
			id = uuid.NewString()
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r.WithContext(graph.WithRequestID(r.Context(), id)))
	})
}

// feedStatus holds the latest status of the read model's subscription.
type feedStatus struct {
	client *esdb.Client
	mu     sync.Mutex
	st     eventing.SubscriptionStatus
}

// Head reads the position of the last event in $all.
func (f *feedStatus) Head(ctx context.Context) (uint64, error) {
	rs, err := f.client.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		return 0, err
	}
	defer rs.Close()
	ev, err := rs.Recv()
	if errors.Is(err, io.EOF) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return ev.Event.Position.Commit, nil
}

func (f *feedStatus) set(st eventing.SubscriptionStatus) {
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
}

func (f *feedStatus) Status() eventing.SubscriptionStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

// liveReads is the read model as server.go wires it.
type liveReads struct{ *readstore.Live }

// countingReads counts calls to the read model, so tests can tell that an
// operation was rejected before any resolver ran.
type countingReads struct {
	liveReads
	n *atomic.Int64
}

func (c countingReads) CustomersByIDs(ctx context.Context, ids []string) (map[string]readstore.Customer, error) {
	c.n.Add(1)
	return c.liveReads.CustomersByIDs(ctx, ids)
}

func (c countingReads) WaitFor(ctx context.Context, position uint64) error {
	c.n.Add(1)
	return c.liveReads.WaitFor(ctx, position)
}

func (c countingReads) Order(ctx context.Context, id string) (readstore.Order, error) {
	c.n.Add(1)
	return c.liveReads.Order(ctx, id)
}

func (c countingReads) OrderAfter(ctx context.Context, id string, position uint64) (readstore.Order, error) {
	c.n.Add(1)
	return c.liveReads.OrderAfter(ctx, id, position)
}

func (c countingReads) Orders(ctx context.Context, q readstore.OrderQuery) (readstore.OrderPage, error) {
	c.n.Add(1)
	return c.liveReads.Orders(ctx, q)
}

func (c countingReads) Customer(ctx context.Context, id string) (readstore.Customer, error) {
	c.n.Add(1)
	return c.liveReads.Customer(ctx, id)
}

func (c countingReads) Trends(ctx context.Context, q readstore.TrendQuery) ([]readstore.Trend, error) {
	c.n.Add(1)
	return c.liveReads.Trends(ctx, q)
}

func (c countingReads) Status(ctx context.Context) (readstore.ProjectionStatus, error) {
	c.n.Add(1)
	return c.liveReads.Status(ctx)
}

// gqlError is one entry of a response's errors.
type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

func (e gqlError) code() string { s, _ := e.Extensions["code"].(string); return s }

// result is a GraphQL response with data left raw.
type result struct {
	Status int             `json:"-"` // HTTP status, when known
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

// codes lists the errors' extensions.code values.
func (r result) codes() []string {
	out := make([]string, len(r.Errors))
	for i, e := range r.Errors {
		out[i] = e.code()
	}
	return out
}

// hasCode reports whether some error carries code.
func (r result) hasCode(code string) bool {
	for _, e := range r.Errors {
		if e.code() == code {
			return true
		}
	}
	return false
}

// decode unmarshals the data into v, failing the test on bad JSON.
func (r result) decode(t testing.TB, v any) {
	t.Helper()
	if len(r.Data) == 0 || string(r.Data) == "null" {
		t.Fatalf("response has no data; errors: %+v", r.Errors)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("decode data %s: %v", r.Data, err)
	}
}

// do runs an operation in process through gqlgen's client.
func (e *env) do(t testing.TB, query string, vars map[string]any, opts ...client.Option) result {
	t.Helper()
	for k, v := range vars {
		opts = append(opts, client.Var(k, v))
	}
	raw, err := e.gql.RawPost(query, opts...)
	if err != nil {
		// The client reports a 4xx response as "http CODE: BODY".
		var res result
		var status int
		var body string
		if _, serr := fmt.Sscanf(err.Error(), "http %d:", &status); serr != nil {
			t.Fatalf("post: %v", err)
		}
		_, body, _ = strings.Cut(err.Error(), ": ")
		if jerr := json.Unmarshal([]byte(body), &res); jerr != nil {
			t.Fatalf("post: %v", err)
		}
		res.Status = status
		return res
	}
	res := result{Status: http.StatusOK}
	if res.Data, err = json.Marshal(raw.Data); err != nil {
		t.Fatalf("marshal data: %v", err)
	}
	if len(raw.Errors) > 0 {
		if err := json.Unmarshal(raw.Errors, &res.Errors); err != nil {
			t.Fatalf("decode errors %s: %v", raw.Errors, err)
		}
	}
	return res
}

// mustDo runs an operation that must succeed and decodes its data into v.
func (e *env) mustDo(t testing.TB, query string, vars map[string]any, v any, opts ...client.Option) {
	t.Helper()
	res := e.do(t, query, vars, opts...)
	if len(res.Errors) > 0 {
		t.Fatalf("unexpected errors: %+v\nquery: %s", res.Errors, query)
	}
	if v != nil {
		res.decode(t, v)
	}
}

// post sends a raw HTTP request to the served handler and returns the
// status and body.
func (e *env) post(t testing.TB, contentType string, body []byte, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	return send(t, req)
}

func send(t testing.TB, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, b
}

// postJSON posts a GraphQL request as JSON and decodes the response.
func (e *env) postJSON(t testing.TB, query string, vars map[string]any, header http.Header) (int, result) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	status, b := e.post(t, "application/json", body, header)
	var res result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("decode response (status %d) %q: %v", status, b, err)
	}
	return status, res
}

// orderEvents counts the order events in $all, read through the client.
func (e *env) orderEvents(t testing.TB) int {
	t.Helper()
	rs, err := e.client.ReadAll(t.Context(), esdb.ReadAllOptions{From: esdb.Start{}}, 1<<20)
	if err != nil {
		t.Fatalf("read $all: %v", err)
	}
	defer rs.Close()
	n := 0
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("read $all: %v", err)
		}
		if strings.HasPrefix(ev.OriginalEvent().StreamID, eventing.OrderStreamPrefix) {
			n++
		}
	}
}

// streamLen returns the number of events in an order's stream, or -1 when
// the store says the stream does not exist.
func (e *env) streamLen(t testing.TB, orderID string) int {
	t.Helper()
	rs, err := e.client.ReadStream(t.Context(), eventing.OrderStream(orderID), esdb.ReadStreamOptions{From: esdb.Start{}}, 1<<20)
	if err != nil {
		if isNotFound(err) {
			return -1
		}
		t.Fatalf("read stream: %v", err)
	}
	defer rs.Close()
	n := 0
	for {
		_, err := rs.Recv()
		switch {
		case errors.Is(err, io.EOF):
			return n
		case err != nil && isNotFound(err):
			return -1
		case err != nil:
			t.Fatalf("read stream: %v", err)
		}
		n++
	}
}

func isNotFound(err error) bool {
	var esErr *esdb.Error
	return errors.As(err, &esErr) && esErr.Code() == esdb.ErrorCodeResourceNotFound
}

// Order fields read back in tests.
const orderFields = `id customerId status total { amount currency } items { sku quantity unitPrice }
	version lastPosition cancelReason carrier trackingReference confirmedAt paidAt shippedAt deliveredAt cancelledAt
	corrections { correctedRevision oldAmount { amount } newAmount { amount } reason }`

type money struct{ Amount, Currency string }

type orderItem struct {
	Sku       string
	Quantity  int
	UnitPrice string
}

type order struct {
	ID                string
	CustomerID        string
	Status            string
	Total             money
	Items             []orderItem
	Version           int
	LastPosition      string
	CancelReason      *string
	Carrier           *string
	TrackingReference *string
	ConfirmedAt       *time.Time
	PaidAt            *time.Time
	ShippedAt         *time.Time
	DeliveredAt       *time.Time
	CancelledAt       *time.Time
	Corrections       []struct {
		CorrectedRevision int
		OldAmount         money
		NewAmount         money
		Reason            string
	}
}

type historyEvent struct {
	EventID       string
	Type          string
	Revision      int
	Position      string
	RecordedAt    time.Time
	Data          json.RawMessage
	SchemaVersion int
	CommandID     *string
	Actor         *string
	CorrelationID *string
}

type payload struct {
	Order    *order
	Events   []historyEvent
	Position string
}

const payloadFields = `order { ` + orderFields + ` } events { eventId type revision position recordedAt data schemaVersion commandId actor correlationId } position`

// createOrder creates an order for customer with one item "A" (2 × 5.00
// EUR) and returns the payload.
func (e *env) createOrder(t testing.TB, customer string) payload {
	t.Helper()
	var out struct{ CreateOrder payload }
	e.mustDo(t, `mutation($c: ID!) { createOrder(input: {customerId: $c, currency: "EUR",
		items: [{sku: "A", quantity: 2, unitPrice: "5.00"}]}) { `+payloadFields+` } }`,
		map[string]any{"c": customer}, &out)
	return out.CreateOrder
}

// mutate runs one single-field mutation with an input and returns its payload.
func (e *env) mutate(t testing.TB, field string, input map[string]any, opts ...client.Option) payload {
	t.Helper()
	res := e.mutateRes(t, field, input, opts...)
	if len(res.Errors) > 0 {
		t.Fatalf("%s(%v): %+v", field, input, res.Errors)
	}
	var out map[string]payload
	res.decode(t, &out)
	return out[field]
}

func (e *env) mutateRes(t testing.TB, field string, input map[string]any, opts ...client.Option) result {
	t.Helper()
	typ := map[string]string{
		"createOrder": "CreateOrderInput", "addOrderItem": "AddOrderItemInput",
		"removeOrderItem": "RemoveOrderItemInput", "changeOrderItemQuantity": "ChangeOrderItemQuantityInput",
		"confirmOrder": "OrderCommandInput", "markOrderPaid": "MarkOrderPaidInput",
		"shipOrder": "ShipOrderInput", "deliverOrder": "OrderCommandInput",
		"cancelOrder": "CancelOrderInput", "correctOrderAmount": "CorrectOrderAmountInput",
	}[field]
	if typ == "" {
		t.Fatalf("unknown mutation %s", field)
	}
	q := fmt.Sprintf(`mutation($in: %s!) { %s(input: $in) { %s } }`, typ, field, payloadFields)
	return e.do(t, q, map[string]any{"in": input}, opts...)
}

// wsMsg is a message of either websocket subprotocol.
type wsMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// wsClient speaks graphql-transport-ws or graphql-ws over coder/websocket.
// A reader goroutine, which ends when the connection closes, queues what
// the server sends, so that a wait for a message never closes the socket.
type wsClient struct {
	t     testing.TB
	c     *websocket.Conn
	proto string
	msgs  chan wsMsg
	done  chan struct{} // closed when the reader stops
	err   error         // why the reader stopped; read after done
}

const (
	transportWS = "graphql-transport-ws"
	legacyWS    = "graphql-ws"
)

// dialWS opens a websocket to the env with one subprotocol.
func (e *env) dialWS(t testing.TB, proto string, header http.Header) (*wsClient, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(e.srv.URL, "http")
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{proto}, HTTPHeader: header})
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(1 << 22)
	w := &wsClient{t: t, c: c, proto: proto, msgs: make(chan wsMsg, 1024), done: make(chan struct{})}
	go w.pump()
	t.Cleanup(w.close)
	return w, resp, nil
}

// close drops the connection and waits for the reader to stop.
func (w *wsClient) close() {
	_ = w.c.CloseNow()
	<-w.done
}

func (w *wsClient) pump() {
	defer close(w.done)
	for {
		_, b, err := w.c.Read(context.Background())
		if err != nil {
			w.err = err
			return
		}
		var m wsMsg
		if err := json.Unmarshal(b, &m); err != nil {
			w.err = fmt.Errorf("decode %q: %w", b, err)
			return
		}
		switch m.Type {
		case "ka", "pong":
			continue
		case "ping":
			_ = w.send(wsMsg{Type: "pong"})
			continue
		}
		select {
		case w.msgs <- m:
		default:
			w.err = errors.New("test client: message queue full")
			return
		}
	}
}

// connect dials and completes connection_init with payload.
func (e *env) connect(t testing.TB, proto string, initPayload map[string]any) *wsClient {
	t.Helper()
	w, _, err := e.dialWS(t, proto, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", proto, err)
	}
	if err := w.init(initPayload); err != nil {
		t.Fatalf("init: %v", err)
	}
	return w
}

func (w *wsClient) send(m wsMsg) error {
	b, _ := json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.c.Write(ctx, websocket.MessageText, b)
}

// errTimeout is read's error when nothing arrived in time.
var errTimeout = errors.New("no message in time")

// read returns the next message other than keep-alives; errTimeout when
// none came within timeout, or why the connection ended.
func (w *wsClient) read(timeout time.Duration) (wsMsg, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case m := <-w.msgs:
		return m, nil
	case <-w.done:
		select {
		case m := <-w.msgs:
			return m, nil
		default:
			return wsMsg{}, w.err
		}
	case <-timer.C:
		return wsMsg{}, errTimeout
	}
}

// init sends connection_init and waits for connection_ack.
func (w *wsClient) init(payload map[string]any) error {
	m := wsMsg{Type: "connection_init"}
	if payload != nil {
		m.Payload, _ = json.Marshal(payload)
	}
	if err := w.send(m); err != nil {
		return err
	}
	ack, err := w.read(10 * time.Second)
	if err != nil {
		return err
	}
	if ack.Type != "connection_ack" {
		return fmt.Errorf("got %s %s, want connection_ack", ack.Type, ack.Payload)
	}
	return nil
}

// subscribe starts an operation with the given id.
func (w *wsClient) subscribe(id, query string, vars map[string]any) {
	w.t.Helper()
	typ := "subscribe"
	if w.proto == legacyWS {
		typ = "start"
	}
	p, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err := w.send(wsMsg{ID: id, Type: typ, Payload: p}); err != nil {
		w.t.Fatalf("subscribe: %v", err)
	}
}

// stop ends an operation.
func (w *wsClient) stop(id string) {
	typ := "complete"
	if w.proto == legacyWS {
		typ = "stop"
	}
	_ = w.send(wsMsg{ID: id, Type: typ})
}

// next returns the next result of operation id, failing on anything else.
func (w *wsClient) next(id string) result {
	w.t.Helper()
	m, err := w.read(10 * time.Second)
	if err != nil {
		w.t.Fatalf("read %s message for %s: %v", w.proto, id, err)
	}
	if m.ID != id || (m.Type != "next" && m.Type != "data") {
		w.t.Fatalf("got %s (id %q) %s, want a result for %s", m.Type, m.ID, m.Payload, id)
	}
	var res result
	if err := json.Unmarshal(m.Payload, &res); err != nil {
		w.t.Fatalf("decode %s: %v", m.Payload, err)
	}
	return res
}
