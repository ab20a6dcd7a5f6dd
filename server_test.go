package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/eventing/embedded"
)

// inproc is the service run in this process through run(), as main does.
type inproc struct {
	url    string
	cancel context.CancelFunc
	done   chan error
}

// startInProcess runs `ordertrail serve` with args on a free port and
// waits until /readyz answers 200.
func startInProcess(t *testing.T, data string, extra ...string) *inproc {
	t.Helper()
	return startUntil(t, "/readyz", data, extra...)
}

// startUntil runs `ordertrail serve` and waits until path answers 200.
func startUntil(t *testing.T, path, data string, extra ...string) *inproc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inproc{url: "http://" + addr, cancel: cancel, done: make(chan error, 1)}
	args := append([]string{"serve", "--addr", addr, "--data", data, "--log-level", "warn"}, extra...)
	go func() { p.done <- run(ctx, args, func(string) string { return "" }, io.Discard) }()
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(p.url + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("service exited during start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("service at %s not ready after 15 s (last error %v)", p.url, err)
		}
		time.Sleep(20 * time.Millisecond) // polling another server's readiness
	}
}

func (p *inproc) stop(t *testing.T) {
	t.Helper()
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("service stopped with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("service did not stop within 20 s of its context ending")
	}
}

type gqlResult struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

func (p *inproc) post(t *testing.T, query string, vars map[string]any) gqlResult {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	resp, err := http.Post(p.url+"/graphql", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	var out gqlResult
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode response (HTTP %d): %v", resp.StatusCode, err)
	}
	return out
}

const createOrderMutation = `mutation($c: ID!, $q: Int!) {
  createOrder(input: {customerId: $c, currency: "USD", items: [{sku: "A-1", quantity: $q, unitPrice: "12.50"}]}) {
    order { id status total { amount currency } version } position } }`

// TestServeCreateQueryRestart walks the README's path in process: create,
// read through order and orders, stop gracefully, start again, and the
// order is still there.
func TestServeCreateQueryRestart(t *testing.T) {
	data := t.TempDir()
	svc := startInProcess(t, data)
	res := svc.post(t, createOrderMutation, map[string]any{"c": "c-1", "q": 2})
	if len(res.Errors) > 0 {
		t.Fatalf("createOrder: %+v", res.Errors)
	}
	var created struct {
		CreateOrder struct {
			Order struct {
				ID      string
				Status  string
				Total   struct{ Amount, Currency string }
				Version int
			}
			Position string
		}
	}
	if err := json.Unmarshal(res.Data, &created); err != nil {
		t.Fatal(err)
	}
	o := created.CreateOrder.Order
	if o.Status != "OPEN" || o.Total.Amount != "25.00" || o.Total.Currency != "USD" || o.Version != 1 {
		t.Fatalf("created order = %+v, want OPEN 25.00 USD version 1", o)
	}
	query := `query($id: ID!, $p: Position) { order(id: $id, minPosition: $p) { id customerId status items { sku quantity unitPrice } }
	  orders(first: 10) { edges { node { id } } pageInfo { hasNextPage } } }`
	check := func(svc *inproc) {
		t.Helper()
		res := svc.post(t, query, map[string]any{"id": o.ID, "p": created.CreateOrder.Position})
		if len(res.Errors) > 0 {
			t.Fatalf("query: %+v", res.Errors)
		}
		got := string(res.Data)
		for _, want := range []string{o.ID, `"customerId":"c-1"`, `"unitPrice":"12.50"`, `"quantity":2`} {
			if !strings.Contains(got, want) {
				t.Errorf("query result %s lacks %s", got, want)
			}
		}
	}
	check(svc)
	svc.stop(t)
	check(startInProcess(t, data))
}

// TestBadInputWritesNothing checks that rejected commands get a typed
// error and append no event.
func TestBadInputWritesNothing(t *testing.T) {
	data := t.TempDir()
	svc := startInProcess(t, data)
	cases := []struct {
		name, query, code string
	}{
		{"zero quantity", `mutation { createOrder(input: {customerId: "c", currency: "USD", items: [{sku: "A", quantity: 0, unitPrice: "1.00"}]}) { position } }`, "INVALID_INPUT"},
		{"negative price", `mutation { createOrder(input: {customerId: "c", currency: "USD", items: [{sku: "A", quantity: 1, unitPrice: "-1.00"}]}) { position } }`, "INVALID_INPUT"},
		{"zero price", `mutation { createOrder(input: {customerId: "c", currency: "USD", items: [{sku: "A", quantity: 1, unitPrice: "0"}]}) { position } }`, "INVALID_INPUT"},
		{"malformed decimal", `mutation { createOrder(input: {customerId: "c", currency: "USD", items: [{sku: "A", quantity: 1, unitPrice: "12.505"}]}) { position } }`, "INVALID_INPUT"},
		{"not a number", `mutation { createOrder(input: {customerId: "c", currency: "USD", items: [{sku: "A", quantity: 1, unitPrice: "1e3"}]}) { position } }`, "INVALID_INPUT"},
		{"no items", `mutation { createOrder(input: {customerId: "c", currency: "USD", items: []}) { position } }`, "INVALID_INPUT"},
		{"no customer", `mutation { createOrder(input: {customerId: "", currency: "USD", items: [{sku: "A", quantity: 1, unitPrice: "1.00"}]}) { position } }`, "INVALID_INPUT"},
		{"unknown currency", `mutation { createOrder(input: {customerId: "c", currency: "XXX", items: [{sku: "A", quantity: 1, unitPrice: "1.00"}]}) { position } }`, "INVALID_INPUT"},
		{"unknown order", `{ order(id: "6f1d2a3b-0000-4000-8000-000000000000") { id } }`, "NOT_FOUND"},
		{"malformed order ID", `{ order(id: "nope") { id } }`, "NOT_FOUND"},
		{"confirm unknown order", `mutation { confirmOrder(input: {orderId: "6f1d2a3b-0000-4000-8000-000000000000"}) { position } }`, "NOT_FOUND"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := svc.post(t, tc.query, nil)
			if len(res.Errors) == 0 {
				t.Fatalf("no error; data %s", res.Data)
			}
			if got := res.Errors[0].Extensions["code"]; got != tc.code {
				t.Errorf("extensions.code = %v, want %s (message %q)", got, tc.code, res.Errors[0].Message)
			}
			if msg := res.Errors[0].Message; msg == "" || strings.Contains(msg, "sql") || strings.Contains(msg, ".go") {
				t.Errorf("message %q is empty or leaks internals", msg)
			}
		})
	}
	res := svc.post(t, `{ projectionStatus { checkpoint } orders(first: 1) { edges { node { id } } } }`, nil)
	if want := `{"projectionStatus":{"checkpoint":"0"},"orders":{"edges":[]}}`; string(res.Data) != want {
		t.Errorf("after rejected commands: %s, want %s (nothing written)", res.Data, want)
	}
}

// TestBackupWhileWriting takes an online backup of the embedded store
// while orders are being created: the copy passes integrity_check and its
// $all is a prefix of the live one.
func TestBackupWhileWriting(t *testing.T) {
	data := t.TempDir()
	svc := startInProcess(t, data)
	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 200; i++ {
				res := svc.post(t, createOrderMutation, map[string]any{"c": fmt.Sprintf("c-%d", w), "q": i + 1})
				if len(res.Errors) > 0 {
					t.Errorf("createOrder: %+v", res.Errors)
					return
				}
			}
		}()
	}
	// Let some writes land, then back up while the writers go on.
	waitFor(t, func() bool {
		res := svc.post(t, `{ projectionStatus { checkpoint } }`, nil)
		return !strings.Contains(string(res.Data), `"checkpoint":"0"`)
	})
	out := filepath.Join(t.TempDir(), "events-backup.db")
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"backup", "--store", filepath.Join(data, "eventstore"), "--out", out}, func(string) string { return "" }, &stderr); err != nil {
		t.Fatalf("backup: %v\n%s", err, stderr.String())
	}
	stopWriters()
	wg.Wait()

	db, err := sql.Open("sqlite3", "file:"+out+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var check string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
	db.Close()

	restored := t.TempDir()
	if err := os.Rename(out, filepath.Join(restored, "events.db")); err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(context.Background(), embedded.Config{Dir: restored})
	if err != nil {
		t.Fatalf("start on restored backup: %v", err)
	}
	defer srv.Close()
	backupAll := readAllIDs(t, srv.ConnectionString())
	svc.stop(t)
	live, err := embedded.Start(context.Background(), embedded.Config{Dir: filepath.Join(data, "eventstore")})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	liveAll := readAllIDs(t, live.ConnectionString())
	if len(backupAll) == 0 || len(backupAll) > len(liveAll) {
		t.Fatalf("backup has %d events, live %d", len(backupAll), len(liveAll))
	}
	for i := range backupAll {
		if backupAll[i] != liveAll[i] {
			t.Fatalf("backup $all differs from live $all at %d: %s vs %s", i, backupAll[i], liveAll[i])
		}
	}
	t.Logf("backup holds %d of %d events", len(backupAll), len(liveAll))
}

// readAllIDs reads $all forwards and returns "position/stream/revision/id"
// of every event.
func readAllIDs(t *testing.T, conn string) []string {
	t.Helper()
	client, err := eventing.Connect(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	rs, err := client.ReadAll(context.Background(), esdb.ReadAllOptions{From: esdb.Start{}}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []string
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		e := ev.Event
		out = append(out, fmt.Sprintf("%d/%s/%d/%s", e.Position.Commit, e.StreamID, e.EventNumber, e.EventID))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(10 * time.Millisecond) // polling a server over HTTP
	}
}

// TestRunFlagsAndEnvironment checks the command line surface: unknown
// commands fail clearly, environment variables set defaults, flags win,
// and secrets can come from files.
func TestRunFlagsAndEnvironment(t *testing.T) {
	err := run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: err = %v", err)
	}
	env := map[string]string{"ORDERTRAIL_ADDR": "127.0.0.1:1", "ORDERTRAIL_READ_WAIT": "soon"}
	err = run(context.Background(), []string{"serve"}, func(k string) string { return env[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ORDERTRAIL_READ_WAIT") {
		t.Errorf("bad duration in the environment: err = %v, want one naming the variable", err)
	}
	file := filepath.Join(t.TempDir(), "conn")
	if err := os.WriteFile(file, []byte("esdb://u:p@h:2113?tls=true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := secret("@"+file, "X_FILE", func(string) string { return "" })
	if err != nil || got != "esdb://u:p@h:2113?tls=true" {
		t.Errorf("secret(@file) = %q, %v", got, err)
	}
	got, err = secret("", "X_FILE", func(k string) string { return map[string]string{"X_FILE": file}[k] })
	if err != nil || got != "esdb://u:p@h:2113?tls=true" {
		t.Errorf("secret from *_FILE = %q, %v", got, err)
	}
}

// TestPoisonEvent stores an order event that cannot be decoded: the
// projection halts there, visibly, and with --poison-policy park it parks
// the event and goes on.
func TestPoisonEvent(t *testing.T) {
	data := t.TempDir()
	store, err := embedded.Start(context.Background(), embedded.Config{Dir: filepath.Join(data, "eventstore")})
	if err != nil {
		t.Fatal(err)
	}
	client, err := eventing.Connect(store.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	poison := esdb.EventData{EventID: uuid.New(), EventType: "OrderCreated", ContentType: esdb.ContentTypeJson,
		Data: []byte(`{"orderId": 5, "customerId": [], "amount": "lots"}`)}
	wr, err := client.AppendToStream(context.Background(), "order-"+uuid.NewString(), esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, poison)
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	svc := startUntil(t, "/healthz", data)
	status := func(svc *inproc) string {
		return string(svc.post(t, `{ projectionStatus { state haltedAt deadLetters error } }`, nil).Data)
	}
	waitFor(t, func() bool { return strings.Contains(status(svc), `"state":"HALTED"`) })
	got := status(svc)
	if want := fmt.Sprintf(`"haltedAt":"%d"`, wr.CommitPosition); !strings.Contains(got, want) || !strings.Contains(got, "OrderCreated") {
		t.Errorf("halted status %s: want %s and the event type in the error", got, want)
	}
	resp, err := http.Get(svc.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz while halted = %d, want 503", resp.StatusCode)
	}
	svc.stop(t)

	svc = startInProcess(t, data, "--poison-policy", "park")
	if got := status(svc); !strings.Contains(got, `"state":"RUNNING"`) || !strings.Contains(got, `"deadLetters":1`) {
		t.Errorf("with --poison-policy park: %s, want RUNNING with 1 dead letter", got)
	}
	parked := string(svc.post(t, `{ projectionStatus { parked { position type error } } }`, nil).Data)
	if want := fmt.Sprintf(`"position":"%d","type":"OrderCreated"`, wr.CommitPosition); !strings.Contains(parked, want) {
		t.Errorf("parked events %s, want one with %s", parked, want)
	}
	res := svc.post(t, createOrderMutation, map[string]any{"c": "c-after-poison", "q": 1})
	if len(res.Errors) > 0 {
		t.Fatalf("createOrder after the poison event: %+v", res.Errors)
	}
}

// TestMetricsEndpoint reads /metrics after a created order and a rejected
// command: requests, mutations, error codes, the projection's batches and
// lag, and the live gauges are there in Prometheus' text format.
func TestMetricsEndpoint(t *testing.T) {
	svc := startInProcess(t, t.TempDir())
	res := svc.post(t, createOrderMutation, map[string]any{"c": "c-metrics", "q": 2})
	if len(res.Errors) > 0 {
		t.Fatalf("createOrder: %+v", res.Errors)
	}
	if res := svc.post(t, createOrderMutation, map[string]any{"c": "c-metrics", "q": 0}); len(res.Errors) == 0 {
		t.Fatal("createOrder with quantity 0 succeeded")
	}
	resp, err := http.Get(svc.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	// sum adds the values of a family's series whose labels include want.
	sum := func(name string, want map[string]string) (float64, bool) {
		f, ok := families[name]
		if !ok {
			return 0, false
		}
		total := 0.0
	series:
		for _, m := range f.GetMetric() {
			for k, v := range want {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				total += m.GetCounter().GetValue()
			case m.Gauge != nil:
				total += m.GetGauge().GetValue()
			case m.Histogram != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
		return total, true
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		check  func(float64) bool
		want   string
	}{
		{"ordertrail_graphql_mutations_total", map[string]string{"field": "createOrder"}, func(v float64) bool { return v == 2 }, "2 createOrder"},
		{"ordertrail_graphql_errors_total", map[string]string{"code": "INVALID_INPUT"}, func(v float64) bool { return v == 1 }, "1 INVALID_INPUT"},
		{"ordertrail_graphql_request_duration_seconds", map[string]string{"type": "mutation"}, func(v float64) bool { return v == 2 }, "2 observations"},
		{"ordertrail_projection_batch_events", nil, func(v float64) bool { return v >= 1 }, "at least one batch"},
		{"ordertrail_projection_lag_seconds", nil, func(v float64) bool { return v >= 0 && v < 60 }, "a lag under a minute"},
		{"ordertrail_live_subscribers", nil, func(v float64) bool { return v == 0 }, "0"},
		{"ordertrail_websocket_connections", nil, func(v float64) bool { return v == 0 }, "0"},
	} {
		v, ok := sum(c.name, c.labels)
		if !ok || !c.check(v) {
			t.Errorf("%s%v = %v (present %t), want %s", c.name, c.labels, v, ok, c.want)
		}
	}
}
