package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/client"
	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/graph"
)

// prod is the production configuration of the limits and policies.
var prod = graph.Options{MaxDepth: 12, MaxComplexity: 2000, MaxTokens: 10000, MaxAliases: 100}

// fastBudget bounds the time to reject an abusive operation. The target
// is tens of milliseconds; the bound leaves room for -race on a busy host.
const fastBudget = 2 * time.Second

// rejected runs query, expects it to fail before any resolver ran within
// fastBudget, and returns the response.
func (e *env) rejected(t *testing.T, query string) result {
	t.Helper()
	return e.rejectedWithin(t, query, fastBudget)
}

func (e *env) rejectedWithin(t *testing.T, query string, budget time.Duration) result {
	t.Helper()
	calls := e.readCalls.Load()
	start := time.Now()
	res := e.do(t, query, nil)
	took := time.Since(start)
	t.Logf("%d bytes rejected in %v: %v", len(query), took, res.codes())
	if len(res.Errors) == 0 {
		t.Fatalf("query of %d bytes accepted", len(query))
	}
	if n := e.readCalls.Load() - calls; n != 0 {
		t.Errorf("%d read-model calls; the operation must be rejected before execution", n)
	}
	if took > budget {
		t.Errorf("rejection took %v, want < %v", took, budget)
	}
	return res
}

// nested returns an order query that goes round customer → orders →
// edges → node cycles times: 2 + 4·cycles levels deep.
func nested(cycles int) string {
	var b strings.Builder
	b.WriteString(`{ order(id: "` + uuid.NewString() + `") { `)
	for range cycles {
		b.WriteString(`customer { orders(first: 1) { edges { node { `)
	}
	b.WriteString("id")
	return b.String() + strings.Repeat(" }", 4*cycles+2)
}

func TestDepthLimit(t *testing.T) {
	e := newEnv(t, config{opts: prod})
	res := e.rejected(t, nested(12))
	if !res.hasCode("DEPTH_LIMIT_EXCEEDED") {
		t.Errorf("errors = %+v, want DEPTH_LIMIT_EXCEEDED", res.Errors)
	}
	// The deepest query a client needs stays within the limit.
	if res := e.do(t, nested(2), nil); !res.hasCode("NOT_FOUND") || res.hasCode("DEPTH_LIMIT_EXCEEDED") {
		t.Errorf("depth 10: errors = %+v, want it executed (NOT_FOUND)", res.Errors)
	}
}

func TestAliasAndTokenLimits(t *testing.T) {
	e := newEnv(t, config{opts: prod})
	aliases := func(n int, field string) string {
		var b strings.Builder
		b.WriteString("{ ")
		for i := range n {
			fmt.Fprintf(&b, "a%d: %s ", i, field)
		}
		return b.String() + "}"
	}
	tokenLimit := func(res result) bool {
		for _, err := range res.Errors {
			if strings.Contains(err.Message, "token limit") {
				return true
			}
		}
		return false
	}
	t.Run("10000 aliases", func(t *testing.T) {
		res := e.rejected(t, aliases(10000, "__typename"))
		if !tokenLimit(res) && !res.hasCode("ALIAS_LIMIT_EXCEEDED") {
			t.Errorf("errors = %+v, want the token or alias limit", res.Errors)
		}
	})
	t.Run("101 aliases", func(t *testing.T) {
		res := e.rejected(t, aliases(101, `projectionStatus { state }`))
		if !res.hasCode("ALIAS_LIMIT_EXCEEDED") {
			t.Errorf("errors = %+v, want ALIAS_LIMIT_EXCEEDED", res.Errors)
		}
	})
	t.Run("100 aliases of orders(first: 100)", func(t *testing.T) {
		res := e.rejected(t, aliases(100, `orders(first: 100) { edges { node { id } } }`))
		if !res.hasCode("COMPLEXITY_LIMIT_EXCEEDED") {
			t.Errorf("errors = %+v, want COMPLEXITY_LIMIT_EXCEEDED", res.Errors)
		}
	})
	t.Run("100000 directives", func(t *testing.T) {
		q := "{ __typename" + strings.Repeat(" @a", 100000) + " }"
		res := e.rejected(t, q)
		if !tokenLimit(res) {
			t.Errorf("errors = %+v, want the token limit", res.Errors)
		}
	})
	t.Run("first 99999999", func(t *testing.T) {
		res := e.do(t, `{ orders(first: 99999999) { edges { node { id } } } }`, nil)
		if !res.hasCode("INVALID_INPUT") {
			t.Errorf("errors = %+v, want INVALID_INPUT", res.Errors)
		}
	})
	t.Run("50 named operations", func(t *testing.T) {
		var b strings.Builder
		for i := range 50 {
			fmt.Fprintf(&b, "query q%d { __typename } ", i)
		}
		if res := e.rejected(t, b.String()); len(res.Errors) == 0 {
			t.Error("accepted")
		}
	})
}

// TestFragmentFanOut: fragments that each spread the previous one twice
// make a document of under 1 KB, within every token, depth and alias
// limit, that expands to 2^22 fields. The limits must be checked without
// expanding it: today gqlgen's complexity walk (and the depth and alias
// walk after it) visits every expanded field, so each further fragment
// doubles the CPU time (about 0.6 s for 20, 6 s for 24, hours for 40).
func TestFragmentFanOut(t *testing.T) {
	e := newEnv(t, config{opts: prod})
	const k = 22
	var b strings.Builder
	fmt.Fprintf(&b, "query { ...F%d } fragment F0 on Query { __typename } ", k)
	for i := 1; i <= k; i++ {
		fmt.Fprintf(&b, "fragment F%d on Query { ...F%d ...F%d } ", i, i-1, i-1)
	}
	e.rejectedWithin(t, b.String(), 250*time.Millisecond)
}

// TestBatchingRejected is GQL-04: a JSON array of operations is not served.
func TestBatchingRejected(t *testing.T) {
	e := newEnv(t, config{opts: prod})
	op := map[string]any{"query": `mutation { createOrder(input: {customerId: "batch", currency: "EUR",
		items: [{sku: "A", quantity: 1, unitPrice: "1.00"}]}) { position } }`}
	ops := make([]any, 100)
	for i := range ops {
		ops[i] = op
	}
	body, _ := json.Marshal(ops)
	status, resp := e.post(t, "application/json", body, nil)
	if status < 400 || status > 499 {
		t.Errorf("array of 100 operations: status %d, want 4xx; body %s", status, resp)
	}
	if n := e.orderEvents(t); n != 0 {
		t.Errorf("%d events appended", n)
	}
}

func TestIntrospectionAndSuggestions(t *testing.T) {
	queries := []string{
		`{ __schema { types { name } } }`,
		`{ __type(name: "Order") { name fields { name } } }`,
	}
	const misspelled = `{ projectionStatus { stat } }`
	t.Run("production", func(t *testing.T) {
		e := newEnv(t, config{opts: prod})
		for _, q := range queries {
			if res := e.do(t, q, nil); len(res.Errors) == 0 {
				t.Errorf("%s answered: %s", q, res.Data)
			}
		}
		res := e.do(t, misspelled, nil)
		if len(res.Errors) == 0 {
			t.Fatal("misspelled field accepted")
		}
		for _, err := range res.Errors {
			if strings.Contains(err.Message, "Did you mean") {
				t.Errorf("suggestion leaked: %q", err.Message)
			}
		}
	})
	t.Run("development", func(t *testing.T) {
		opts := prod
		opts.Introspection, opts.Suggestions = true, true
		e := newEnv(t, config{opts: opts})
		for _, q := range queries {
			if res := e.do(t, q, nil); len(res.Errors) > 0 {
				t.Errorf("%s: %+v", q, res.Errors)
			}
		}
		res := e.do(t, misspelled, nil)
		if len(res.Errors) == 0 || !strings.Contains(res.Errors[0].Message, "Did you mean") {
			t.Errorf("errors = %+v, want a suggestion", res.Errors)
		}
	})
}

// TestCSRF is GQL-07: a mutation in any request a cross-site form or a
// simple request can make is refused, and nothing is written.
func TestCSRF(t *testing.T) {
	e := newEnv(t, config{opts: prod})
	const mutation = `mutation { createOrder(input: {customerId: "csrf", currency: "EUR", items: [{sku: "A", quantity: 1, unitPrice: "1.00"}]}) { position } }`
	jsonBody, _ := json.Marshal(map[string]string{"query": mutation})
	var multi bytes.Buffer
	mw := multipart.NewWriter(&multi)
	_ = mw.WriteField("operations", string(jsonBody))
	_ = mw.WriteField("map", "{}")
	_ = mw.Close()
	form := url.Values{"query": {mutation}}.Encode()

	cases := []struct {
		name        string
		method      string
		contentType string
		body        []byte
		query       string
	}{
		{"POST text/plain", http.MethodPost, "text/plain", jsonBody, ""},
		{"POST text/plain;charset", http.MethodPost, "text/plain;charset=UTF-8", jsonBody, ""},
		{"POST form-urlencoded", http.MethodPost, "application/x-www-form-urlencoded", []byte(form), ""},
		{"POST multipart", http.MethodPost, mw.FormDataContentType(), multi.Bytes(), ""},
		{"POST no content type", http.MethodPost, "", jsonBody, ""},
		{"GET mutation", http.MethodGet, "", nil, "?query=" + url.QueryEscape(mutation)},
		{"GET mutation by operationName", http.MethodGet, "", nil, "?operationName=m&query=" +
			url.QueryEscape("query q { __typename } "+strings.Replace(mutation, "mutation", "mutation m", 1))},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			before := e.orderEvents(t)
			req, err := http.NewRequestWithContext(t.Context(), tt.method, e.srv.URL+tt.query, bytes.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			} else if tt.method == http.MethodPost {
				req.Header["Content-Type"] = nil
			}
			status, body := send(t, req)
			if status < 400 || status > 499 {
				t.Errorf("status %d, want 4xx; body %s", status, body)
			}
			if tt.method == http.MethodGet && status != http.StatusNotAcceptable {
				t.Errorf("GET mutation: status %d, want 406", status)
			}
			if after := e.orderEvents(t); after != before {
				t.Errorf("%d events appended", after-before)
			}
		})
	}
	// GET serves queries; the same mutation as JSON is served: the matrix
	// tests the transport.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+"?query="+url.QueryEscape("{ __typename }"), nil)
	if status, body := send(t, req); status != http.StatusOK {
		t.Errorf("GET query: status %d %s", status, body)
	}
	status, res := e.postJSON(t, mutation, nil, nil)
	if status != http.StatusOK || len(res.Errors) > 0 || e.orderEvents(t) != 1 {
		t.Errorf("JSON POST: status %d, errors %+v, %d events", status, res.Errors, e.orderEvents(t))
	}
}

// TestWebsocketOrigin is GQL-08.
func TestWebsocketOrigin(t *testing.T) {
	opts := prod
	opts.AllowedOrigins = []string{"app.example.com"}
	e := newEnv(t, config{opts: opts})
	for _, tt := range []struct {
		origin string
		status int
	}{
		{"https://evil.example", http.StatusForbidden},
		{"https://app.example.com.evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
		{"https://app.example.com", http.StatusSwitchingProtocols},
		{"", http.StatusSwitchingProtocols}, // not a browser
		{e.srv.URL, http.StatusSwitchingProtocols},
	} {
		t.Run(tt.origin, func(t *testing.T) {
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			w, resp, err := e.dialWS(t, transportWS, h)
			if resp == nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%v), want %d", resp.StatusCode, err, tt.status)
			}
			if w != nil {
				if err := w.init(nil); err != nil {
					t.Errorf("init: %v", err)
				}
			}
		})
	}
	t.Run("same origin only by default", func(t *testing.T) {
		e := newEnv(t, config{opts: prod})
		if _, resp, _ := e.dialWS(t, transportWS, http.Header{"Origin": {"https://evil.example"}}); resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("foreign origin: response %v, want 403", resp)
		}
		if _, resp, err := e.dialWS(t, transportWS, http.Header{"Origin": {e.srv.URL}}); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("same origin: %v", err)
		}
	})
}

// TestAuth checks bearer tokens: mutations and subscriptions need one,
// queries stay open.
func TestAuth(t *testing.T) {
	opts := prod
	opts.Tokens = []string{"s3cret", "other"}
	e := newEnv(t, config{opts: opts})
	in := map[string]any{"customerId": "auth", "currency": "EUR", "items": []map[string]any{{"sku": "A", "quantity": 1, "unitPrice": "1.00"}}}
	for _, tt := range []struct {
		name   string
		header string
	}{
		{"no token", ""},
		{"wrong token", "Bearer nope"},
		{"empty bearer", "Bearer "},
		{"token without scheme", "s3cret"},
		{"basic scheme", "Basic s3cret"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var opts []client.Option
			if tt.header != "" {
				opts = append(opts, client.AddHeader("Authorization", tt.header))
			}
			res := e.mutateRes(t, "createOrder", in, opts...)
			if len(res.Errors) != 1 || res.Errors[0].code() != "UNAUTHENTICATED" {
				t.Errorf("errors = %+v, want UNAUTHENTICATED", res.Errors)
			}
			if n := e.orderEvents(t); n != 0 {
				t.Errorf("%d events appended", n)
			}
		})
	}
	res := e.mutateRes(t, "createOrder", in, client.AddHeader("Authorization", "Bearer s3cret"))
	if len(res.Errors) > 0 {
		t.Fatalf("with the token: %+v", res.Errors)
	}
	var out struct{ CreateOrder payload }
	res.decode(t, &out)
	if e.orderEvents(t) != 1 {
		t.Errorf("with the token: %d events, want 1", e.orderEvents(t))
	}
	var q struct{ Order struct{ ID string } }
	e.mustDo(t, `query($id: ID!) { order(id: $id) { id } }`, map[string]any{"id": out.CreateOrder.Order.ID}, &q)
	if q.Order.ID != out.CreateOrder.Order.ID {
		t.Errorf("query without a token: %+v", q)
	}

	for _, proto := range protocols {
		t.Run("websocket/"+proto, func(t *testing.T) {
			for _, bad := range []map[string]any{nil, {"Authorization": "Bearer nope"}, {"token": ""}} {
				w, _, err := e.dialWS(t, proto, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := w.init(bad); err == nil {
					t.Errorf("init %v: acknowledged", bad)
				}
				// Nothing may be served on the socket after the refusal.
				p, _ := json.Marshal(map[string]any{"query": changeSub, "variables": map[string]any{"from": "0"}})
				_ = w.send(wsMsg{ID: "1", Type: map[string]string{transportWS: "subscribe", legacyWS: "start"}[proto], Payload: p})
				for {
					m, err := w.read(10 * time.Second)
					if err != nil {
						if errors.Is(err, errTimeout) {
							t.Errorf("init %v: socket still open", bad)
						} else if code := websocket.CloseStatus(err); code != 4403 {
							t.Errorf("init %v: closed with %d (%v), want 4403", bad, code, err)
						}
						break
					}
					if m.Type == "next" || m.Type == "data" {
						t.Errorf("init %v: served %s", bad, m.Payload)
					}
				}
			}
			for _, good := range []map[string]any{{"Authorization": "Bearer s3cret"}, {"token": "other"}, {"authorization": "bearer s3cret"}} {
				w := e.connect(t, proto, good)
				w.subscribe("1", changeSub, map[string]any{"from": "0"})
				if c := w.nextChange("1"); c.Order.ID != out.CreateOrder.Order.ID {
					t.Errorf("init %v: change = %+v", good, c)
				}
			}
		})
	}
}

// TestInitTimeout closes a socket that never sends connection_init,
// within the bound, and for graphql-transport-ws with the code its spec
// gives that case: 4408 Connection initialisation timeout.
func TestInitTimeout(t *testing.T) {
	opts := prod
	opts.InitTimeout = 200 * time.Millisecond
	e := newEnv(t, config{opts: opts})
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			w, _, err := e.dialWS(t, proto, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for {
				_, err := w.read(10 * time.Second)
				if errors.Is(err, errTimeout) {
					t.Fatal("socket still open 10s after the init timeout")
				}
				if err == nil {
					continue
				}
				took, code := time.Since(start), websocket.CloseStatus(err)
				t.Logf("closed after %v with status %d: %v", took, code, err)
				if took > opts.InitTimeout+fastBudget {
					t.Errorf("closed after %v, want about %v", took, opts.InitTimeout)
				}
				if proto == transportWS && code != 4408 {
					t.Errorf("close status %d, want 4408", code)
				}
				break
			}
		})
	}
}

// panicHistory is an event history that panics, to test the recovery.
type panicHistory struct{ next graph.History }

func (panicHistory) History(context.Context, string) ([]eventing.Envelope, error) {
	panic("history exploded at /srv/ordertrail/eventing/history.go:42")
}

func (p panicHistory) StateAt(ctx context.Context, orderID string, revision *uint64, asOf *time.Time) (*domain.Order, error) {
	return p.next.StateAt(ctx, orderID, revision, asOf)
}

func (p panicHistory) Events(ctx context.Context, orderID string, from, count uint64) ([]eventing.Envelope, error) {
	return p.next.Events(ctx, orderID, from, count)
}

// TestPanicMasking is the other half of GQL-12: a panicking resolver
// yields the generic error, the rest of the response and the server live on.
func TestPanicMasking(t *testing.T) {
	e := newEnv(t, config{opts: prod, deps: func(d *graph.Deps) { d.Events = panicHistory{d.Events} }})
	id := e.createOrder(t, "cust-panic").Order.ID
	status, res := e.postJSON(t, `query($id: ID!) { order(id: $id) { id history { type } } }`, map[string]any{"id": id},
		http.Header{"X-Request-Id": {"req-p1"}})
	if status != http.StatusOK || len(res.Errors) != 1 {
		t.Fatalf("status %d, errors %+v", status, res.Errors)
	}
	err := res.Errors[0]
	if err.Message != "internal server error" || err.code() != "INTERNAL" || err.Extensions["requestId"] != "req-p1" {
		t.Errorf("error = %+v", err)
	}
	raw, _ := json.Marshal(res)
	for _, leak := range []string{"exploded", "history.go", "goroutine", "panic"} {
		if strings.Contains(string(raw), leak) {
			t.Errorf("response leaks %q: %s", leak, raw)
		}
	}
	var q struct{ Order struct{ ID string } }
	e.mustDo(t, `query($id: ID!) { order(id: $id) { id } }`, map[string]any{"id": id}, &q)
	if q.Order.ID != id {
		t.Errorf("after the panic: order = %+v", q.Order)
	}
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestErrorMasking is GQL-12: an internal failure (here a closed read
// model) reaches the client as a generic error with a request ID, and the
// details only reach the log.
func TestErrorMasking(t *testing.T) {
	var logs lockedBuffer
	e := newEnv(t, config{opts: prod, logger: slog.New(slog.NewTextHandler(&logs, nil))})
	id := e.createOrder(t, "cust-mask").Order.ID
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`{ orders { edges { node { id } } } }`,
		`{ order(id: "` + id + `") { id } }`,
		`{ customer(id: "cust-mask") { id } }`,
		`{ projectionStatus { state } }`,
	} {
		reqID := "req-" + uuid.NewString()[:8]
		status, res := e.postJSON(t, q, nil, http.Header{"X-Request-Id": {reqID}})
		if status != http.StatusOK || len(res.Errors) != 1 {
			t.Errorf("%s: status %d, errors %+v", q, status, res.Errors)
			continue
		}
		err := res.Errors[0]
		if err.Message != "internal server error" || err.code() != "INTERNAL" || err.Extensions["requestId"] != reqID {
			t.Errorf("%s: error = %+v, want the generic one with code INTERNAL and requestId %s", q, err, reqID)
		}
		raw, _ := json.Marshal(res.Errors)
		for _, leak := range []string{"sql", "SELECT", "database", "readstore", ".go", "/tmp", "closed"} {
			if strings.Contains(string(raw), leak) {
				t.Errorf("%s: response leaks %q: %s", q, leak, raw)
			}
		}
		if !strings.Contains(logs.String(), reqID) {
			t.Errorf("%s: no log line names request %s", q, reqID)
		}
	}
	// The server keeps serving what does not need the read model.
	if status, res := e.postJSON(t, `{ __typename }`, nil, nil); status != http.StatusOK || len(res.Errors) > 0 {
		t.Errorf("after the failures: status %d, errors %+v", status, res.Errors)
	}
}
