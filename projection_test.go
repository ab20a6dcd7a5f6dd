package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/eventing/embedded"
)

// These tests run the built binary as a separate process (PROJ-01 and
// PROJ-03 of the research notes, reliability.md §3): they kill it with
// SIGKILL, restart it on the same data directory, rebuild its read model
// online and offline, and compare hashes of the canonical dumps.

// TestProjection builds the binary once and runs the process-level
// projection tests on it.
func TestProjection(t *testing.T) {
	if testing.Short() {
		t.Skip("builds, kills and restarts the binary; skipped with -short")
	}
	bin := serviceBinary(t)
	t.Run("CrashRecovery", func(t *testing.T) { testProjectionCrashRecovery(t, bin) })
	t.Run("RebuildWhileLive", func(t *testing.T) { testRebuildWhileLive(t, bin) })
	t.Run("OfflineRebuild", func(t *testing.T) { testOfflineRebuild(t, bin) })
}

// testProjectionCrashRecovery kills the service with SIGKILL while
// mutations are in flight (so in the middle of an append, a projection
// batch, or both), restarts it on the same data and checks that every
// acknowledged write is visible, that the read model has caught up to the
// last event of $all, and that it equals a from-scratch rebuild. Runs:
// $ORDERTRAIL_CRASH_RUNS (default 3).
func testProjectionCrashRecovery(t *testing.T, bin string) {
	runs := 3
	if v := os.Getenv("ORDERTRAIL_CRASH_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("ORDERTRAIL_CRASH_RUNS=%q: want a positive integer", v)
		}
		runs = n
	}
	for run := range runs {
		// Every other run also starts an online rebuild shortly before the
		// kill, so some kills land in the middle of a rebuild or its swap.
		rebuildDuring := run%2 == 1
		name := fmt.Sprintf("run%d", run)
		if rebuildDuring {
			name += "-rebuilding"
		}
		t.Run(name, func(t *testing.T) {
			pjCrashRun(t, bin, rand.IntN(200)+40, rebuildDuring)
		})
	}
}

// pjCrashRun runs one crash: up to 400 mutations from 16 workers, a
// SIGKILL once killAt of them are acknowledged (with rebuildDuring: an
// online rebuild starts after killAt-20, and the SIGKILL follows as soon as
// its new file exists), a restart and the checks.
func pjCrashRun(t *testing.T, bin string, killAt int, rebuildDuring bool) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	svc := pjStart(t, bin, data)

	killNow := make(chan struct{})
	var killOnce, rebuildOnce sync.Once
	kill := func() { killOnce.Do(func() { close(killNow) }) }
	minAcked := killAt
	if rebuildDuring {
		minAcked = killAt - 20
	}
	rebuildStart := make(chan struct{})
	load := pjRunLoad(ctx, svc.url, 16, 400, func(acked int) {
		if acked >= minAcked {
			if rebuildDuring {
				rebuildOnce.Do(func() { close(rebuildStart) })
			} else {
				kill()
			}
		}
	}, nil)
	rebuildDone := make(chan string, 1)
	if rebuildDuring {
		// Start a rebuild and kill the service as soon as the rebuild's
		// file appears in the data directory (another process: poll).
		go func() {
			select {
			case <-rebuildStart:
			case <-load.done:
				rebuildDone <- "not started"
				kill()
				return
			}
			go func() {
				_, errs, err := pjPost(ctx, svc.url, rebuildMutation, nil)
				switch {
				case err != nil:
					rebuildDone <- "interrupted (" + err.Error() + ")"
				case len(errs) > 0:
					rebuildDone <- "failed: " + errs[0].Message
				default:
					rebuildDone <- "finished before the kill"
				}
			}()
			deadline := time.Now().Add(10 * time.Second)
			for {
				if files, _ := filepath.Glob(filepath.Join(data, "readmodel-*.db")); len(files) > 0 || time.Now().After(deadline) {
					kill()
					return
				}
				select {
				case <-time.After(time.Millisecond):
				case <-load.done:
					kill()
					return
				}
			}
		}()
	}
	select {
	case <-killNow:
	case <-load.done:
	}
	svc.kill(t)
	<-load.done
	acked := load.acked()
	if len(acked) < minAcked {
		t.Fatalf("only %d mutations acknowledged before the kill (want %d); first error: %v", len(acked), minAcked, load.firstErr())
	}
	t.Logf("SIGKILL after %d acknowledged mutations (%d attempted)", len(acked), load.started.Load())
	if rebuildDuring {
		t.Logf("online rebuild started before the kill: %s", <-rebuildDone)
	}

	svc = pjStart(t, bin, data)
	maxAck := pjMaxPosition(acked)
	st := svc.waitCaughtUp(ctx, t, maxAck, 30*time.Second)

	// Read-your-writes on the last acknowledged write.
	last := acked[len(acked)-1]
	var one struct{ Order *struct{ ID string } }
	if err := svc.query(ctx, `query($id: ID!, $p: Position) { order(id: $id, minPosition: $p) { id } }`,
		map[string]any{"id": last.orderID, "p": pjPos(maxAck)}, &one); err != nil || one.Order == nil {
		t.Errorf("order(id: %s, minPosition: %d) after restart = %+v, %v; want the order", last.orderID, maxAck, one.Order, err)
	}

	// No acknowledged write is lost.
	orders := svc.allOrders(ctx, t)
	var maxLast uint64
	for _, o := range orders {
		maxLast = max(maxLast, o.lastPosition())
	}
	for _, m := range acked {
		o, ok := orders[m.orderID]
		switch {
		case !ok:
			t.Errorf("acknowledged %s of order %s at %d is lost: the order is not in the read model", m.kind, m.orderID, m.position)
		case o.lastPosition() < m.position:
			t.Errorf("acknowledged %s of order %s at %d is lost: order's lastPosition is %d", m.kind, m.orderID, m.position, o.lastPosition())
		}
	}

	// The incrementally maintained model equals a from-scratch rebuild.
	rep := svc.rebuild(ctx, t)
	if rep.Hash != rep.PreviousHash {
		t.Errorf("after crash and catch-up: rebuilt hash %s != incremental hash %s (checkpoints %s, %s)",
			rep.Hash, rep.PreviousHash, rep.Checkpoint, rep.PreviousCheckpoint)
	}
	if rep.Checkpoint != rep.PreviousCheckpoint {
		t.Errorf("after crash and catch-up: rebuilt checkpoint %s != incremental checkpoint %s", rep.Checkpoint, rep.PreviousCheckpoint)
	}
	if rep.Checkpoint != pjPos(maxLast) {
		t.Errorf("rebuild checkpoint %s != last position among orders %d", rep.Checkpoint, maxLast)
	}
	if got := svc.status(ctx, t); got.Checkpoint != rep.Checkpoint || got.Checkpoint != st.Checkpoint {
		t.Errorf("projectionStatus.checkpoint = %s after rebuild, %s before; rebuild says %s", got.Checkpoint, st.Checkpoint, rep.Checkpoint)
	}
	svc.stop(t)

	// An interrupted rebuild must not leave its file behind for good.
	pointer, err := currentReadModel(data)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(data, "readmodel*.db"))
	for _, f := range files {
		if f != pointer {
			t.Errorf("read-model file %s is left over (current: %s)", filepath.Base(f), filepath.Base(pointer))
		}
	}

	// The checkpoint is the last event of $all, read with the official
	// client from the store the service left behind.
	if head := pjLastPosition(t, data); pjPos(head) != rep.Checkpoint {
		t.Errorf("checkpoint %s != position %d of the last event in $all", rep.Checkpoint, head)
	}
}

// testRebuildWhileLive rebuilds the read model while mutations flow and a
// websocket client is subscribed to orderChanged: the client must see every
// change exactly once, in strictly increasing position order, across the
// swap, and the rebuilt model must equal the replaced one.
func testRebuildWhileLive(t *testing.T, bin string) {
	ctx := t.Context()
	svc := pjStart(t, bin, filepath.Join(t.TempDir(), "data"))

	// Some history for the rebuild to replay.
	seed := pjRunLoad(ctx, svc.url, 8, 120, nil, nil)
	<-seed.done
	if err := seed.firstErr(); err != nil {
		t.Fatalf("seed: %v", err)
	}
	from := pjMaxPosition(seed.acked())

	sub := pjSubscribe(ctx, t, svc.url, from)
	stop := make(chan struct{})
	var stopOnce sync.Once
	var rebuilt atomic.Bool
	var afterRebuild atomic.Int64
	rebuildNow := make(chan struct{})
	var rebuildOnce sync.Once
	load := pjRunLoad(ctx, svc.url, 16, 100_000, func(acked int) {
		if acked >= 60 {
			rebuildOnce.Do(func() { close(rebuildNow) })
		}
		if rebuilt.Load() && afterRebuild.Add(1) >= 60 {
			stopOnce.Do(func() { close(stop) })
		}
	}, stop)
	select {
	case <-rebuildNow:
	case <-load.done:
		t.Fatalf("load ended before the rebuild: %v", load.firstErr())
	}
	rep := svc.rebuild(ctx, t)
	rebuilt.Store(true)
	select {
	case <-load.done:
		t.Fatalf("load ended early: %v", load.firstErr())
	case <-stop:
	}
	<-load.done
	if err := load.firstErr(); err != nil {
		t.Fatalf("load: %v", err)
	}
	// The report compares the rebuilt model with the replaced one; the two
	// are only comparable when the swap aligned their checkpoints.
	if rep.Checkpoint != rep.PreviousCheckpoint {
		t.Errorf("rebuild while live: swapped in at checkpoint %s, but the replaced model was at %s: "+
			"the fresh model ran ahead of the live one, so the report cannot compare them", rep.Checkpoint, rep.PreviousCheckpoint)
	}
	if rep.Hash != rep.PreviousHash {
		t.Errorf("rebuild while live: hash %s (checkpoint %s) != previous hash %s (checkpoint %s)",
			rep.Hash, rep.Checkpoint, rep.PreviousHash, rep.PreviousCheckpoint)
	}

	// One more mutation after everything else: once the subscriber has it,
	// every earlier change (or duplicate) has been delivered too.
	marker := pjRunLoad(ctx, svc.url, 1, 1, nil, nil)
	<-marker.done
	if err := marker.firstErr(); err != nil {
		t.Fatalf("marker mutation: %v", err)
	}
	want := map[uint64]bool{}
	for _, m := range append(load.acked(), marker.acked()...) {
		for _, p := range m.events {
			want[p] = true
		}
	}
	markerPos := pjMaxPosition(marker.acked())
	got := sub.waitFor(ctx, t, markerPos, 30*time.Second)

	seen := map[uint64]int{}
	prev := from
	for i, p := range got {
		seen[p]++
		if p <= prev {
			t.Errorf("change %d at position %d after %d: not strictly increasing (duplicate or reordered)", i, p, prev)
		}
		prev = max(prev, p)
		if !want[p] {
			t.Errorf("change at position %d matches no event of an acknowledged mutation", p)
		}
	}
	missing := 0
	for p := range want {
		if seen[p] == 0 {
			if missing < 10 {
				t.Errorf("no change received for the event at position %d", p)
			}
			missing++
		}
	}
	t.Logf("%d changes received across the swap (%d missing); rebuild replayed %d events in %d ms",
		len(got), missing, rep.Events, rep.DurationMs)
	var stale []string
	for _, m := range load.acked() {
		if m.stale {
			stale = append(stale, fmt.Sprintf("%s@%d", m.kind, m.position))
		}
	}
	if len(stale) > 0 {
		t.Errorf("%d of %d mutations during the rebuild answered STALE_READ (read-your-writes failed across the swap): %v",
			len(stale), len(load.acked()), stale)
	}
	if st := svc.status(ctx, t); st.Checkpoint != pjPos(markerPos) {
		t.Errorf("projectionStatus.checkpoint = %s, want the last mutation's position %d", st.Checkpoint, markerPos)
	}

	// Quiet now: the model swapped in and then maintained incrementally
	// equals another from-scratch rebuild.
	again := svc.rebuild(ctx, t)
	if again.Hash != again.PreviousHash || again.Checkpoint != again.PreviousCheckpoint || again.Checkpoint != pjPos(markerPos) {
		t.Errorf("second rebuild, without load: hash %s checkpoint %s, previous hash %s checkpoint %s; want equal, at %d",
			again.Hash, again.Checkpoint, again.PreviousHash, again.PreviousCheckpoint, markerPos)
	}
}

// testOfflineRebuild stops the service, rebuilds its data directory twice
// with `ordertrail rebuild` (no service answers --api) and expects the hash
// the online rebuild reported both times; the restarted service then
// serves the same orders.
func testOfflineRebuild(t *testing.T, bin string) {
	ctx := t.Context()
	data := filepath.Join(t.TempDir(), "data")
	svc := pjStart(t, bin, data)
	load := pjRunLoad(ctx, svc.url, 8, 150, nil, nil)
	<-load.done
	if err := load.firstErr(); err != nil {
		t.Fatalf("load: %v", err)
	}
	online := svc.rebuild(ctx, t)
	if online.Hash != online.PreviousHash {
		t.Errorf("online rebuild: hash %s != previous %s", online.Hash, online.PreviousHash)
	}
	before := svc.allOrders(ctx, t)
	svc.stop(t)

	unused := freeAddr(t)
	for i := range 2 {
		cmd := exec.CommandContext(ctx, bin, "rebuild", "--api", "http://"+unused+"/graphql", "--data", data)
		cmd.Env = cleanEnv()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("offline rebuild %d: %v\n%s", i+1, err, stderr.String())
		}
		var res struct {
			Data struct{ RebuildReadModels pjRebuild }
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("offline rebuild %d: output %q: %v", i+1, out, err)
		}
		got := res.Data.RebuildReadModels
		if got.Hash != online.Hash || got.Checkpoint != online.Checkpoint {
			t.Errorf("offline rebuild %d: hash %s checkpoint %s; online rebuild: hash %s checkpoint %s",
				i+1, got.Hash, got.Checkpoint, online.Hash, online.Checkpoint)
		}
	}

	svc = pjStart(t, bin, data)
	after := svc.allOrders(ctx, t)
	if len(after) != len(before) {
		t.Errorf("after offline rebuild and restart: %d orders, want %d", len(after), len(before))
	}
	for id, o := range before {
		if a, ok := after[id]; !ok {
			t.Errorf("order %s is gone after offline rebuild", id)
		} else if !bytes.Equal(a.raw, o.raw) {
			t.Errorf("order %s after offline rebuild:\n%s\nwant\n%s", id, a.raw, o.raw)
		}
	}
	if st := svc.status(ctx, t); st.Checkpoint != online.Checkpoint {
		t.Errorf("projectionStatus.checkpoint after restart = %s, want %s", st.Checkpoint, online.Checkpoint)
	}
	svc.stop(t)
}

// pjService is one running service process.
type pjService struct {
	url    string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *procLog
}

// pjStart starts the binary with the embedded store on data and waits for
// /healthz; the process is killed at the end of the test if still running.
func pjStart(t *testing.T, bin, data string) *pjService {
	t.Helper()
	addr := freeAddr(t)
	s := &pjService{url: "http://" + addr, exited: make(chan struct{}), log: &procLog{}}
	s.cmd = exec.Command(bin, "--addr", addr, "--data", data)
	s.cmd.Env = cleanEnv()
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("service log (%s):\n%s", addr, s.log.lastLines(60))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s/healthz: no 200 within 30s (%v):\n%s", s.url, err, s.log.lastLines(60))
		}
		select {
		case <-s.exited:
			t.Fatalf("service exited before /healthz answered (%v):\n%s", s.cmd.ProcessState, s.log.lastLines(60))
		case <-time.After(20 * time.Millisecond): // another process: poll
		}
	}
}

// kill sends SIGKILL and waits for the process to end.
func (s *pjService) kill(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	<-s.exited
}

// stop sends SIGINT and expects a clean exit.
func (s *pjService) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("SIGINT: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("service did not exit within 20s of SIGINT:\n%s", s.log.lastLines(60))
	}
	if !s.cmd.ProcessState.Success() {
		t.Errorf("service exited with %v after SIGINT:\n%s", s.cmd.ProcessState, s.log.lastLines(60))
	}
}

var pjHTTP = &http.Client{Timeout: 30 * time.Second}

type pjGQLError struct {
	Message    string
	Extensions struct{ Code string }
}

// pjPost sends one GraphQL operation; it returns the data and the errors.
func pjPost(ctx context.Context, url, query string, vars map[string]any) (json.RawMessage, []pjGQLError, error) {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/graphql", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := pjHTTP.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	var r struct {
		Data   json.RawMessage
		Errors []pjGQLError
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
	}
	return r.Data, r.Errors, nil
}

// query runs an operation that must not fail and decodes its data.
func (s *pjService) query(ctx context.Context, query string, vars map[string]any, out any) error {
	data, errs, err := pjPost(ctx, s.url, query, vars)
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s (%s)", errs[0].Message, errs[0].Extensions.Code)
	}
	return json.Unmarshal(data, out)
}

type pjStatus struct {
	State      string
	Checkpoint string
	Connected  bool
	CaughtUp   bool
	Error      *string
}

func (s *pjService) status(ctx context.Context, t *testing.T) pjStatus {
	t.Helper()
	var r struct{ ProjectionStatus pjStatus }
	if err := s.query(ctx, `{ projectionStatus { state checkpoint connected caughtUp error } }`, nil, &r); err != nil {
		t.Fatalf("projectionStatus: %v", err)
	}
	return r.ProjectionStatus
}

// waitCaughtUp polls projectionStatus until the subscription has caught up
// with the store and the checkpoint has reached position.
func (s *pjService) waitCaughtUp(ctx context.Context, t *testing.T, position uint64, wait time.Duration) pjStatus {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st := s.status(ctx, t)
		if st.State != "RUNNING" {
			t.Fatalf("projection %s at %s: %v", st.State, st.Checkpoint, pjDeref(st.Error))
		}
		if st.CaughtUp && pjParse(t, st.Checkpoint) >= position {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("read model not caught up to %d within %v: %+v (error %v)", position, wait, st, pjDeref(st.Error))
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(20 * time.Millisecond): // another process: poll
		}
	}
}

type pjRebuild struct {
	Checkpoint         string
	Hash               string
	PreviousCheckpoint string
	PreviousHash       string
	Events             int
	DurationMs         int
}

func (s *pjService) rebuild(ctx context.Context, t *testing.T) pjRebuild {
	t.Helper()
	var r struct{ RebuildReadModels pjRebuild }
	if err := s.query(ctx, rebuildMutation, nil, &r); err != nil {
		t.Fatalf("rebuildReadModels: %v", err)
	}
	return r.RebuildReadModels
}

// pjOrder is an order as listed, with its JSON for exact comparison.
type pjOrder struct {
	ID           string
	LastPosition string
	raw          json.RawMessage
}

func (o pjOrder) lastPosition() uint64 {
	n, _ := strconv.ParseUint(o.LastPosition, 10, 64)
	return n
}

// allOrders pages through every order in the read model.
func (s *pjService) allOrders(ctx context.Context, t *testing.T) map[string]pjOrder {
	t.Helper()
	out := map[string]pjOrder{}
	var after *string
	for {
		var r struct {
			Orders struct {
				Edges    []struct{ Node json.RawMessage }
				PageInfo struct {
					HasNextPage bool
					EndCursor   *string
				}
			}
		}
		if err := s.query(ctx, `query($a: String) { orders(first: 50, after: $a, orderBy: CREATED_AT_ASC) {
			edges { node { id customerId status total { amount currency } items { sku quantity unitPrice }
				createdAt confirmedAt paidAt cancelledAt cancelReason version lastPosition } }
			pageInfo { hasNextPage endCursor } } }`, map[string]any{"a": after}, &r); err != nil {
			t.Fatalf("orders: %v", err)
		}
		for _, e := range r.Orders.Edges {
			var o pjOrder
			if err := json.Unmarshal(e.Node, &o); err != nil {
				t.Fatalf("order %s: %v", e.Node, err)
			}
			o.raw = e.Node
			if _, dup := out[o.ID]; dup {
				t.Errorf("order %s listed twice", o.ID)
			}
			out[o.ID] = o
		}
		if !r.Orders.PageInfo.HasNextPage {
			return out
		}
		after = r.Orders.PageInfo.EndCursor
	}
}

// pjMutation is an acknowledged mutation.
type pjMutation struct {
	kind     string
	orderID  string
	position uint64   // the payload's position
	events   []uint64 // positions of the events it appended
	stale    bool     // answered STALE_READ: the read model did not show it in time
}

// pjLoad is concurrent order traffic: each worker creates an order, then
// confirms and pays it, confirms and cancels it, or cancels it.
type pjLoad struct {
	done    chan struct{}
	started atomic.Int64
	mu      sync.Mutex
	ok      []pjMutation
	errs    []error
}

func (l *pjLoad) acked() []pjMutation {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ok)
}

func (l *pjLoad) firstErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) == 0 {
		return nil
	}
	return l.errs[0]
}

// pjRunLoad starts workers that issue at most limit mutations in total,
// until stop is closed or a mutation fails (the service died); onAck is
// called with the number acknowledged so far.
func pjRunLoad(ctx context.Context, url string, workers, limit int, onAck func(int), stop <-chan struct{}) *pjLoad {
	l := &pjLoad{done: make(chan struct{})}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for {
				steps := [][]string{{"confirm", "pay"}, {"confirm", "cancel"}, {"cancel"}, {"confirm"}, {}}[r.IntN(5)]
				id := ""
				for _, kind := range append([]string{"create"}, steps...) {
					select {
					case <-stop:
						return
					case <-ctx.Done():
						return
					default:
					}
					if l.started.Add(1) > int64(limit) {
						return
					}
					m, err := pjMutate(ctx, url, kind, id, fmt.Sprintf("c-%d", w))
					l.mu.Lock()
					if err != nil {
						l.errs = append(l.errs, fmt.Errorf("%s %s: %w", kind, id, err))
						l.mu.Unlock()
						return
					}
					l.ok = append(l.ok, m)
					acked := len(l.ok)
					l.mu.Unlock()
					if onAck != nil {
						onAck(acked)
					}
					id = m.orderID
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	return l
}

// pjMutate issues one mutation. A STALE_READ error still acknowledges the
// write: the payload carries its position.
func pjMutate(ctx context.Context, url, kind, orderID, customer string) (pjMutation, error) {
	const sel = `{ position events { position data } }`
	var query, field string
	vars := map[string]any{"id": orderID}
	switch kind {
	case "create":
		field, vars = "createOrder", map[string]any{"c": customer}
		query = `mutation($c: ID!) { createOrder(input: {customerId: $c, currency: "EUR",
			items: [{sku: "A-1", quantity: 2, unitPrice: "4.25"}]}) ` + sel + ` }`
	case "confirm":
		field, query = "confirmOrder", `mutation($id: ID!) { confirmOrder(input: {orderId: $id}) `+sel+` }`
	case "pay":
		field, query = "markOrderPaid", `mutation($id: ID!) { markOrderPaid(input: {orderId: $id, amount: "8.50", reference: "r"}) `+sel+` }`
	case "cancel":
		field, query = "cancelOrder", `mutation($id: ID!) { cancelOrder(input: {orderId: $id, reason: "changed mind"}) `+sel+` }`
	default:
		return pjMutation{}, fmt.Errorf("unknown mutation %q", kind)
	}
	data, errs, err := pjPost(ctx, url, query, vars)
	if err != nil {
		return pjMutation{}, err
	}
	var payload map[string]*struct {
		Position string
		Events   []struct {
			Position string
			Data     struct{ OrderID string }
		}
	}
	if len(data) > 0 && string(data) != "null" {
		if err := json.Unmarshal(data, &payload); err != nil {
			return pjMutation{}, fmt.Errorf("data %s: %w", data, err)
		}
	}
	p := payload[field]
	if p == nil || p.Position == "" {
		if len(errs) > 0 {
			return pjMutation{}, fmt.Errorf("%s (%s)", errs[0].Message, errs[0].Extensions.Code)
		}
		return pjMutation{}, fmt.Errorf("no payload: %s", data)
	}
	for _, e := range errs {
		if e.Extensions.Code != "STALE_READ" {
			return pjMutation{}, fmt.Errorf("%s (%s)", e.Message, e.Extensions.Code)
		}
	}
	m := pjMutation{kind: kind, orderID: orderID, stale: len(errs) > 0}
	if m.position, err = strconv.ParseUint(p.Position, 10, 64); err != nil {
		return pjMutation{}, fmt.Errorf("position %q: %w", p.Position, err)
	}
	for _, e := range p.Events {
		pos, err := strconv.ParseUint(e.Position, 10, 64)
		if err != nil {
			return pjMutation{}, fmt.Errorf("event position %q: %w", e.Position, err)
		}
		m.events = append(m.events, pos)
		if m.orderID == "" {
			m.orderID = e.Data.OrderID
		}
	}
	if len(m.events) == 0 || m.orderID == "" {
		return pjMutation{}, fmt.Errorf("%s appended no event: %s", kind, data)
	}
	return m, nil
}

func pjMaxPosition(ms []pjMutation) uint64 {
	var p uint64
	for _, m := range ms {
		p = max(p, m.position)
	}
	return p
}

// pjLastPosition opens the service's embedded store in this process (the
// service has stopped) and reads the last event of $all backwards with the
// official client.
func pjLastPosition(t *testing.T, data string) uint64 {
	t.Helper()
	ctx := t.Context()
	srv, err := embedded.Start(ctx, embedded.Config{Dir: filepath.Join(data, "eventstore"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("open the service's event store: %v", err)
	}
	defer srv.Close()
	cfg, err := esdb.ParseConnectionString(srv.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = esdb.NoopLogging()
	client, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	rs, err := client.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		t.Fatalf("read $all backwards: %v", err)
	}
	defer rs.Close()
	ev, err := rs.Recv()
	if err != nil {
		t.Fatalf("read $all backwards: %v", err)
	}
	if !strings.HasPrefix(ev.OriginalEvent().StreamID, eventing.OrderStreamPrefix) {
		t.Logf("last event of $all is in %s, not an order stream", ev.OriginalEvent().StreamID)
	}
	return ev.OriginalEvent().Position.Commit
}

// pjSubscription is an orderChanged subscription over graphql-transport-ws
// whose reader never blocks, so the server never drops it as slow.
type pjSubscription struct {
	conn *websocket.Conn
	mu   sync.Mutex
	got  []uint64
	more chan struct{} // closed and replaced on every change
	err  error
	done bool
}

// pjSubscribe subscribes to every change after position from.
func pjSubscribe(ctx context.Context, t *testing.T, baseURL string, from uint64) *pjSubscription {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	dialCtx, dialCancel := context.WithTimeout(ctx, 10*time.Second)
	defer dialCancel()
	conn, _, err := websocket.Dial(dialCtx, "ws"+strings.TrimPrefix(baseURL, "http")+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		cancel()
		t.Fatalf("websocket: %v", err)
	}
	conn.SetReadLimit(1 << 20)
	s := &pjSubscription{conn: conn, more: make(chan struct{})}
	readerDone := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		_ = conn.CloseNow()
		<-readerDone
	})
	if err := wsjson.Write(dialCtx, conn, map[string]any{"type": "connection_init", "payload": map[string]any{}}); err != nil {
		t.Fatalf("connection_init: %v", err)
	}
	var ack struct{ Type string }
	if err := wsjson.Read(dialCtx, conn, &ack); err != nil || ack.Type != "connection_ack" {
		t.Fatalf("connection_init: got %q, %v; want connection_ack", ack.Type, err)
	}
	if err := wsjson.Write(dialCtx, conn, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query":     `subscription($f: Position) { orderChanged(fromPosition: $f) { eventType position } }`,
		"variables": map[string]any{"f": pjPos(from)},
	}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	go func() {
		defer close(readerDone)
		err := s.read(ctx)
		s.mu.Lock()
		s.err, s.done = err, true
		close(s.more)
		s.mu.Unlock()
	}()
	return s
}

func (s *pjSubscription) read(ctx context.Context) error {
	for {
		var msg struct {
			Type    string
			Payload json.RawMessage
		}
		if err := wsjson.Read(ctx, s.conn, &msg); err != nil {
			return err
		}
		switch msg.Type {
		case "ping":
			if err := wsjson.Write(ctx, s.conn, map[string]string{"type": "pong"}); err != nil {
				return err
			}
		case "next":
			var p struct {
				Data   struct{ OrderChanged *struct{ Position string } }
				Errors []pjGQLError
			}
			if err := json.Unmarshal(msg.Payload, &p); err != nil || p.Data.OrderChanged == nil {
				return fmt.Errorf("next: %s (%v)", msg.Payload, err)
			}
			pos, err := strconv.ParseUint(p.Data.OrderChanged.Position, 10, 64)
			if err != nil {
				return fmt.Errorf("next: position %q: %w", p.Data.OrderChanged.Position, err)
			}
			s.mu.Lock()
			s.got = append(s.got, pos)
			close(s.more)
			s.more = make(chan struct{})
			s.mu.Unlock()
		case "error", "complete":
			return fmt.Errorf("%s: %s", msg.Type, msg.Payload)
		}
	}
}

// waitFor returns the positions received once one of them is position.
func (s *pjSubscription) waitFor(ctx context.Context, t *testing.T, position uint64, wait time.Duration) []uint64 {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		got, more, done, err := slices.Clone(s.got), s.more, s.done, s.err
		s.mu.Unlock()
		if slices.Contains(got, position) {
			return got
		}
		if done {
			t.Fatalf("subscription ended after %d changes, before position %d: %v", len(got), position, err)
		}
		select {
		case <-more:
		case <-timer.C:
			t.Fatalf("no change at position %d within %v (%d changes received, last %v)", position, wait, len(got), got[max(0, len(got)-3):])
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

func pjPos(p uint64) string { return strconv.FormatUint(p, 10) }

func pjParse(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("position %q: %v", s, err)
	}
	return n
}

func pjDeref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
