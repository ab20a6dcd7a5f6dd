package embedded_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/ordertrail/ordertrail/eventing/embedded"
)

// Benchmarks of the embedded store through the official client, next to
// baselines measured in the same run:
//
//	go test -run '^$' -bench . -benchtime 2s ./eventing/embedded/
//
// Compare AppendSerial with BaselineNoopAppendSerial (gRPC + client cost)
// and BaselineSQLiteSingleCommit (one fsync per commit); Append32Writers with
// BaselineNoopAppend32Writers and BaselineSQLiteBatchedInsert (what group
// commit can reach); ReadAll with BaselineSQLiteSequentialRead.
// BenchmarkInterleaved/readall and /catchup read ORDERTRAIL_BENCH_EVENTS
// events; at 1000000 run them, and BenchmarkResidentMemory, with
// -benchtime 1x, since every run of a benchmark refills its store.

// benchPayload is a 91-byte JSON body, the size used by the research runs.
var benchPayload = []byte(`{"orderId":"3f1c2a9e-6a51-4c1e-9d2f-0b7e4f1a2c3d","status":"placed","amount":1299,"n":1}`)

func benchEvent() esdb.EventData {
	return esdb.EventData{EventID: uuid.New(), EventType: "OrderPlaced", ContentType: esdb.ContentTypeJson, Data: benchPayload}
}

func benchClient(b *testing.B, conn string) *esdb.Client {
	b.Helper()
	cfg, err := esdb.ParseConnectionString(conn)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func benchServer(b *testing.B) *embedded.Server {
	b.Helper()
	srv, err := embedded.Start(context.Background(), embedded.Config{Dir: b.TempDir(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv
}

// appendLoop runs b.N single-event appends from the given number of
// goroutines, each on its own stream, through one shared client.
func appendLoop(b *testing.B, c *esdb.Client, writers int) {
	ctx := context.Background()
	// Warm up the connection outside the timer.
	if _, err := c.AppendToStream(ctx, "warmup", esdb.AppendToStreamOptions{}, benchEvent()); err != nil {
		b.Fatal(err)
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("bench-%d", w)
			for left.Add(-1) >= 0 {
				if _, err := c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{}, benchEvent()); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

func BenchmarkAppendSerial(b *testing.B) {
	appendLoop(b, benchClient(b, benchServer(b).ConnectionString()), 1)
}

func BenchmarkAppend32Writers(b *testing.B) {
	appendLoop(b, benchClient(b, benchServer(b).ConnectionString()), 32)
}

// BenchmarkBaselineNoopAppendSerial is the same client and gRPC stack with
// an Append handler that stores nothing.
func BenchmarkBaselineNoopAppendSerial(b *testing.B) {
	appendLoop(b, benchClient(b, noopServer(b)), 1)
}

func BenchmarkBaselineNoopAppend32Writers(b *testing.B) {
	appendLoop(b, benchClient(b, noopServer(b)), 32)
}

type noopStreams struct {
	streams.UnimplementedStreamsServer
}

func (noopStreams) Append(srv streams.Streams_AppendServer) error {
	for {
		if _, err := srv.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
	}
	return srv.SendAndClose(&streams.AppendResp{Result: &streams.AppendResp_Success_{Success: &streams.AppendResp_Success{
		CurrentRevisionOption: &streams.AppendResp_Success_CurrentRevision{CurrentRevision: 0},
		PositionOption: &streams.AppendResp_Success_Position{Position: &streams.AppendResp_Position{
			CommitPosition: 1, PreparePosition: 1,
		}},
	}}})
}

// noopServer serves noopStreams with the embedded store's gRPC options and
// returns its connection string.
func noopServer(b *testing.B) string {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5e9, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(17<<20),
	)
	streams.RegisterStreamsServer(s, noopStreams{})
	go s.Serve(lis)
	b.Cleanup(s.Stop)
	return "esdb://" + lis.Addr().String() + "?tls=false"
}

func BenchmarkReadAll(b *testing.B) {
	const n = 20_000
	srv := benchServer(b)
	c := benchClient(b, srv.ConnectionString())
	ctx := context.Background()
	batch := make([]esdb.EventData, 100)
	for i := 0; i < n; i += len(batch) {
		for j := range batch {
			batch[j] = benchEvent()
		}
		if _, err := c.AppendToStream(ctx, fmt.Sprintf("order-%d", i), esdb.AppendToStreamOptions{}, batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		got, err := readAllOf(c.ReadAll(ctx, esdb.ReadAllOptions{}, n))
		if err != nil || len(got) != n {
			b.Fatalf("ReadAll: %d events, %v", len(got), err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}

func openRaw(b *testing.B) *sql.DB {
	b.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(b.TempDir(), "raw.db")+"?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=5000")
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	b.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, revision INTEGER NOT NULL,
		id BLOB NOT NULL, type TEXT NOT NULL, content_type TEXT NOT NULL, created INTEGER NOT NULL, data BLOB NOT NULL, meta BLOB NOT NULL);
		CREATE UNIQUE INDEX events_stream_revision ON events (stream, revision);`); err != nil {
		b.Fatal(err)
	}
	return db
}

// rawInsert inserts n rows, commitEvery rows per FULL-synchronous commit.
func rawInsert(b *testing.B, db *sql.DB, n, commitEvery int) {
	id := uuid.New()
	for i := 0; i < n; {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j < commitEvery && i < n; j++ {
			if _, err := tx.Exec("INSERT INTO events (stream, revision, id, type, content_type, created, data, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
				"raw", i, id[:], "OrderPlaced", "application/json", 0, benchPayload, []byte{}); err != nil {
				b.Fatal(err)
			}
			i++
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaselineSQLiteSingleCommit is one row per FULL commit: the cost
// of an fsync, the floor for serial appends.
func BenchmarkBaselineSQLiteSingleCommit(b *testing.B) {
	db := openRaw(b)
	b.ResetTimer()
	rawInsert(b, db, b.N, 1)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkBaselineSQLiteBatchedInsert is 100 rows per commit.
func BenchmarkBaselineSQLiteBatchedInsert(b *testing.B) {
	db := openRaw(b)
	b.ResetTimer()
	rawInsert(b, db, b.N, 100)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkBaselineSQLiteSequentialRead scans the same rows BenchmarkReadAll
// returns, without gRPC.
func BenchmarkBaselineSQLiteSequentialRead(b *testing.B) {
	const n = 20_000
	db := openRaw(b)
	rawInsert(b, db, n, 1000)
	b.ResetTimer()
	for range b.N {
		rows, err := db.Query("SELECT position, stream, revision, id, type, content_type, created, data, meta FROM events ORDER BY position")
		if err != nil {
			b.Fatal(err)
		}
		count := 0
		for rows.Next() {
			var pos, rev, created int64
			var stream, typ, ct string
			var id, data, meta []byte
			if err := rows.Scan(&pos, &stream, &rev, &id, &typ, &ct, &created, &data, &meta); err != nil {
				b.Fatal(err)
			}
			count++
		}
		if err := rows.Err(); err != nil || count != n {
			b.Fatalf("read %d rows, %v", count, err)
		}
		rows.Close()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkInterleaved measures the embedded store and its baselines in
// alternating slices of the same run, so load from other processes hits all
// of them alike; it reports each one's cost and the ratios.
func BenchmarkInterleaved(b *testing.B) {
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		emb := benchClient(b, benchServer(b).ConnectionString())
		noop := benchClient(b, noopServer(b))
		db := openRaw(b)
		for _, c := range []*esdb.Client{emb, noop} {
			if _, err := c.AppendToStream(ctx, "warmup", esdb.AppendToStreamOptions{}, benchEvent()); err != nil {
				b.Fatal(err)
			}
		}
		var tEmb, tNoop, tRaw time.Duration
		b.ResetTimer()
		for i := range b.N {
			t0 := time.Now()
			if _, err := emb.AppendToStream(ctx, "s", esdb.AppendToStreamOptions{}, benchEvent()); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if _, err := noop.AppendToStream(ctx, "s", esdb.AppendToStreamOptions{}, benchEvent()); err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			rawInsertAt(b, db, i, 1)
			t3 := time.Now()
			tEmb, tNoop, tRaw = tEmb+t1.Sub(t0), tNoop+t2.Sub(t1), tRaw+t3.Sub(t2)
		}
		reportRatios(b, b.N, tEmb, tNoop, tRaw, "noop-grpc", "sqlite-1-row-commit")
	})
	b.Run("32writers", func(b *testing.B) {
		emb := benchClient(b, benchServer(b).ConnectionString())
		noop := benchClient(b, noopServer(b))
		db := openRaw(b)
		const slice = 640
		var tEmb, tNoop, tRaw time.Duration
		done := 0
		b.ResetTimer()
		for done < b.N {
			n := min(slice, b.N-done)
			tEmb += timeParallel(b, emb, n)
			tNoop += timeParallel(b, noop, n)
			t0 := time.Now()
			rawInsertAt(b, db, done, n)
			tRaw += time.Since(t0)
			done += n
		}
		reportRatios(b, b.N, tEmb, tNoop, tRaw, "noop-grpc", "sqlite-batched-insert")
	})
	// readall and catchup read the whole log, ORDERTRAIL_BENCH_EVENTS
	// events (default 10,000), through the client and as a raw scan.
	n := benchEvents(b, 10_000)
	for _, read := range []struct {
		name  string
		count func(*esdb.Client, int) (int, error)
	}{{"readall", countReadAll}, {"catchup", countCatchUp}} {
		b.Run(read.name, func(b *testing.B) {
			emb := benchClient(b, benchServer(b).ConnectionString())
			fillStore(b, emb, n)
			db := openRaw(b)
			rawInsert(b, db, n, 1000)
			var tEmb, tRaw time.Duration
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if got, err := read.count(emb, n); err != nil || got != n {
					b.Fatalf("%s: %d events, %v", read.name, got, err)
				}
				t1 := time.Now()
				rawScan(b, db, n)
				tEmb, tRaw = tEmb+t1.Sub(t0), tRaw+time.Since(t1)
			}
			reportReadRatios(b, n, tEmb, tRaw)
		})
	}
}

func reportReadRatios(b *testing.B, n int, emb, raw time.Duration) {
	b.ReportMetric(float64(emb.Nanoseconds())/float64(b.N*n), "embedded-ns/event")
	b.ReportMetric(float64(raw.Nanoseconds())/float64(b.N*n), "sqlite-scan-ns/event")
	b.ReportMetric(float64(emb)/float64(raw), "x-sqlite-scan")
}

// benchEvents is ORDERTRAIL_BENCH_EVENTS, or def when unset; use 1000000
// for the full-size runs.
func benchEvents(b *testing.B, def int) int {
	v := os.Getenv("ORDERTRAIL_BENCH_EVENTS")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 100 || n%100 != 0 {
		b.Fatalf("ORDERTRAIL_BENCH_EVENTS=%q: want a multiple of 100, at least 100", v)
	}
	return n
}

// fillStore appends n benchmark events in batches of 100, one stream per
// batch, from a few writers.
func fillStore(b *testing.B, c *esdb.Client, n int) {
	b.Helper()
	const batchSize, writers = 100, 4
	var next atomic.Int64
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([]esdb.EventData, batchSize)
			for i := int(next.Add(batchSize)) - batchSize; i < n; i = int(next.Add(batchSize)) - batchSize {
				for j := range batch {
					batch[j] = benchEvent()
				}
				if _, err := c.AppendToStream(context.Background(), fmt.Sprintf("order-%d", i), esdb.AppendToStreamOptions{}, batch...); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// countReadAll reads $all forwards and counts the events, keeping none.
func countReadAll(c *esdb.Client, n int) (int, error) {
	rs, err := c.ReadAll(context.Background(), esdb.ReadAllOptions{}, uint64(n))
	if err != nil {
		return 0, err
	}
	defer rs.Close()
	count := 0
	for {
		if _, err := rs.Recv(); errors.Is(err, io.EOF) {
			return count, nil
		} else if err != nil {
			return count, err
		}
		count++
	}
}

// countCatchUp subscribes to $all from the start and counts the events
// delivered before caught_up.
func countCatchUp(c *esdb.Client, n int) (int, error) {
	sub, err := c.SubscribeToAll(context.Background(), esdb.SubscribeToAllOptions{From: esdb.Start{}})
	if err != nil {
		return 0, err
	}
	defer sub.Close()
	count := 0
	for {
		ev := sub.Recv()
		switch {
		case ev.EventAppeared != nil:
			count++
		case ev.CaughtUp != nil:
			return count, nil
		case ev.SubscriptionDropped != nil:
			return count, ev.SubscriptionDropped.Error
		}
	}
}

// BenchmarkResidentMemory holds ORDERTRAIL_BENCH_EVENTS events (default
// 100,000; the goal is under 200 MB at 1000000) and reports the resident size
// of the test process, server and client together, after a full ReadAll and
// after a catch-up subscription over all of them. The loop body is one
// ReadAll and one catch-up.
func BenchmarkResidentMemory(b *testing.B) {
	n := benchEvents(b, 100_000)
	c := benchClient(b, benchServer(b).ConnectionString())
	fillStore(b, c, n)
	afterAppend := vmRSS(b)
	b.ResetTimer() // also drops metrics reported so far
	for range b.N {
		if got, err := countReadAll(c, n); err != nil || got != n {
			b.Fatalf("ReadAll: %d events, %v", got, err)
		}
		b.ReportMetric(vmRSS(b), "MB-rss-after-readall")
		if got, err := countCatchUp(c, n); err != nil || got != n {
			b.Fatalf("SubscribeToAll: %d events before catching up, %v", got, err)
		}
		b.ReportMetric(vmRSS(b), "MB-rss-after-catchup")
	}
	b.StopTimer()
	b.ReportMetric(afterAppend, "MB-rss-after-append")
	b.ReportMetric(procStatusMB(b, "VmHWM"), "MB-rss-peak")
}

func vmRSS(b *testing.B) float64 { return procStatusMB(b, "VmRSS") }

// procStatusMB reads a "kB" line of /proc/self/status, in MB.
func procStatusMB(b *testing.B, key string) float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				b.Fatalf("parse %s: %v", line, err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatalf("no %s in /proc/self/status", key)
	return 0
}

func reportRatios(b *testing.B, n int, emb, base1, base2 time.Duration, name1, name2 string) {
	b.ReportMetric(float64(emb.Nanoseconds())/float64(n), "embedded-ns/append")
	b.ReportMetric(float64(base1.Nanoseconds())/float64(n), name1+"-ns/append")
	b.ReportMetric(float64(base2.Nanoseconds())/float64(n), name2+"-ns/row")
	b.ReportMetric(float64(emb)/float64(base1), "x-"+name1)
	b.ReportMetric(float64(emb)/float64(base2), "x-"+name2)
}

// timeParallel runs n single-event appends from 32 goroutines.
func timeParallel(b *testing.B, c *esdb.Client, n int) time.Duration {
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if _, err := c.AppendToStream(context.Background(), fmt.Sprintf("w-%d", w), esdb.AppendToStreamOptions{}, benchEvent()); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(t0)
}

// rawInsertAt inserts n rows in one FULL commit, revisions from start on.
func rawInsertAt(b *testing.B, db *sql.DB, start, n int) {
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	id := uuid.New()
	for i := start; i < start+n; i++ {
		if _, err := tx.Exec("INSERT INTO events (stream, revision, id, type, content_type, created, data, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			"raw", i, id[:], "OrderPlaced", "application/json", 0, benchPayload, []byte{}); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

func rawScan(b *testing.B, db *sql.DB, n int) {
	rows, err := db.Query("SELECT position, stream, revision, id, type, content_type, created, data, meta FROM events ORDER BY position")
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	count := 0
	for rows.Next() {
		var pos, rev, created int64
		var stream, typ, ct string
		var id, data, meta []byte
		if err := rows.Scan(&pos, &stream, &rev, &id, &typ, &ct, &created, &data, &meta); err != nil {
			b.Fatal(err)
		}
		count++
	}
	if err := rows.Err(); err != nil || count != n {
		b.Fatalf("scanned %d rows, %v", count, err)
	}
}
