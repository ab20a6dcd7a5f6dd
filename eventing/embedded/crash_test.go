package embedded_test

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/ordertrail/ordertrail/eventing/embedded"
	"github.com/ordertrail/ordertrail/eventing/storetest"
)

var crashCycles = flag.Int("crash.cycles", 0,
	"kill -9 cycles for TestCrashDurability (default 3, or $ORDERTRAIL_CRASH_CYCLES)")

// The child process is this test binary re-executed with -test.run=^TestCrashChild$
// and these variables set.
const (
	childDirEnv  = "ORDERTRAIL_CRASH_CHILD_DIR"
	childModeEnv = "ORDERTRAIL_CRASH_CHILD_MODE" // "serve" or "lock"
)

// TestCrashChild is not a test: it is the child process of the crash tests.
// In "serve" mode it starts the store on the given directory, prints
// "ADDR <connection string>" and serves until killed. In "lock" mode it
// tries to start the store and prints "LOCKED" or "STARTED" or "ERROR ...".
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		t.Skip("helper process for the crash tests; runs only when re-executed by them")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	switch mode := os.Getenv(childModeEnv); {
	case mode == "lock" && errors.Is(err, embedded.ErrLocked):
		fmt.Println("LOCKED")
		return
	case err != nil:
		fmt.Println("ERROR", err)
		os.Exit(1)
	case mode == "lock":
		fmt.Println("STARTED")
		_ = srv.Close()
		return
	}
	fmt.Println("ADDR", srv.ConnectionString())
	// Serve until the parent kills us or closes our stdin.
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = srv.Close()
	os.Exit(0)
}

// child is a running store in another process.
type child struct {
	cmd  *exec.Cmd
	conn string
	done chan struct{} // closed when the process has exited
}

// startChild re-executes the test binary as a store process on dir and
// waits (with a deadline) for its address.
func startChild(t *testing.T, dir string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir, childModeEnv+"=serve")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addr <- a
			}
		}
		_ = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		<-c.done
	})
	select {
	case c.conn = <-addr:
		return c
	case <-c.done:
		t.Fatalf("child store on %s exited before printing its address", dir)
	case <-time.After(30 * time.Second):
		t.Fatalf("child store on %s printed no address within 30s", dir)
	}
	return nil
}

// kill sends SIGKILL and waits until the process is gone.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("kill child: %v", err)
	}
	<-c.done
}

// batch is one append the parent sent.
type batch struct {
	stream string
	first  uint64      // revision of ids[0]
	ids    []uuid.UUID // in order
	acked  bool
	last   esdb.Position // position the acknowledgement reported for the last event
}

// ledger records every append sent and whether it was acknowledged.
type ledger struct {
	mu      sync.Mutex
	batches []*batch
	acks    atomic.Int64
}

func (l *ledger) add(b *batch) {
	l.mu.Lock()
	l.batches = append(l.batches, b)
	l.mu.Unlock()
}

// appender appends batches of 1..5 events with exact revisions to its own
// stream until an append fails (the store was killed) or stop is closed.
func appender(ctx context.Context, t *testing.T, c *esdb.Client, l *ledger, stream string, onAck func(), stop <-chan struct{}) {
	var next uint64
	for {
		select {
		case <-stop:
			return
		default:
		}
		b := &batch{stream: stream, first: next}
		evs := make([]esdb.EventData, 1+rand.IntN(5))
		for i := range evs {
			evs[i] = esdb.EventData{EventID: uuid.New(), EventType: "CrashProbe", ContentType: esdb.ContentTypeJson,
				Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
			b.ids = append(b.ids, evs[i].EventID)
		}
		var exp esdb.ExpectedRevision = esdb.NoStream{}
		if next > 0 {
			exp = esdb.Revision(next - 1)
		}
		l.add(b) // recorded before sending: an unacknowledged batch may still be durable
		// The official client can block for ever in a channel send when a
		// call fails as its connection loop gives up (the store was
		// killed), so the call runs aside and stop ends the wait.
		type outcome struct {
			res *esdb.WriteResult
			err error
		}
		done := make(chan outcome, 1)
		go func() {
			opCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			res, err := c.AppendToStream(opCtx, stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, evs...)
			done <- outcome{res, err}
		}()
		var res *esdb.WriteResult
		select {
		case o := <-done:
			if o.err != nil {
				return
			}
			res = o.res
		case <-stop:
			return
		}
		l.mu.Lock()
		b.acked = true
		b.last = esdb.Position{Commit: res.CommitPosition, Prepare: res.PreparePosition}
		l.mu.Unlock()
		if res.NextExpectedVersion != next+uint64(len(evs))-1 {
			t.Errorf("append of %d events to %s at %d: NextExpectedVersion %d", len(evs), stream, next, res.NextExpectedVersion)
			return
		}
		next += uint64(len(evs))
		l.acks.Add(1)
		onAck()
	}
}

// verify reads the whole $all of the store at conn and checks it against
// the ledger: every acknowledged event is present with its stream, revision
// and position; every sent batch is all there or not at all; nothing else
// is there; positions strictly increase.
func verify(t *testing.T, conn string, l *ledger) {
	t.Helper()
	c := storetest.NewClient(t, conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{From: esdb.Start{}}, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	type stored struct {
		stream string
		rev    uint64
		pos    esdb.Position
	}
	have := map[uuid.UUID]stored{}
	var prev esdb.Position
	for n := 0; ; n++ {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read $all after restart: %v", err)
		}
		o := ev.OriginalEvent()
		if n > 0 && (o.Position.Commit < prev.Commit || (o.Position.Commit == prev.Commit && o.Position.Prepare <= prev.Prepare)) {
			t.Fatalf("$all position %+v follows %+v", o.Position, prev)
		}
		prev = o.Position
		if strings.HasPrefix(o.StreamID, "crash-") {
			have[o.EventID] = stored{o.StreamID, o.EventNumber, o.Position}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	sent := 0
	for _, b := range l.batches {
		present := 0
		for i, id := range b.ids {
			s, ok := have[id]
			if !ok {
				continue
			}
			present++
			if s.stream != b.stream || s.rev != b.first+uint64(i) {
				t.Fatalf("event %s stored as %s@%d, sent as %s@%d", id, s.stream, s.rev, b.stream, b.first+uint64(i))
			}
			if b.acked && i == len(b.ids)-1 && s.pos != b.last {
				t.Fatalf("event %s stored at %+v, acknowledged at %+v", id, s.pos, b.last)
			}
		}
		switch {
		case b.acked && present != len(b.ids):
			t.Fatalf("acknowledged batch %s@%d..: %d of %d events survived the crash", b.stream, b.first, present, len(b.ids))
		case present != 0 && present != len(b.ids):
			t.Fatalf("unacknowledged batch %s@%d..: %d of %d events stored, want all or none", b.stream, b.first, present, len(b.ids))
		}
		sent += present
	}
	if sent != len(have) {
		t.Fatalf("$all holds %d crash events, the ledger explains %d", len(have), sent)
	}
}

func cycles() int {
	if *crashCycles > 0 {
		return *crashCycles
	}
	if n, err := strconv.Atoi(os.Getenv("ORDERTRAIL_CRASH_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 3
}

// TestCrashDurability kills the store with SIGKILL while concurrent writers
// append, restarts it on the same directory and checks that nothing
// acknowledged was lost or changed and that no batch was torn
// (reliability.md ES-09, SQL-02).
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 loop skipped in -short mode")
	}
	const writers = 8
	dir := t.TempDir()
	l := &ledger{}
	n := cycles()
	for cycle := range n {
		ch := startChild(t, dir)
		verify(t, ch.conn, l)

		c := unclosedClient(t, ch.conn)
		killAt := l.acks.Load() + 300 + rand.Int64N(700) // a random moment, counted in acknowledgements
		var once sync.Once
		onAck := func() {
			if l.acks.Load() >= killAt {
				once.Do(func() { _ = ch.cmd.Process.Kill() })
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range writers {
			stream := fmt.Sprintf("crash-%d-%d-%s", cycle, w, uuid.NewString()[:8])
			wg.Go(func() { appender(context.Background(), t, c, l, stream, onAck, stop) })
		}
		<-ch.done // killed
		close(stop)
		wg.Wait()
		// c is not closed: an append abandoned above may still be blocked
		// inside it, and closing the client under it races (and panics).
		t.Logf("cycle %d: killed after %d acknowledged appends in total", cycle, l.acks.Load())
	}
	ch := startChild(t, dir)
	verify(t, ch.conn, l)
	ch.kill(t)

	// integrity_check on the directory the kills left behind.
	srv := startServer(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := srv.CheckIntegrity(ctx); err != nil {
		t.Fatalf("integrity check after %d kills: %v", n, err)
	}
	if acks := l.acks.Load(); acks < int64(300*n) {
		t.Fatalf("only %d appends acknowledged over %d cycles", acks, n)
	}
}

// TestSecondStartLocked checks that a second store on the same directory,
// in another process, fails fast with ErrLocked instead of becoming a second
// writer (reliability.md SQL-04), and that the lock goes with the holder.
func TestSecondStartLocked(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	tryStart := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childDirEnv+"="+dir, childModeEnv+"=lock")
		out, _ := cmd.Output()
		for line := range strings.Lines(string(out)) {
			if f := strings.Fields(line); len(f) > 0 && (f[0] == "LOCKED" || f[0] == "STARTED" || f[0] == "ERROR") {
				return strings.TrimSpace(line)
			}
		}
		return "no answer: " + string(out)
	}
	began := time.Now()
	if got := tryStart(); got != "LOCKED" {
		t.Fatalf("second Start on a held directory: %s, want ErrLocked", got)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Fatalf("second Start took %v to fail, want fast", d)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tryStart(); got != "STARTED" {
		t.Fatalf("Start after the holder closed: %s, want success", got)
	}
}

// TestBackupWhileAppending takes a backup while writers append and checks
// that the backup passes integrity_check and that its $all is a prefix of
// the live $all (reliability.md SQL-07).
func TestBackupWhileAppending(t *testing.T) {
	srv := startServer(t, t.TempDir())
	c := storetest.NewClient(t, srv.ConnectionString())
	l := &ledger{}
	started := make(chan struct{})
	var once sync.Once
	onAck := func() {
		if l.acks.Load() >= 100 {
			once.Do(func() { close(started) })
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		stream := fmt.Sprintf("crash-backup-%d-%s", w, uuid.NewString()[:8])
		wg.Go(func() { appender(context.Background(), t, c, l, stream, onAck, stop) })
	}
	<-started
	path := filepath.Join(t.TempDir(), "backup.db")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := srv.Backup(ctx, path)
	acksAtBackup := l.acks.Load()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup while appending: %v", err)
	}
	if l.acks.Load() == acksAtBackup {
		t.Logf("note: no append was acknowledged after the backup finished")
	}

	restoreDir := t.TempDir()
	if err := copyFile(path, filepath.Join(restoreDir, "events.db")); err != nil {
		t.Fatal(err)
	}
	restored := startServer(t, restoreDir)
	if err := restored.CheckIntegrity(ctx); err != nil {
		t.Fatalf("integrity check of the backup: %v", err)
	}
	live := readAllIDs(t, c)
	backup := readAllIDs(t, storetest.NewClient(t, restored.ConnectionString()))
	if len(backup) < 100 || len(backup) > len(live) {
		t.Fatalf("backup holds %d events, live store %d; want at least the 100 acknowledged before it", len(backup), len(live))
	}
	for i := range backup {
		if backup[i] != live[i] {
			t.Fatalf("backup $all differs from the live $all at index %d: %+v vs %+v", i, backup[i], live[i])
		}
	}
}

type allEntry struct {
	id     uuid.UUID
	stream string
	rev    uint64
	pos    esdb.Position
}

func readAllIDs(t *testing.T, c *esdb.Client) []allEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{From: esdb.Start{}}, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []allEntry
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read $all: %v", err)
		}
		o := ev.OriginalEvent()
		out = append(out, allEntry{o.EventID, o.StreamID, o.EventNumber, o.Position})
	}
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// unclosedClient connects a client that is never closed, for appends that
// may be abandoned while blocked inside it.
func unclosedClient(t *testing.T, conn string) *esdb.Client {
	t.Helper()
	cfg, err := esdb.ParseConnectionString(conn)
	if err != nil {
		t.Fatalf("parse connection string %q: %v", conn, err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatalf("connect to %s: %v", conn, err)
	}
	return c
}
