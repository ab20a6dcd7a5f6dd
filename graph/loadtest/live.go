package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

const orderChangedSubscription = `subscription {
  orderChanged { eventType revision position recordedAt
    order { id customerId status total { amount currency } items { sku quantity unitPrice } } }
}`

const (
	dialParallel    = 64  // websocket handshakes in flight at once
	maxProbes       = 100 // changes sent to bring every subscriber up
	probeInterval   = 300 * time.Millisecond
	deliveryTimeout = 30 * time.Second // a change not received by then counts as this late
	maxMessages     = 1 << 20          // per connection
)

// markerField precedes the marker in every message: the change's order
// carries it as its customer ID, the baseline's copy of that message too.
var markerField = []byte(`"customerId":"`)

// nextType marks a graphql-transport-ws "next" message, which carries a change.
var nextType = []byte(`"type":"next"`)

// liveResult is goal 3: p99 delivery latency in milliseconds of one change
// to every subscriber, against a plain websocket broadcast of a message of
// the same size, each the median of the rounds.
type liveResult struct {
	p99, baseP99 float64
}

func measureLive(ctx context.Context, cfg config, gql *client) (liveResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tr := newTracker()
	var readers sync.WaitGroup
	defer readers.Wait() // after cancel: every Read returns once ctx is done
	defer cancel()

	// The service's subscribers.
	wsURL := "ws" + strings.TrimPrefix(cfg.url, "http")
	svcSubs := &group{tr: tr}
	if err := svcSubs.dial(ctx, cfg.subscribers, &readers, func(ctx context.Context) (*websocket.Conn, error) {
		return subscribe(ctx, wsURL)
	}); err != nil {
		return liveResult{}, fmt.Errorf("subscribe: %w", err)
	}
	defer svcSubs.closeAll()
	serviceChange := func(marker string) error {
		var out createdOrder
		return gql.do(ctx, createOrderMutation, createOrderVars(marker), &out)
	}
	if err := svcSubs.probe(ctx, cfg.stderr, "orderChanged", 'p', serviceChange); err != nil {
		return liveResult{}, err
	}
	sample := tr.sampleMessage()
	if sample == nil {
		return liveResult{}, errors.New("no orderChanged message to copy")
	}
	fmt.Fprintf(cfg.stderr, "%d subscribers ready; a change message is %d bytes\n", cfg.subscribers, len(sample))

	// The baseline: a plain broadcaster in a process of its own, like the
	// service, and as many plain websocket clients, sent copies of the
	// service's message with their own marker.
	bc, err := startBroadcaster(ctx)
	if err != nil {
		return liveResult{}, err
	}
	defer func() {
		if err := bc.stop(); err != nil {
			fmt.Fprintln(cfg.stderr, "stop broadcaster:", err)
		}
	}()
	old := []byte(marker(sample))
	baseSubs := &group{tr: tr}
	if err := baseSubs.dial(ctx, cfg.subscribers, &readers, func(ctx context.Context) (*websocket.Conn, error) {
		c, _, err := websocket.Dial(ctx, bc.wsURL, &websocket.DialOptions{HTTPClient: plainHTTP})
		return c, err
	}); err != nil {
		return liveResult{}, fmt.Errorf("baseline dial: %w", err)
	}
	defer baseSubs.closeAll()
	baseChange := func(m string) error {
		return gql.post(ctx, bc.postURL, "application/json", bytes.Replace(sample, old, []byte(m), 1), nil)
	}
	if err := baseSubs.probe(ctx, cfg.stderr, "baseline", 'q', baseChange); err != nil {
		return liveResult{}, err
	}

	var p99s, baseP99s []float64
	for r := 1; r <= cfg.rounds; r++ {
		d, err := svcSubs.deliveries(ctx, 's', cfg.changes, serviceChange)
		if err != nil {
			return liveResult{}, fmt.Errorf("createOrder: %w", err)
		}
		bd, err := baseSubs.deliveries(ctx, 'b', cfg.changes, baseChange)
		if err != nil {
			return liveResult{}, fmt.Errorf("baseline broadcast: %w", err)
		}
		fmt.Fprintf(cfg.stderr, "round %d/%d: delivery p99 orderChanged %.2fms (createOrder answered within %.2fms, %d not delivered); plain websocket %.2fms (trigger answered within %.2fms, %d not delivered); ratio %.2f\n",
			r, cfg.rounds, d.p99, d.trigger, d.missing, bd.p99, bd.trigger, bd.missing, d.p99/bd.p99)
		p99s, baseP99s = append(p99s, d.p99), append(baseP99s, bd.p99)
	}
	if n, first := tr.failures(); n > 0 {
		fmt.Fprintf(cfg.stderr, "websocket failures during the run: %d, first: %v\n", n, first)
	}
	if n := tr.duplicates.Load(); n > 0 {
		fmt.Fprintf(cfg.stderr, "duplicate deliveries: %d\n", n)
	}
	return liveResult{p99: median(p99s), baseP99: median(baseP99s)}, nil
}

// plainHTTP dials loopback directly, whatever proxy the environment names.
var plainHTTP = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second}

// subscribe opens a graphql-transport-ws connection and starts an
// orderChanged subscription on it.
func subscribe(ctx context.Context, wsURL string) (*websocket.Conn, error) {
	c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{
		HTTPClient:   plainHTTP,
		Subprotocols: []string{"graphql-transport-ws"},
	})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*websocket.Conn, error) {
		c.CloseNow()
		return nil, err
	}
	if err := writeJSON(ctx, c, map[string]any{"type": "connection_init", "payload": map[string]any{}}); err != nil {
		return fail(err)
	}
	for i := 0; ; i++ {
		if i == 10 {
			return fail(errors.New("no connection_ack in the first 10 messages"))
		}
		_, data, err := c.Read(ctx)
		if err != nil {
			return fail(fmt.Errorf("wait for connection_ack: %w", err))
		}
		var m struct{ Type string }
		if err := json.Unmarshal(data, &m); err != nil {
			return fail(fmt.Errorf("wait for connection_ack: %w", err))
		}
		if m.Type == "connection_ack" {
			break
		}
		if m.Type == "connection_error" || m.Type == "error" {
			return fail(fmt.Errorf("connection refused: %s", data))
		}
	}
	err = writeJSON(ctx, c, map[string]any{"id": "1", "type": "subscribe",
		"payload": map[string]any{"query": orderChangedSubscription}})
	if err != nil {
		return fail(err)
	}
	return c, nil
}

func writeJSON(ctx context.Context, c *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(ctx, websocket.MessageText, b)
}

// tracker matches received messages to the change that caused them, by the
// marker each change carries.
type tracker struct {
	mu         sync.Mutex
	sent       map[string]time.Time
	got        map[string]map[int]time.Duration // marker -> subscriber -> latency
	sample     []byte
	fails      int
	firstFail  error
	duplicates atomic.Int64
	wake       chan struct{}
}

func newTracker() *tracker {
	return &tracker{sent: map[string]time.Time{}, got: map[string]map[int]time.Duration{}, wake: make(chan struct{}, 1)}
}

// expect records that the change with marker is sent now.
func (t *tracker) expect(marker string) {
	t.mu.Lock()
	t.sent[marker] = time.Now()
	t.got[marker] = map[int]time.Duration{}
	t.mu.Unlock()
}

// deliver records that subscriber sub received msg, carrying marker, at at.
func (t *tracker) deliver(sub int, marker string, at time.Time, msg []byte) {
	t.mu.Lock()
	if t.sample == nil && marker != "" {
		t.sample = bytes.Clone(msg)
	}
	if sent, ok := t.sent[marker]; ok {
		if _, dup := t.got[marker][sub]; dup {
			t.duplicates.Add(1)
		} else {
			t.got[marker][sub] = at.Sub(sent)
		}
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *tracker) fail(err error) {
	t.mu.Lock()
	if t.fails == 0 {
		t.firstFail = err
	}
	t.fails++
	t.mu.Unlock()
}

func (t *tracker) failures() (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fails, t.firstFail
}

func (t *tracker) sampleMessage() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sample
}

// wait returns the latencies of marker's deliveries once n subscribers
// have it or timeout has passed.
func (t *tracker) wait(ctx context.Context, marker string, n int, timeout time.Duration) []time.Duration {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		t.mu.Lock()
		done := len(t.got[marker]) >= n
		t.mu.Unlock()
		if done {
			break
		}
		select {
		case <-t.wake:
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		break
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]time.Duration, 0, n)
	for _, d := range t.got[marker] {
		out = append(out, d)
	}
	return out
}

// group is a set of websocket clients that each read every message and
// report it to tr.
type group struct {
	tr    *tracker
	mu    sync.Mutex
	conns []*websocket.Conn
	ready atomic.Int64 // clients that have received at least one change
	seq   int
}

// dial opens n connections, dialParallel at a time, and starts a reader on
// each.
func (g *group) dial(ctx context.Context, n int, readers *sync.WaitGroup, open func(context.Context) (*websocket.Conn, error)) error {
	sem := make(chan struct{}, dialParallel)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for i := range n {
		sem <- struct{}{}
		if firstErr.Load() != nil || ctx.Err() != nil {
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			c, err := open(dctx)
			cancel()
			if err != nil {
				err = fmt.Errorf("connection %d: %w", i, err)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			c.SetReadLimit(1 << 20)
			g.mu.Lock()
			g.conns = append(g.conns, c)
			g.mu.Unlock()
			readers.Go(func() { g.read(ctx, i, c) })
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	return ctx.Err()
}

// read handles one connection's messages: it timestamps each first, then
// answers pings and reports changes and errors.
func (g *group) read(ctx context.Context, sub int, c *websocket.Conn) {
	seen := false
	for range maxMessages {
		_, data, err := c.Read(ctx)
		at := time.Now()
		if err != nil {
			if ctx.Err() == nil {
				g.tr.fail(fmt.Errorf("subscriber %d: %w", sub, err))
			}
			return
		}
		// A change is recognised without decoding it, so that the next
		// subscriber's read is not held up by this one's JSON.
		if m := marker(data); m != "" && bytes.Contains(data, nextType) {
			g.tr.deliver(sub, m, at, data)
			if !seen {
				seen = true
				g.ready.Add(1)
			}
			continue
		}
		var m struct{ Type string }
		if err := json.Unmarshal(data, &m); err != nil {
			g.tr.fail(fmt.Errorf("subscriber %d: %w", sub, err))
			continue
		}
		switch m.Type {
		case "ping":
			_ = writeJSON(ctx, c, map[string]any{"type": "pong"})
		case "error", "complete":
			g.tr.fail(fmt.Errorf("subscriber %d: %s", sub, data))
		}
	}
}

// marker returns the marker in a change message, or "".
func marker(msg []byte) string {
	_, rest, ok := bytes.Cut(msg, markerField)
	if !ok {
		return ""
	}
	m, _, ok := bytes.Cut(rest, []byte(`"`))
	if !ok {
		return ""
	}
	return string(m)
}

// newMarker returns a fixed-width marker, so that every message carrying
// one has the same size.
func (g *group) newMarker(kind byte) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seq++
	return fmt.Sprintf("lt-%c-%09d", kind, g.seq)
}

// probe sends changes until every client has received one, so that the
// measured changes find every subscription live, then waits for the last
// probe to reach everybody.
func (g *group) probe(ctx context.Context, stderr io.Writer, what string, kind byte, change func(string) error) error {
	g.mu.Lock()
	n := len(g.conns)
	g.mu.Unlock()
	var last string
	for i := 0; i < maxProbes && int(g.ready.Load()) < n; i++ {
		last = g.newMarker(kind)
		g.tr.expect(last)
		if err := change(last); err != nil {
			return fmt.Errorf("%s probe: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(probeInterval):
		}
	}
	if got := int(g.ready.Load()); got < n {
		return fmt.Errorf("%s: only %d of %d subscribers received a change after %d probes", what, got, n, maxProbes)
	}
	if got := len(g.tr.wait(ctx, last, n, deliveryTimeout)); got < n {
		fmt.Fprintf(stderr, "%s: last probe reached %d of %d subscribers\n", what, got, n)
	}
	return ctx.Err()
}

// delivery is what one round of changes measured.
type delivery struct {
	p99     float64 // ms from sending the change to receipt, over all subscribers and changes
	trigger float64 // ms the slowest change took to be answered
	missing int     // deliveries that never came, each counted as deliveryTimeout late
}

// deliveries sends changes one at a time, each after the previous one has
// reached every client.
func (g *group) deliveries(ctx context.Context, kind byte, changes int, change func(string) error) (delivery, error) {
	g.mu.Lock()
	n := len(g.conns)
	g.mu.Unlock()
	var d delivery
	var all []time.Duration
	for range changes {
		m := g.newMarker(kind)
		g.tr.expect(m)
		start := time.Now()
		if err := change(m); err != nil {
			return d, err
		}
		d.trigger = max(d.trigger, ms(time.Since(start)))
		got := g.tr.wait(ctx, m, n, deliveryTimeout)
		if ctx.Err() != nil {
			return d, ctx.Err()
		}
		for range n - len(got) {
			got = append(got, deliveryTimeout)
			d.missing++
		}
		all = append(all, got...)
	}
	d.p99 = ms(percentile(all, 0.99))
	return d, nil
}

func (g *group) closeAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		c.CloseNow()
	}
}
