package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// TestReplicas runs one standalone event store and two API replicas on it,
// each with its own read model, as separate processes, and checks what
// replicas promise each other: read-your-writes across replicas, live
// changes on a replica that did not take the write, catch-up after kill -9,
// idempotent command retries racing across replicas, and a bounded,
// recoverable failure when the store goes away.
func TestReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("replicas: builds the binary and runs three processes; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bin := serviceBinary(t)
	tmp := t.TempDir()
	storeAddr := repStablePort(t)
	conn := "esdb://" + storeAddr + "?tls=false"
	store := repStart(t, bin, "store", storeAddr, "eventstore", "--addr", storeAddr, "--data", filepath.Join(tmp, "store"))
	a := repStart(t, bin, "A", freeAddr(t), "serve", "--data", filepath.Join(tmp, "a"), "--eventstore", conn)
	b := repStart(t, bin, "B", freeAddr(t), "serve", "--data", filepath.Join(tmp, "b"), "--eventstore", conn)

	customer := "c-replicas-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var created []string // IDs of every order created, in order
	var last uint64      // highest position returned by a mutation

	// The subscriber on B replays from position 0, so it cannot miss the
	// order whether it registers before or after the write on A.
	sub := repSubscribe(ctx, t, b.url, map[string]any{"customerId": customer, "fromPosition": "0"})
	first := repCreateOrder(ctx, t, a, customer, "S-0")
	created, last = append(created, first.id), first.position

	t.Run("ReadYourWritesAcrossReplicas", func(t *testing.T) {
		var got struct {
			Order *struct{ ID, CustomerID, Status string }
		}
		b.mustDo(ctx, t, `query($id: ID!, $p: Position) { order(id: $id, minPosition: $p) { id customerId status } }`,
			map[string]any{"id": first.id, "p": repPos(first.position)}, &got)
		if got.Order == nil || got.Order.ID != first.id || got.Order.CustomerID != customer || got.Order.Status != "OPEN" {
			t.Errorf("B: order(id: %s, minPosition: %d) = %+v, want the OPEN order of %s created on A", first.id, first.position, got.Order, customer)
		}
	})

	t.Run("SubscriptionOnOtherReplica", func(t *testing.T) {
		c := sub.next(ctx, t, 10*time.Second)
		if c.Order.ID != first.id || c.EventType != "OrderCreated" || c.Position != repPos(first.position) {
			t.Errorf("B: first orderChanged = %+v, want %s OrderCreated at %d", c, first.id, first.position)
		}
	})

	t.Run("SameCommandRacingAcrossReplicas", func(t *testing.T) {
		const perReplica = 10
		type outcome struct {
			replica  string
			position string
			errs     []repGQLError
			err      error
		}
		results := make(chan outcome, 2*perReplica)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, p := range []*repProc{a, b} {
			for range perReplica {
				wg.Go(func() {
					<-start
					res, err := p.do(ctx, `mutation($id: ID!) { confirmOrder(input: {orderId: $id, commandId: "x"}) { position } }`,
						map[string]any{"id": first.id})
					o := outcome{replica: p.name, err: err, errs: res.Errors}
					var data struct{ ConfirmOrder *struct{ Position string } }
					if err == nil && json.Unmarshal(res.Data, &data) == nil && data.ConfirmOrder != nil {
						o.position = data.ConfirmOrder.Position
					}
					results <- o
				})
			}
		}
		close(start)
		wg.Wait()
		close(results)
		positions := map[string]int{}
		for o := range results {
			if o.err != nil || len(o.errs) > 0 || o.position == "" {
				t.Errorf("%s: confirmOrder(commandId: x) = position %q, errors %v %v; want success", o.replica, o.position, o.err, o.errs)
				continue
			}
			positions[o.position]++
		}
		if len(positions) != 1 {
			t.Errorf("confirmOrder retries returned positions %v, want one position for all %d", positions, 2*perReplica)
		}
		var confirmedAt uint64
		for p := range positions {
			confirmedAt = max(confirmedAt, repParsePos(t, p))
		}
		last = max(last, confirmedAt)
		for _, p := range []*repProc{a, b} {
			var got struct {
				Order *struct {
					Status  string
					History []struct{ Type, CommandID string }
				}
			}
			p.mustDo(ctx, t, `query($id: ID!, $p: Position) { order(id: $id, minPosition: $p) { status history { type commandId } } }`,
				map[string]any{"id": first.id, "p": repPos(confirmedAt)}, &got)
			if got.Order == nil {
				t.Fatalf("%s: order %s is null", p.name, first.id)
			}
			n := 0
			for _, e := range got.Order.History {
				if e.Type == "OrderConfirmed" {
					n++
				}
			}
			if n != 1 || got.Order.Status != "CONFIRMED" {
				t.Errorf("%s: order %s is %s with history %+v, want CONFIRMED with exactly one OrderConfirmed", p.name, first.id, got.Order.Status, got.Order.History)
			}
		}
		// The subscriber sees the confirmation once: the next change after
		// it must be the payment below, not a second OrderConfirmed.
		if c := sub.next(ctx, t, 10*time.Second); c.Order.ID != first.id || c.EventType != "OrderConfirmed" {
			t.Errorf("B: second orderChanged = %+v, want %s OrderConfirmed", c, first.id)
		}
		var paid struct{ MarkOrderPaid struct{ Position string } }
		a.mustDo(ctx, t, `mutation($id: ID!) { markOrderPaid(input: {orderId: $id, amount: "2.50"}) { position } }`,
			map[string]any{"id": first.id}, &paid)
		last = max(last, repParsePos(t, paid.MarkOrderPaid.Position))
		if c := sub.next(ctx, t, 10*time.Second); c.Order.ID != first.id || c.EventType != "OrderPaid" {
			t.Errorf("B: third orderChanged = %+v, want %s OrderPaid (a duplicate OrderConfirmed would show here)", c, first.id)
		}
	})
	sub.close()

	t.Run("DifferentCommandsRacingAcrossReplicas", func(t *testing.T) {
		o := repCreateOrder(ctx, t, a, customer, "S-0")
		created, last = append(created, o.id), max(last, o.position)
		var wg sync.WaitGroup
		positions := make([]uint64, 2)
		for i, p := range []*repProc{a, b} {
			wg.Go(func() {
				var got struct{ AddOrderItem struct{ Position string } }
				if err := p.doInto(ctx, `mutation($id: ID!, $sku: String!) {
					addOrderItem(input: {orderId: $id, item: {sku: $sku, quantity: 1, unitPrice: "1.00"}}) { position } }`,
					map[string]any{"id": o.id, "sku": "S-" + p.name}, &got); err != nil {
					t.Errorf("%s: addOrderItem(S-%s): %v", p.name, p.name, err)
					return
				}
				n, err := strconv.ParseUint(got.AddOrderItem.Position, 10, 64)
				if err != nil {
					t.Errorf("%s: addOrderItem position %q: %v", p.name, got.AddOrderItem.Position, err)
				}
				positions[i] = n
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if positions[0] == positions[1] {
			t.Errorf("both addOrderItem calls returned position %d, want two appends", positions[0])
		}
		at := slices.Max(positions)
		last = max(last, at)
		for _, p := range []*repProc{a, b} {
			var got struct {
				Order *struct {
					Version int
					Items   []struct{ SKU string }
				}
			}
			p.mustDo(ctx, t, `query($id: ID!, $p: Position) { order(id: $id, minPosition: $p) { version items { sku } } }`,
				map[string]any{"id": o.id, "p": repPos(at)}, &got)
			if got.Order == nil {
				t.Fatalf("%s: order %s is null", p.name, o.id)
			}
			var skus []string
			for _, it := range got.Order.Items {
				skus = append(skus, it.SKU)
			}
			slices.Sort(skus)
			if got.Order.Version != 3 || !slices.Equal(skus, []string{"S-0", "S-A", "S-B"}) {
				t.Errorf("%s: order %s has version %d, items %v; want version 3, items [S-0 S-A S-B]", p.name, o.id, got.Order.Version, skus)
			}
		}
	})

	t.Run("KilledReplicaCatchesUp", func(t *testing.T) {
		before := repProjectionStatus(ctx, t, b, last)
		// B is killed while A keeps writing, so it dies with events in
		// flight on its subscription.
		killed := make(chan struct{})
		for i := range 50 {
			o := repCreateOrder(ctx, t, a, customer, fmt.Sprintf("K-%d", i))
			created, last = append(created, o.id), max(last, o.position)
			if i == 10 {
				go func() { defer close(killed); b.kill(t) }()
			}
		}
		<-killed
		b.restart(t)
		// The checkpoint was committed with the rows, so it survived kill -9
		// and B resumes from it rather than from the start.
		if after := repProjectionStatus(ctx, t, b, 0); after.checkpoint < before.checkpoint {
			t.Errorf("B after kill -9: checkpoint %d, want at least %d (its checkpoint before the kill)", after.checkpoint, before.checkpoint)
		}
		idsA, idsB := repListOrders(ctx, t, a, customer, last), repListOrders(ctx, t, b, customer, last)
		for _, l := range []struct {
			name string
			ids  []string
		}{{"A", idsA}, {"B", idsB}} {
			if dup := repDuplicates(l.ids); len(dup) > 0 {
				t.Errorf("%s: orders lists %v more than once", l.name, dup)
			}
		}
		want := slices.Sorted(slices.Values(created))
		if !slices.Equal(idsA, want) {
			t.Errorf("A: orders of %s = %d IDs, want the %d created\ngot:  %v\nwant: %v", customer, len(idsA), len(want), idsA, want)
		}
		if !slices.Equal(idsB, idsA) {
			t.Errorf("B: orders of %s differ from A's (%d vs %d IDs)\nB: %v\nA: %v", customer, len(idsB), len(idsA), idsB, idsA)
		}
		sa, sb := repProjectionStatus(ctx, t, a, last), repProjectionStatus(ctx, t, b, last)
		if sa.checkpoint != sb.checkpoint || sa.checkpoint < last {
			t.Errorf("projectionStatus after waiting for %d: A checkpoint %d, B checkpoint %d; want equal and ≥ %d", last, sa.checkpoint, sb.checkpoint, last)
		}
	})

	t.Run("StoreFailure", func(t *testing.T) {
		store.kill(t)
		start := time.Now()
		res, err := a.do(ctx, `mutation($c: ID!) { createOrder(input: {customerId: $c, currency: "USD",
			items: [{sku: "F-1", quantity: 1, unitPrice: "1.00"}]}) { order { id } position } }`, map[string]any{"c": customer})
		took := time.Since(start)
		switch {
		case err != nil:
			t.Errorf("A with the store down: createOrder did not answer within the client's timeout (%v): %v", took.Round(time.Millisecond), err)
		case len(res.Errors) == 0 || res.Errors[0].Extensions.Code != "UNAVAILABLE":
			t.Errorf("A with the store down: createOrder = data %s, errors %+v after %v; want an error with extensions.code UNAVAILABLE",
				res.Data, res.Errors, took.Round(time.Millisecond))
		default:
			t.Logf("A with the store down: createOrder failed with UNAVAILABLE after %v", took.Round(time.Millisecond))
		}
		if code := repWaitReady(ctx, a, http.StatusServiceUnavailable, 10*time.Second); code != http.StatusServiceUnavailable {
			t.Errorf("A with the store down: GET /readyz = %d, want 503", code)
		}

		store.restart(t)
		deadline := time.Now().Add(20 * time.Second)
		var lastErr string
		for {
			res, err := a.do(ctx, `mutation($c: ID!) { createOrder(input: {customerId: $c, currency: "USD",
				items: [{sku: "F-2", quantity: 1, unitPrice: "1.00"}]}) { order { id } position } }`, map[string]any{"c": customer})
			if err == nil && len(res.Errors) == 0 {
				break
			}
			lastErr = fmt.Sprintf("%v %+v", err, res.Errors)
			if time.Now().After(deadline) {
				t.Fatalf("A after the store restarted: createOrder still fails 20s later: %s", lastErr)
			}
			if !repSleep(ctx, 200*time.Millisecond) {
				t.Fatal(ctx.Err())
			}
		}
		if code := repWaitReady(ctx, a, http.StatusOK, 20*time.Second); code != http.StatusOK {
			t.Errorf("A after the store restarted: GET /readyz = %d for 20s, want 200 eventually", code)
		}
	})
}

// repProc is one process of the binary: an API replica or the
// standalone store. It can be killed with SIGKILL and restarted with the
// same arguments, address and data.
type repProc struct {
	name   string
	bin    string
	args   []string
	addr   string
	url    string
	store  bool // a standalone event store: ready when its port accepts
	cmd    *exec.Cmd
	exited chan struct{}
	log    *procLog
}

// repStart runs `bin args… --addr addr` and waits until it is up: an
// API when /healthz answers, a store when its port accepts connections.
// The process is killed when the test ends; its log is printed if the test
// failed.
func repStart(t *testing.T, bin, name, addr string, args ...string) *repProc {
	t.Helper()
	if !slices.Contains(args, "--addr") {
		args = append(args, "--addr", addr)
	}
	p := &repProc{
		name: name, bin: bin, args: args, addr: addr, url: "http://" + addr,
		store: len(args) > 0 && args[0] == "eventstore", log: new(procLog),
	}
	p.launch(t)
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("log of %s (%s):\n%s", p.name, p.addr, p.log.lastBytes(16<<10))
		}
	})
	return p
}

func (p *repProc) launch(t *testing.T) {
	t.Helper()
	fmt.Fprintf(p.log, "---- start %s %s\n", p.bin, strings.Join(p.args, " "))
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", p.name, err)
	}
	exited := make(chan struct{})
	p.exited = exited
	go func(cmd *exec.Cmd) {
		_ = cmd.Wait()
		close(exited)
	}(p.cmd)

	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if p.store {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", p.addr, time.Second); err == nil {
				c.Close()
				return
			}
		} else {
			var resp *http.Response
			if resp, err = http.Get(p.url + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
		}
		select {
		case <-exited:
			t.Fatalf("%s exited (%v) before it was up:\n%s", p.name, p.cmd.ProcessState, p.log.lastBytes(8<<10))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not up within 30s (last error: %v):\n%s", p.name, err, p.log.lastBytes(8<<10))
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *repProc) kill(t *testing.T) {
	t.Helper()
	fmt.Fprintf(p.log, "---- kill -9\n")
	p.stop()
}

func (p *repProc) stop() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// restart starts the process again with the same arguments, address and
// data directory.
func (p *repProc) restart(t *testing.T) {
	t.Helper()
	p.stop()
	p.launch(t)
}

// repGQLError is one entry of a GraphQL response's errors.
type repGQLError struct {
	Message    string
	Path       []any
	Extensions struct{ Code string }
}

func (e repGQLError) String() string {
	return fmt.Sprintf("%s (%s) at %v", e.Message, e.Extensions.Code, e.Path)
}

// repResponse is a GraphQL response over HTTP.
type repResponse struct {
	Status int `json:"-"`
	Data   json.RawMessage
	Errors []repGQLError
}

// repHTTP is the client for every request to a replica; its timeout bounds
// how long any call may hang.
var repHTTP = &http.Client{Timeout: 15 * time.Second}

// do POSTs an operation; err is set only when no GraphQL response came back.
func (p *repProc) do(ctx context.Context, query string, vars map[string]any) (repResponse, error) {
	return repPost(ctx, p.url, query, vars)
}

func repPost(ctx context.Context, baseURL, query string, vars map[string]any) (repResponse, error) {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return repResponse{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/graphql", bytes.NewReader(body))
	if err != nil {
		return repResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := repHTTP.Do(req)
	if err != nil {
		return repResponse{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return repResponse{}, err
	}
	r := repResponse{Status: resp.StatusCode}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fmt.Errorf("HTTP %d, body %.300q: %w", resp.StatusCode, raw, err)
	}
	return r, nil
}

// doInto runs an operation that must succeed and decodes its data into out.
func (p *repProc) doInto(ctx context.Context, query string, vars map[string]any, out any) error {
	res, err := p.do(ctx, query, vars)
	if err != nil {
		return err
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("HTTP %d, errors %v", res.Status, res.Errors)
	}
	if err := json.Unmarshal(res.Data, out); err != nil {
		return fmt.Errorf("data %s: %w", res.Data, err)
	}
	return nil
}

// mustDo is doInto that fails the test.
func (p *repProc) mustDo(ctx context.Context, t *testing.T, query string, vars map[string]any, out any) {
	t.Helper()
	if err := p.doInto(ctx, query, vars, out); err != nil {
		t.Fatalf("%s: %s: %v", p.name, strings.Join(strings.Fields(query), " "), err)
	}
}

// repCreated is what createOrder returned.
type repCreated struct {
	id       string
	position uint64
}

// repCreateOrder creates an order for customer with one item worth 2.50 and
// checks that the mutation returned the order and its position.
func repCreateOrder(ctx context.Context, t *testing.T, p *repProc, customer, sku string) repCreated {
	t.Helper()
	var got struct {
		CreateOrder struct {
			Order    *struct{ ID string }
			Position string
		}
	}
	p.mustDo(ctx, t, `mutation($c: ID!, $sku: String!) { createOrder(input: {customerId: $c, currency: "USD",
		items: [{sku: $sku, quantity: 1, unitPrice: "2.50"}]}) { order { id } position } }`,
		map[string]any{"c": customer, "sku": sku}, &got)
	if got.CreateOrder.Order == nil {
		t.Fatalf("%s: createOrder returned no order (position %q)", p.name, got.CreateOrder.Position)
	}
	return repCreated{id: got.CreateOrder.Order.ID, position: repParsePos(t, got.CreateOrder.Position)}
}

// repListOrders returns the sorted IDs of customer's orders, page by page,
// once the replica has caught up to minPosition.
func repListOrders(ctx context.Context, t *testing.T, p *repProc, customer string, minPosition uint64) []string {
	t.Helper()
	var ids []string
	var after *string
	for {
		var got struct {
			Orders struct {
				Edges    []struct{ Node struct{ ID string } }
				PageInfo struct {
					HasNextPage bool
					EndCursor   *string
				}
			}
		}
		p.mustDo(ctx, t, `query($c: ID!, $after: String, $p: Position) {
			orders(first: 100, after: $after, filter: {customerId: $c}, orderBy: CREATED_AT_ASC, minPosition: $p) {
				edges { node { id } } pageInfo { hasNextPage endCursor } } }`,
			map[string]any{"c": customer, "after": after, "p": repPos(minPosition)}, &got)
		for _, e := range got.Orders.Edges {
			ids = append(ids, e.Node.ID)
		}
		if !got.Orders.PageInfo.HasNextPage || got.Orders.PageInfo.EndCursor == nil || len(ids) > 10000 {
			break
		}
		after = got.Orders.PageInfo.EndCursor
	}
	slices.Sort(ids)
	return ids
}

// repDuplicates returns the values that occur more than once in sorted ids.
func repDuplicates(ids []string) []string {
	var dup []string
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] && (len(dup) == 0 || dup[len(dup)-1] != ids[i]) {
			dup = append(dup, ids[i])
		}
	}
	return dup
}

type repStatus struct {
	checkpoint uint64
	state      string
}

// repProjectionStatus reads the replica's projection status after a query
// that waits for minPosition (0: no wait).
func repProjectionStatus(ctx context.Context, t *testing.T, p *repProc, minPosition uint64) repStatus {
	t.Helper()
	if minPosition > 0 {
		var w struct{ Orders struct{ Edges []struct{} } }
		p.mustDo(ctx, t, `query($p: Position) { orders(first: 1, minPosition: $p) { edges { cursor } } }`,
			map[string]any{"p": repPos(minPosition)}, &w)
	}
	var got struct {
		ProjectionStatus struct {
			State      string
			Checkpoint string
		}
	}
	p.mustDo(ctx, t, `{ projectionStatus { state checkpoint } }`, nil, &got)
	if got.ProjectionStatus.State != "RUNNING" {
		t.Errorf("%s: projectionStatus.state = %s, want RUNNING", p.name, got.ProjectionStatus.State)
	}
	return repStatus{checkpoint: repParsePos(t, got.ProjectionStatus.Checkpoint), state: got.ProjectionStatus.State}
}

// repWaitReady polls /readyz until it answers want or the wait is over, and
// returns the last status code (0 if it never answered).
func repWaitReady(ctx context.Context, p *repProc, want int, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	code := 0
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/readyz", nil)
		if resp, err := repHTTP.Do(req); err == nil {
			code = resp.StatusCode
			resp.Body.Close()
		}
		if code == want || time.Now().After(deadline) || !repSleep(ctx, 100*time.Millisecond) {
			return code
		}
	}
}

func repSleep(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

func repParsePos(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("position %q: want a positive decimal (%v)", s, err)
	}
	return n
}

func repPos(p uint64) string { return strconv.FormatUint(p, 10) }

// repChange is one orderChanged event as the tests select it.
type repChange struct {
	Order     struct{ ID string }
	EventType string
	Position  string
}

// repSubscription is an orderChanged subscription over
// graphql-transport-ws.
type repSubscription struct {
	conn    *websocket.Conn
	cancel  context.CancelFunc
	changes chan repChange
	done    chan struct{} // closed when the reader stops
	err     error         // why the reader stopped; read after done
}

// repSubscribe opens a websocket to baseURL, completes the
// graphql-transport-ws handshake and subscribes to orderChanged with vars
// (orderId, customerId, fromPosition).
func repSubscribe(ctx context.Context, t *testing.T, baseURL string, vars map[string]any) *repSubscription {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	dialCtx, dialCancel := context.WithTimeout(ctx, 10*time.Second)
	defer dialCancel()
	conn, _, err := websocket.Dial(dialCtx, "ws"+strings.TrimPrefix(baseURL, "http")+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		cancel()
		t.Fatalf("websocket %s/graphql: %v", baseURL, err)
	}
	if conn.Subprotocol() != "graphql-transport-ws" {
		t.Fatalf("websocket subprotocol = %q, want graphql-transport-ws", conn.Subprotocol())
	}
	s := &repSubscription{conn: conn, cancel: cancel, changes: make(chan repChange, 256), done: make(chan struct{})}
	t.Cleanup(s.close)
	if err := wsjson.Write(dialCtx, conn, map[string]any{"type": "connection_init", "payload": map[string]any{}}); err != nil {
		t.Fatalf("connection_init: %v", err)
	}
	var ack struct{ Type string }
	if err := wsjson.Read(dialCtx, conn, &ack); err != nil || ack.Type != "connection_ack" {
		t.Fatalf("after connection_init: got %q (%v), want connection_ack", ack.Type, err)
	}
	if err := wsjson.Write(dialCtx, conn, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query": `subscription($o: ID, $c: ID, $f: Position) { orderChanged(orderId: $o, customerId: $c, fromPosition: $f) {
			order { id } eventType position } }`,
		"variables": map[string]any{"o": vars["orderId"], "c": vars["customerId"], "f": vars["fromPosition"]},
	}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	go s.read(ctx)
	return s
}

func (s *repSubscription) read(ctx context.Context) {
	defer close(s.done)
	for {
		var msg struct {
			Type    string
			Payload json.RawMessage
		}
		if err := wsjson.Read(ctx, s.conn, &msg); err != nil {
			s.err = err
			return
		}
		switch msg.Type {
		case "ping":
			if err := wsjson.Write(ctx, s.conn, map[string]string{"type": "pong"}); err != nil {
				s.err = err
				return
			}
		case "next":
			var p struct {
				Data   struct{ OrderChanged *repChange }
				Errors []repGQLError
			}
			if err := json.Unmarshal(msg.Payload, &p); err != nil || p.Data.OrderChanged == nil {
				s.err = fmt.Errorf("next: %s (%v)", msg.Payload, err)
				return
			}
			select {
			case s.changes <- *p.Data.OrderChanged:
			case <-ctx.Done():
				s.err = ctx.Err()
				return
			}
		case "error", "complete":
			s.err = fmt.Errorf("%s: %s", msg.Type, msg.Payload)
			return
		}
	}
}

// next returns the next change, failing the test if none comes within wait.
func (s *repSubscription) next(ctx context.Context, t *testing.T, wait time.Duration) repChange {
	t.Helper()
	tm := time.NewTimer(wait)
	defer tm.Stop()
	select {
	case c := <-s.changes:
		return c
	case <-s.done:
		select {
		case c := <-s.changes:
			return c
		default:
		}
		t.Fatalf("subscription ended: %v", s.err)
	case <-tm.C:
		t.Fatalf("no orderChanged within %v", wait)
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	return repChange{}
}

// close ends the subscription and its reader.
func (s *repSubscription) close() {
	s.cancel()
	_ = s.conn.CloseNow()
	<-s.done
}

// repStablePort returns a loopback address with a port below the kernel's
// ephemeral range that is free now, for a process that is restarted on the
// same address: a port from 127.0.0.1:0 could be handed to another process
// (or an outgoing connection) while ours is down.
func repStablePort(t *testing.T) string {
	t.Helper()
	for range 100 {
		addr := "127.0.0.1:" + strconv.Itoa(20000+rand.IntN(12000))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("no free port in 20000-31999")
	return ""
}
