package readstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"
)

//go:embed *.sql
var migrations embed.FS

// Projection is the name of the one projection that maintains every read
// model table: its checkpoint, status and poison policy use this key.
const Projection = "readmodel"

// PoisonPolicy says what the projection does with an event it cannot apply.
type PoisonPolicy int

const (
	// Halt stops the projection before the poison event (the default).
	Halt PoisonPolicy = iota
	// Park records the event in dead_letters and moves on.
	Park
)

// Options configure a Store; the zero value is usable.
type Options struct {
	// Poison maps a projection name (Projection) to its policy.
	Poison map[string]PoisonPolicy
	// WaitTimeout bounds WaitFor; 3 s when zero.
	WaitTimeout time.Duration
	// Logger receives poison-event reports; slog.Default() when nil.
	Logger *slog.Logger
}

// Store is the read-model database: one writer connection for Apply and a
// pool of read-only connections for queries and subscriptions.
type Store struct {
	w, r   *sqlx.DB
	path   string
	opts   Options
	log    *slog.Logger
	policy PoisonPolicy

	applyMu sync.Mutex // serialises Apply, Resume and the broker publish order

	mu         sync.Mutex // guards the fields below
	checkpoint uint64
	hasCP      bool
	halted     *HaltedError
	committed  chan struct{} // closed and replaced on every commit
	recent     recentChanges
	closed     bool

	done chan struct{} // closed by Close

	cp      *sqlx.DB      // connection for WAL checkpoints
	cpDone  chan struct{} // closed when checkpointLoop returns
	changes broker[Change]
	trends  broker[Trend]

	cache orderCache // orders of recent commits; Apply's, under applyMu

	// bulk is set while a store made by OpenFresh is in bulk-load mode.
	bulk atomic.Bool

	failHook func(Event) error // test hook: fails Apply before an event
}

// Open opens or creates the read-model database at path and applies the
// embedded migrations that are not yet recorded in schema_migrations.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	return open(ctx, path, opts, false)
}

// OpenFresh creates a new, empty read-model database at path and fails with
// ErrExists if the file is already there. A rebuild fills it from the full
// history while the current store keeps serving; see Live.
//
// The fresh store starts in bulk-load mode, until EndBulkLoad: its
// secondary indexes are left out, to be built once at the end instead of
// row by row, and it writes straight into the database file, with no WAL
// and no syncs, since a rebuild that dies before EndBulkLoad discards the
// file. Queries work in bulk-load mode, only slower, and they hold up
// commits while they read.
func OpenFresh(ctx context.Context, path string, opts Options) (*Store, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%w: %s", ErrExists, path)
	}
	if err != nil {
		return nil, fmt.Errorf("create read store %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("create read store %s: %w", path, err)
	}
	return open(ctx, path, opts, true)
}

// driverName is go-sqlite3 with the settings every read-model connection
// needs that its DSN cannot carry: temporary storage in memory. A batch's
// upserts open statement journals, which SQLite otherwise writes to a
// temporary file, costing as many writes as the WAL itself.
const driverName = "sqlite3_readstore"

func init() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec(`PRAGMA temp_store=MEMORY`, nil)
		return err
	}})
}

func open(ctx context.Context, path string, opts Options, bulk bool) (*Store, error) {
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = 3 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	const pragmas = "_foreign_keys=on&_busy_timeout=5000&_stmt_cache_size=64"
	// synchronous=NORMAL may lose the last commits on power loss, but the
	// checkpoint is in the same transaction, so they are simply re-applied.
	journal := "_journal_mode=WAL&_synchronous=NORMAL"
	if bulk {
		journal = "_journal_mode=MEMORY&_synchronous=OFF"
	}
	// The writer gets a page cache of up to 128 MiB (SQLite's default is
	// 2 MiB): a batch rewrites pages all over the indexes, and reading them
	// back from the file cost more than the writes.
	w, err := sqlx.Open(driverName, "file:"+path+"?"+journal+"&"+pragmas+"&_txlock=immediate&_cache_size=-131072")
	if err != nil {
		return nil, fmt.Errorf("open read store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	s := &Store{w: w, path: path, opts: opts, log: opts.Logger, policy: opts.Poison[Projection],
		committed: make(chan struct{}), done: make(chan struct{})}
	s.bulk.Store(bulk)
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open read store %s: %w", path, err)
	}
	// Readers and the checkpointer take the journal mode the writer set:
	// WAL is recorded in the file.
	r, err := sqlx.Open(driverName, "file:"+path+"?"+pragmas+"&_query_only=true")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open read store %s: %w", path, err)
	}
	// Keep every reader open: database/sql keeps 2 idle by default, and
	// a connection opened again runs its pragmas and prepares its
	// statements afresh.
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	s.r = r
	// WAL checkpoints fsync; run them aside on a connection of their own
	// instead of inside whichever commit crosses the WAL size threshold, so
	// a batch's commit never waits for one.
	if _, err := w.ExecContext(ctx, `PRAGMA wal_autocheckpoint=0`); err != nil {
		s.Close()
		return nil, fmt.Errorf("open read store %s: %w", path, err)
	}
	cp, err := sqlx.Open(driverName, "file:"+path+"?_synchronous=NORMAL&"+pragmas)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open read store %s: %w", path, err)
	}
	cp.SetMaxOpenConns(1)
	s.cp = cp
	s.cpDone = make(chan struct{})
	go s.checkpointLoop()
	build := s.buildDeferredIndexes
	if bulk {
		build = s.deferIndexes
	}
	if err := build(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open read store %s: %w", path, err)
	}
	if err := s.loadState(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open read store %s: %w", path, err)
	}
	return s, nil
}

// deferIndexes drops the secondary indexes of a fresh store and records,
// in the same transaction, the statements that build them again.
func (s *Store) deferIndexes(ctx context.Context) error {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("bulk load: %w", err)
	}
	defer tx.Rollback()
	var indexes []struct {
		Name string `db:"name"`
		SQL  string `db:"sql"`
	}
	// Automatic indexes (primary keys, UNIQUE) have no sql and stay.
	if err := tx.SelectContext(ctx, &indexes,
		`SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name`); err != nil {
		return fmt.Errorf("bulk load: %w", err)
	}
	for _, ix := range indexes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO deferred_indexes (name, sql) VALUES (?, ?)`, ix.Name, ix.SQL); err != nil {
			return fmt.Errorf("bulk load: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DROP INDEX "`+ix.Name+`"`); err != nil {
			return fmt.Errorf("bulk load: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("bulk load: %w", err)
	}
	return nil
}

// buildDeferredIndexes builds the indexes deferIndexes dropped, if any.
func (s *Store) buildDeferredIndexes(ctx context.Context) error {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("build deferred indexes: %w", err)
	}
	defer tx.Rollback()
	var stmts []string
	if err := tx.SelectContext(ctx, &stmts, `SELECT sql FROM deferred_indexes ORDER BY name`); err != nil {
		return fmt.Errorf("build deferred indexes: %w", err)
	}
	if len(stmts) == 0 {
		return nil
	}
	for _, stmt := range stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("build deferred indexes: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM deferred_indexes`); err != nil {
		return fmt.Errorf("build deferred indexes: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("build deferred indexes: %w", err)
	}
	return nil
}

// EndBulkLoad ends the bulk-load mode of a store made by OpenFresh: it
// builds the secondary indexes, moves the database to WAL with synced
// commits, as Open has it, and syncs everything applied so far to disk.
// It does nothing on a store not in bulk-load mode; Live.Swap calls it.
func (s *Store) EndBulkLoad(ctx context.Context) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if !s.bulk.Load() {
		return nil
	}
	if err := s.buildDeferredIndexes(ctx); err != nil {
		return fmt.Errorf("end bulk load: %w", err)
	}
	var mode string
	if err := s.w.GetContext(ctx, &mode, `PRAGMA journal_mode=WAL`); err != nil {
		return fmt.Errorf("end bulk load: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("end bulk load: journal mode is %q, want wal", mode)
	}
	if _, err := s.w.ExecContext(ctx, `PRAGMA synchronous=NORMAL`); err != nil {
		return fmt.Errorf("end bulk load: %w", err)
	}
	if err := syncFile(s.path); err != nil {
		return fmt.Errorf("end bulk load: %w", err)
	}
	s.bulk.Store(false)
	return nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
}

// Close ends every subscription with ErrClosed, wakes WaitFor callers and
// closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.changes.close()
	s.trends.close()
	if s.cpDone != nil {
		<-s.cpDone
	}
	s.applyMu.Lock() // let a running Apply finish
	defer s.applyMu.Unlock()
	var errs []error
	if s.cp != nil {
		errs = append(errs, s.cp.Close())
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	return errors.Join(errs...)
}

// checkpointInterval is how often the WAL is copied back into the
// database file.
const checkpointInterval = 500 * time.Millisecond

// checkpointLoop checkpoints the WAL in the background until Close, with
// PASSIVE checkpoints that never block readers or the writer.
func (s *Store) checkpointLoop() {
	defer close(s.cpDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if err := s.checkpointWAL(); err != nil {
				s.log.Warn("read-model WAL checkpoint", "err", err)
			}
		}
	}
}

// walRestartFrames is the WAL length, in frames, past which a checkpoint
// makes sure the next batch starts the WAL over.
const walRestartFrames = 4096

// checkpointWAL copies the WAL back into the database file. SQLite starts
// the WAL over only when a write transaction begins with every frame
// copied, which a PASSIVE checkpoint alone never achieves while batches
// keep committing: the WAL would then grow without bound, and every
// commit with it. So when the WAL is long, a second checkpoint runs while
// Apply waits; it copies only what was committed during the first one.
func (s *Store) checkpointWAL() error {
	if s.bulk.Load() {
		return nil // no WAL yet
	}
	var busy, frames, copied int
	if err := s.cp.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
		return err
	}
	if frames < walRestartFrames {
		return nil
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	_, err := s.cp.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
	return err
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx,
		`CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	names, err := fs.Glob(migrations, "*.sql")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := s.migrateOne(ctx, name); err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
	}
	_, err = s.w.ExecContext(ctx, `INSERT OR IGNORE INTO projection_status (projection, state) VALUES (?, 'RUNNING')`, Projection)
	return err
}

func (s *Store) migrateOne(ctx context.Context, name string) error {
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.GetContext(ctx, &n, `SELECT count(*) FROM schema_migrations WHERE version = ?`, name); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	script, err := migrations.ReadFile(name)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, string(script)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES (?)`, name); err != nil {
		return err
	}
	return tx.Commit()
}

// loadState reads the checkpoint and the halted state into memory.
func (s *Store) loadState(ctx context.Context) error {
	var cp sql.NullInt64
	err := s.w.GetContext(ctx, &cp, `SELECT position FROM checkpoints WHERE projection = ?`, Projection)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("load checkpoint: %w", err)
	}
	var st statusRow
	if err := s.w.GetContext(ctx, &st, `SELECT state, halted_position, error FROM projection_status WHERE projection = ?`, Projection); err != nil {
		return fmt.Errorf("load projection status: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpoint, s.hasCP = uint64(cp.Int64), cp.Valid
	if st.State == stateHalted {
		s.halted = &HaltedError{Projection: Projection, Position: uint64(st.HaltedPosition.Int64), Err: errors.New(st.Error)}
	}
	return nil
}

const (
	stateRunning = "RUNNING"
	stateHalted  = "HALTED"
)

type statusRow struct {
	State          string        `db:"state"`
	HaltedPosition sql.NullInt64 `db:"halted_position"`
	Error          string        `db:"error"`
}

// Checkpoint returns the position up to which every event is applied, or
// 0 before the first commit.
func (s *Store) Checkpoint(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.checkpoint, nil
}

// WaitFor blocks until the checkpoint reaches position, for read-your-writes
// after a command that returned that position. It fails with an error
// wrapping ErrStale after Options.WaitTimeout, and at once (also wrapping
// the *HaltedError) when the projection is halted before position.
func (s *Store) WaitFor(ctx context.Context, position uint64) error {
	timer := time.NewTimer(s.opts.WaitTimeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		cp, has, halted, closed, ch := s.checkpoint, s.hasCP, s.halted, s.closed, s.committed
		s.mu.Unlock()
		switch {
		case has && cp >= position:
			return nil
		case closed:
			return ErrClosed
		case halted != nil:
			return fmt.Errorf("%w: at %d, want %d: %w", ErrStale, cp, position, halted)
		}
		select {
		case <-ch:
		case <-s.done:
			return ErrClosed
		case <-timer.C:
			return fmt.Errorf("%w: at %d after %s, want %d (%d behind)", ErrStale, cp, s.opts.WaitTimeout, position, position-cp)
		case <-ctx.Done():
			return fmt.Errorf("wait for position %d: %w", position, ctx.Err())
		}
	}
}
