package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/eventing/embedded"
	"github.com/ordertrail/ordertrail/readstore"
)

// The machine these run on is shared and noisy, so each benchmark measures
// its baseline in the same run and reports the ratio. Run them with
//
//	go test -run '^$' -bench 'BenchmarkRebuild|BenchmarkProjectionLag' -benchtime=1x -count=3 .
//
// and take the median of the three runs.

// BenchmarkRebuild compares a full read-model rebuild (the offline
// `ordertrail rebuild` path: a fresh readstore fed by RunSubscription
// through the service's projector) with a raw sequential scan of the same
// events straight from the embedded store's SQLite file. Events:
// $ORDERTRAIL_BENCH_EVENTS (default 100,000). Goal: rebuild/raw ≥ 0.1.
func BenchmarkRebuild(b *testing.B) {
	n := 100_000
	if v := os.Getenv("ORDERTRAIL_BENCH_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("ORDERTRAIL_BENCH_EVENTS=%q: want a positive integer", v)
		}
	}
	pbServiceGC(b)
	ctx := b.Context()
	dir := b.TempDir()
	storeDir := filepath.Join(dir, "eventstore")
	srv, client := pbStore(b, storeDir)
	codec := eventing.NewCodec(eventing.DefaultUpcasters("USD"))
	seedStart := time.Now()
	total := pbSeed(b, client, codec, n)
	b.Logf("seeded %d events in %v", total, time.Since(seedStart).Round(time.Millisecond))

	var raw, rebuild time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		rows := pbScan(b, filepath.Join(storeDir, "events.db"))
		raw += time.Since(start)
		if rows != total {
			b.Fatalf("raw scan read %d rows, want %d", rows, total)
		}

		start = time.Now()
		applied := pbRebuild(ctx, b, client, codec, filepath.Join(dir, fmt.Sprintf("readmodel-%d.db", i)))
		rebuild += time.Since(start)
		if applied != total {
			b.Fatalf("rebuild applied %d events, want %d", applied, total)
		}
	}
	b.StopTimer()
	rawRate := float64(total*b.N) / raw.Seconds()
	rebuildRate := float64(total*b.N) / rebuild.Seconds()
	b.ReportMetric(float64(total), "events")
	b.ReportMetric(rawRate, "raw_events/s")
	b.ReportMetric(rebuildRate, "rebuild_events/s")
	b.ReportMetric(rebuildRate/rawRate, "rebuild/raw")
	_ = srv
}

// pbServiceGC gives the benchmark the garbage collector target that the
// service sets for itself (main), unless GOGC is set.
func pbServiceGC(b *testing.B) {
	if os.Getenv("GOGC") == "" {
		prev := debug.SetGCPercent(defaultGCPercent)
		b.Cleanup(func() { debug.SetGCPercent(prev) })
	}
}

// pbStore starts an embedded store on dir and returns it with a client.
func pbStore(b *testing.B, dir string) (*embedded.Server, *esdb.Client) {
	b.Helper()
	srv, err := embedded.Start(b.Context(), embedded.Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	cfg, err := esdb.ParseConnectionString(srv.ConnectionString())
	if err != nil {
		b.Fatal(err)
	}
	cfg.Logger = esdb.NoopLogging()
	client, err := esdb.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	return srv, client
}

// pbSeed appends at least n events of realistic order lifecycles, one
// append per order, from 32 concurrent writers, and returns the count.
func pbSeed(b *testing.B, client *esdb.Client, codec *eventing.Codec, n int) int {
	b.Helper()
	ctx := b.Context()
	var appended atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for w := range 32 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 42))
			for appended.Load() < int64(n) && failed.Load() == nil {
				id := uuid.NewString()
				events, err := pbLifecycle(r, id, codec)
				if err == nil {
					appended.Add(int64(len(events)))
					_, err = client.AppendToStream(ctx, eventing.OrderStream(id),
						esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, events...)
				}
				if err != nil {
					failed.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatalf("seed: %v", *err)
	}
	return int(appended.Load())
}

// pbLifecycle returns the encoded events of one order: created with one to
// three items, sometimes changed, then mostly confirmed, paid, shipped and
// delivered, sometimes cancelled or corrected (about five events).
func pbLifecycle(r *rand.Rand, id string, codec *eventing.Codec) ([]esdb.EventData, error) {
	o := domain.New(id)
	eur := func(minor int64) domain.Money { return domain.Money{Amount: minor, Currency: "EUR"} }
	items := make([]domain.NewItem, 1+r.IntN(3))
	for i := range items {
		items[i] = domain.NewItem{SKU: fmt.Sprintf("SKU-%04d", r.IntN(10_000)*10+i), Quantity: 1 + r.Int64N(4), UnitPrice: eur(100 + r.Int64N(10_000))}
	}
	steps := []func() error{func() error { return o.Create(fmt.Sprintf("customer-%d", r.IntN(5_000)), "EUR", items) }}
	if r.IntN(4) == 0 {
		steps = append(steps, func() error {
			return o.AddItem(domain.NewItem{SKU: "EXTRA-1", Quantity: 1, UnitPrice: eur(250)})
		})
	}
	if r.IntN(5) == 0 {
		steps = append(steps, func() error { return o.ChangeQuantity(items[0].SKU, items[0].Quantity+1) })
	}
	switch k := r.IntN(10); {
	case k == 0:
		steps = append(steps, func() error { return o.Cancel("customer request") })
	case k == 1: // stays open
	default:
		steps = append(steps, o.Confirm)
		if r.IntN(8) == 0 {
			steps = append(steps, func() error { return o.Cancel("out of stock") })
			break
		}
		steps = append(steps, func() error { return o.MarkPaid(o.Total(), "pay-"+id[:8]) })
		if r.IntN(20) == 0 {
			steps = append(steps, func() error { return o.CorrectAmount(0, eur(o.Total().Amount+100), "price fix") })
		}
		if r.IntN(5) != 0 {
			steps = append(steps, func() error { return o.Ship("DHL", "TRK-"+id[:8]) })
			if r.IntN(4) != 0 {
				steps = append(steps, o.Deliver)
			}
		}
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	changes := o.Changes()
	out := make([]esdb.EventData, len(changes))
	for i, c := range changes {
		ed, err := codec.Encode(uuid.New(), c.Event, eventing.Metadata{CorrelationID: id, CausationID: id, Actor: "bench"})
		if err != nil {
			return nil, err
		}
		out[i] = ed
	}
	return out, nil
}

// pbScan reads every row and column of the events table in position
// order, read-only, and returns the row count.
func pbScan(b *testing.B, path string) int {
	b.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(b.Context(), `SELECT position, stream, revision, id, type, content_type, created, data, meta
		FROM events ORDER BY position`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var (
		position, revision, created int64
		stream, typ, contentType    string
		id, data, meta              []byte
		count                       int
	)
	for rows.Next() {
		if err := rows.Scan(&position, &stream, &revision, &id, &typ, &contentType, &created, &data, &meta); err != nil {
			b.Fatal(err)
		}
		count++
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return count
}

// pbRebuild is what `ordertrail rebuild` does offline (rebuildInto) and
// returns the number of events applied.
func pbRebuild(ctx context.Context, b *testing.B, client *esdb.Client, codec *eventing.Codec, path string) int {
	b.Helper()
	fresh, applied, err := rebuildInto(ctx, client, codec, path, readstore.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatalf("rebuild: %v", err)
	}
	if err := fresh.Close(); err != nil {
		b.Fatal(err)
	}
	return int(applied)
}

// BenchmarkProjectionLag measures, at a steady load of half the maximum
// command rate, the time from a command's append acknowledgement to the
// moment its event is both committed to the read model and delivered to a
// live subscriber (readstore.Live.Subscribe, which orderChanged uses). The
// baseline is one durable SQLite commit (WAL, synchronous=FULL, one-row
// insert), measured in the same run twice: during the load, one commit
// every 4 ms, so it meets the same contention for the two cores as the
// projection (commit_p99_ms, the goal's baseline), and alone after it
// (idle_commit_p99_ms). Goal: p99 lag / p99 commit ≤ 5.
func BenchmarkProjectionLag(b *testing.B) {
	pbServiceGC(b)
	ctx := b.Context()
	dir := b.TempDir()
	_, client := pbStore(b, filepath.Join(dir, "eventstore"))
	codec := eventing.NewCodec(eventing.DefaultUpcasters("USD"))
	repo := eventing.NewRepository(client, codec, eventing.RepositoryOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rm, err := readstore.Open(ctx, filepath.Join(dir, "readmodel.db"), readstore.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rm.Close() })
	live := readstore.NewLive(rm)
	rec := newPBRecorder()
	h := &pbTimedProjector{Projector: &readstore.Projector{Live: live}, rec: rec}
	runCtx, stopRun := context.WithCancel(ctx)
	caughtUp := make(chan struct{})
	var once sync.Once
	runDone := make(chan error, 1)
	go func() {
		runDone <- eventing.RunSubscription(runCtx, client, codec, h, eventing.SubscriptionOptions{
			OnStatus: func(st eventing.SubscriptionStatus) {
				if st.CaughtUp {
					once.Do(func() { close(caughtUp) })
				}
			},
		})
	}()
	b.Cleanup(func() { stopRun(); <-runDone })
	select {
	case <-caughtUp:
	case err := <-runDone:
		b.Fatalf("subscription: %v", err)
	}
	sub, err := live.Subscribe(runCtx, 0, readstore.ChangeFilter{FromNow: true})
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for c := range sub.C {
			rec.mark(&rec.notified, c.Position)
		}
	}()

	create := func() (uint64, error) {
		res, err := repo.Create(ctx, uuid.NewString(), eventing.CommandMeta{Actor: "bench"}, func(o *domain.Order) error {
			return o.Create("customer-1", "EUR", []domain.NewItem{{SKU: "A-1", Quantity: 2, UnitPrice: domain.Money{Amount: 425, Currency: "EUR"}}})
		})
		return res.Position, err
	}

	var lags, commitLags, fromSend, commits, idle []time.Duration
	var maxRate, rate float64
	early := 0 // events committed and notified before the client had its acknowledgement
	b.ResetTimer()
	for range b.N {
		// The highest rate 16 concurrent clients reach in one second.
		var count atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		deadline := start.Add(time.Second)
		for range 16 {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					if _, err := create(); err != nil {
						b.Error(err)
						return
					}
					count.Add(1)
				}
			})
		}
		wg.Wait()
		maxRate = float64(count.Load()) / time.Since(start).Seconds()

		// Half of it, paced by a ticker, for three seconds.
		rate = maxRate / 2
		interval := time.Duration(float64(time.Second) / rate)
		ticks := int(3 * rate)
		acks := make([]struct {
			pos      uint64
			sent, at time.Time
		}, ticks)
		baseline := pbStartCommits(b, filepath.Join(dir, "baseline.db"), 4*time.Millisecond)
		ticker := time.NewTicker(interval)
		for i := range ticks {
			<-ticker.C
			wg.Go(func() {
				acks[i].sent = time.Now()
				pos, err := create()
				acks[i].at = time.Now()
				if err != nil {
					b.Error(err)
					return
				}
				acks[i].pos = pos
			})
		}
		ticker.Stop()
		commits = append(commits, baseline()...)
		wg.Wait()
		var last uint64
		for _, a := range acks {
			last = max(last, a.pos)
		}
		rec.waitBoth(ctx, b, last, 30*time.Second)
		for _, a := range acks {
			committed, notified := rec.get(a.pos)
			lags = append(lags, max(committed.Sub(a.at), notified.Sub(a.at), 0))
			fromSend = append(fromSend, max(committed.Sub(a.sent), notified.Sub(a.sent)))
			commitLags = append(commitLags, max(committed.Sub(a.at), 0))
			if committed.Before(a.at) && notified.Before(a.at) {
				early++
			}
		}

		idle = append(idle, pbCommitLatencies(b, filepath.Join(dir, "baseline.db"), 2000)...)
	}
	b.StopTimer()
	lagP99, commitP99 := pbPercentile(lags, 0.99), pbPercentile(commits, 0.99)
	b.ReportMetric(maxRate, "max_mutations/s")
	b.ReportMetric(rate, "load_mutations/s")
	b.ReportMetric(float64(pbPercentile(lags, 0.50).Microseconds())/1000, "lag_p50_ms")
	b.ReportMetric(float64(lagP99.Microseconds())/1000, "lag_p99_ms")
	b.ReportMetric(float64(pbPercentile(commits, 0.50).Microseconds())/1000, "commit_p50_ms")
	b.ReportMetric(float64(commitP99.Microseconds())/1000, "commit_p99_ms")
	b.ReportMetric(float64(lagP99)/float64(commitP99), "lag_p99/commit_p99")
	b.ReportMetric(float64(pbPercentile(idle, 0.99).Microseconds())/1000, "idle_commit_p99_ms")
	b.ReportMetric(float64(lagP99)/float64(pbPercentile(idle, 0.99)), "lag_p99/idle_commit_p99")
	b.ReportMetric(float64(pbPercentile(commitLags, 0.99).Microseconds())/1000, "lag_committed_only_p99_ms")
	rec.mu.Lock()
	b.ReportMetric(float64(pbPercentile(rec.applies, 0.99).Microseconds())/1000, "apply_batch_p99_ms")
	b.ReportMetric(float64(pbPercentile(rec.applies, 0.50).Microseconds())/1000, "apply_batch_p50_ms")
	b.ReportMetric(float64(len(lags))/float64(len(rec.applies)), "events/batch")
	rec.mu.Unlock()
	b.ReportMetric(float64(pbPercentile(fromSend, 0.99).Microseconds())/1000, "send_to_visible_p99_ms")
	b.ReportMetric(float64(early)/float64(len(lags)), "visible_before_ack")
}

// pbTimedProjector is the service's projector that also records when each
// event's batch was committed.
type pbTimedProjector struct {
	*readstore.Projector
	rec *pbRecorder
}

func (p *pbTimedProjector) HandleBatch(ctx context.Context, events []eventing.Envelope, checkpoint uint64) error {
	start := time.Now()
	if err := p.Projector.HandleBatch(ctx, events, checkpoint); err != nil {
		return err
	}
	p.rec.mu.Lock()
	p.rec.applies = append(p.rec.applies, time.Since(start))
	p.rec.mu.Unlock()
	for _, e := range events {
		p.rec.mark(&p.rec.committed, e.Position)
	}
	return nil
}

// pbRecorder holds the commit and notification time of every position.
type pbRecorder struct {
	mu        sync.Mutex
	committed map[uint64]time.Time
	notified  map[uint64]time.Time
	changed   chan struct{}   // closed and replaced on every mark
	applies   []time.Duration // duration of every HandleBatch
}

func newPBRecorder() *pbRecorder {
	return &pbRecorder{committed: map[uint64]time.Time{}, notified: map[uint64]time.Time{}, changed: make(chan struct{})}
}

func (r *pbRecorder) mark(m *map[uint64]time.Time, pos uint64) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	(*m)[pos] = now
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *pbRecorder) get(pos uint64) (committed, notified time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.committed[pos], r.notified[pos]
}

// waitBoth waits until pos is committed and notified.
func (r *pbRecorder) waitBoth(ctx context.Context, b *testing.B, pos uint64, wait time.Duration) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		r.mu.Lock()
		_, c := r.committed[pos]
		_, n := r.notified[pos]
		ch := r.changed
		r.mu.Unlock()
		if c && n {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			b.Fatalf("position %d not committed (%v) and notified (%v) within %v", pos, c, n, wait)
		case <-ctx.Done():
			b.Fatal(ctx.Err())
		}
	}
}

// pbCommitLatencies times n one-row autocommit inserts into a WAL database
// with synchronous=FULL: one durable SQLite commit each.
func pbCommitLatencies(b *testing.B, path string, n int) []time.Duration {
	b.Helper()
	commit := pbCommitter(b, path)
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = commit()
	}
	return out
}

// pbStartCommits times one durable commit every interval until the
// returned func is called, which returns the latencies.
func pbStartCommits(b *testing.B, path string, interval time.Duration) func() []time.Duration {
	b.Helper()
	commit := pbCommitter(b, path)
	stop := make(chan struct{})
	done := make(chan []time.Duration)
	go func() {
		var out []time.Duration
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				done <- out
				return
			case <-t.C:
				out = append(out, commit())
			}
		}
	}()
	return func() []time.Duration {
		close(stop)
		return <-done
	}
}

// pbCommitter returns a func that inserts one 300-byte row in a durable
// commit (WAL, synchronous=FULL) into the database at path and returns how
// long that took. The database closes with the benchmark.
func pbCommitter(b *testing.B, path string) func() time.Duration {
	b.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=FULL")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	stmt, err := db.Prepare(`INSERT INTO t (v) VALUES (?)`)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stmt.Close() })
	payload := make([]byte, 300)
	return func() time.Duration {
		start := time.Now()
		if _, err := stmt.Exec(payload); err != nil {
			b.Error(err)
		}
		return time.Since(start)
	}
}

func pbPercentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
