package embedded

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

const (
	// deletedRevision is .NET long.MaxValue: the revision of a tombstone and
	// the $tb value of a soft-deleted stream.
	deletedRevision = math.MaxInt64

	maxBatchRequests = 512
	tailMaxRecords   = 8192
	tailMaxBytes     = 16 << 20
	recentIDsLimit   = 100_000
)

const schema = `
CREATE TABLE IF NOT EXISTS events (
	position     INTEGER PRIMARY KEY,
	stream       TEXT    NOT NULL,
	revision     INTEGER NOT NULL,
	id           BLOB    NOT NULL,
	type         TEXT    NOT NULL,
	content_type TEXT    NOT NULL,
	created      INTEGER NOT NULL,
	data         BLOB    NOT NULL,
	meta         BLOB    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_stream_revision ON events (stream, revision);
CREATE TABLE IF NOT EXISTS streams (
	name          TEXT PRIMARY KEY,
	last_revision INTEGER NOT NULL,
	tombstoned    INTEGER NOT NULL,
	metadata      BLOB
) WITHOUT ROWID;
`

// streamMeta is the part of a stream's $$ metadata the server enforces.
type streamMeta struct {
	tb       int64 // truncate before; -1 when unset
	maxCount int64 // 0 when unset
	maxAge   int64 // seconds; 0 when unset
}

// streamState is the in-memory index entry of one stream.
type streamState struct {
	lastRev    int64 // -1 when the stream has no events
	tombstoned bool
	hasMeta    bool // the $$ stream has at least one event
	metaRaw    []byte
	meta       streamMeta
	dirty      bool
}

func newStreamState() *streamState {
	return &streamState{lastRev: -1, meta: streamMeta{tb: -1}}
}

func (s *streamState) softDeleted() bool { return s.meta.tb == deletedRevision }

// parseMeta reads the enforced keys from stream metadata JSON. Malformed
// metadata is ignored rather than rejected, as the real server does.
func parseMeta(raw []byte) streamMeta {
	m := streamMeta{tb: -1}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return m
	}
	num := func(key string) (int64, bool) {
		v, ok := fields[key]
		if !ok {
			return 0, false
		}
		var f json.Number
		if err := json.Unmarshal(v, &f); err != nil {
			return 0, false
		}
		if n, err := f.Int64(); err == nil {
			return n, true
		}
		if x, err := f.Float64(); err == nil && x >= 0 {
			if x >= math.MaxInt64 {
				return math.MaxInt64, true
			}
			return int64(x), true
		}
		return 0, false
	}
	if n, ok := num("$tb"); ok && n >= 0 {
		m.tb = n
	}
	if n, ok := num("$maxCount"); ok && n > 0 {
		m.maxCount = n
	}
	if n, ok := num("$maxAge"); ok && n > 0 {
		m.maxAge = n
	}
	return m
}

// record is one stored event.
type record struct {
	pos         uint64
	stream      string
	rev         int64
	id          [16]byte
	typ         string
	contentType string
	created     int64 // ticks: UnixNano/100
	data        []byte
	meta        []byte
}

// store owns the SQLite files, the stream index and the writer goroutine.
type store struct {
	path string
	log  *slog.Logger
	skew atomic.Int64 // ticks added to the clock; tests only
	wdb  *sql.DB      // exactly one connection, used by the writer goroutine only
	rdb  *sql.DB      // read-only pool

	// statements prepared once on wdb
	insertEvent, upsertStream *sql.Stmt

	writeCh    chan *writeReq
	quit       chan struct{}
	writerDone chan struct{}

	mu        sync.RWMutex
	streams   map[string]*streamState
	committed uint64        // last committed position visible to readers
	notify    chan struct{} // closed and replaced on every commit

	// tail holds the most recent committed records, with contiguous
	// positions, so live subscribers rarely need SQLite.
	tail      []record
	tailBytes int

	// owned by the writer goroutine
	lastPos   uint64
	recent    map[[16]byte]recentID
	recentLog []recentEntry
	recentAt  int
}

type recentEntry struct {
	id  [16]byte
	pos uint64
}

type recentID struct {
	stream string
	rev    int64
	pos    uint64
}

func openStore(ctx context.Context, dir string, log *slog.Logger) (*store, error) {
	path := filepath.Join(dir, "events.db")
	u := url.URL{Scheme: "file", Path: path}
	wq := url.Values{}
	wq.Set("_journal_mode", "WAL")
	wq.Set("_synchronous", "FULL")
	wq.Set("_busy_timeout", "5000")
	wq.Set("_foreign_keys", "1")
	u.RawQuery = wq.Encode()
	wdb, err := sql.Open("sqlite3", u.String())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	if _, err := wdb.ExecContext(ctx, schema); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("create schema in %s: %w", path, err)
	}
	var mode string
	if err := wdb.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		wdb.Close()
		return nil, fmt.Errorf("enable WAL on %s (got %q): %w", path, mode, err)
	}

	rq := url.Values{}
	rq.Set("mode", "ro")
	rq.Set("_busy_timeout", "5000")
	rq.Set("_query_only", "1")
	u.RawQuery = rq.Encode()
	rdb, err := sql.Open("sqlite3", u.String())
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("open %s read-only: %w", path, err)
	}
	rdb.SetMaxOpenConns(8)
	rdb.SetMaxIdleConns(8)

	st := &store{
		path:       path,
		log:        log,
		wdb:        wdb,
		rdb:        rdb,
		writeCh:    make(chan *writeReq, 1024),
		quit:       make(chan struct{}),
		writerDone: make(chan struct{}),
		streams:    make(map[string]*streamState),
		notify:     make(chan struct{}),
		recent:     make(map[[16]byte]recentID),
	}
	if err := st.prepare(ctx); err != nil {
		wdb.Close()
		rdb.Close()
		return nil, err
	}
	if err := st.load(ctx); err != nil {
		wdb.Close()
		rdb.Close()
		return nil, err
	}
	go st.runWriter()
	return st, nil
}

func (st *store) prepare(ctx context.Context) error {
	var err error
	st.insertEvent, err = st.wdb.PrepareContext(ctx, "INSERT INTO events (position, stream, revision, id, type, content_type, created, data, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
	if err != nil {
		return fmt.Errorf("prepare event insert: %w", err)
	}
	st.upsertStream, err = st.wdb.PrepareContext(ctx, "INSERT INTO streams (name, last_revision, tombstoned, metadata) VALUES (?, ?, ?, ?) "+
		"ON CONFLICT (name) DO UPDATE SET last_revision = excluded.last_revision, tombstoned = excluded.tombstoned, metadata = excluded.metadata")
	if err != nil {
		return fmt.Errorf("prepare stream index upsert: %w", err)
	}
	return nil
}

func (st *store) load(ctx context.Context) error {
	var maxPos sql.NullInt64
	if err := st.wdb.QueryRowContext(ctx, "SELECT max(position) FROM events").Scan(&maxPos); err != nil {
		return fmt.Errorf("load last position: %w", err)
	}
	if maxPos.Valid {
		st.lastPos = uint64(maxPos.Int64)
	}
	st.committed = st.lastPos
	rows, err := st.wdb.QueryContext(ctx, "SELECT name, last_revision, tombstoned, metadata FROM streams")
	if err != nil {
		return fmt.Errorf("load stream index: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		s := newStreamState()
		var name string
		var tomb int
		var meta []byte
		if err := rows.Scan(&name, &s.lastRev, &tomb, &meta); err != nil {
			return fmt.Errorf("load stream index: %w", err)
		}
		s.tombstoned = tomb != 0
		if meta != nil {
			s.hasMeta = true
			s.metaRaw = meta
			s.meta = parseMeta(meta)
		}
		st.streams[name] = s
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load stream index: %w", err)
	}
	return nil
}

// close stops the writer (pending requests fail) and closes both pools.
func (st *store) close() error {
	close(st.quit)
	<-st.writerDone
	return errors.Join(st.insertEvent.Close(), st.upsertStream.Close(), st.rdb.Close(), st.wdb.Close())
}

// snapshot returns the committed position and the channel closed on the next
// commit. Taking both under one lock means no commit can be missed.
func (st *store) snapshot() (uint64, <-chan struct{}) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.committed, st.notify
}

// view returns the committed position together with the matching state of
// a stream (nil when unknown), so a read never mixes two commits.
func (st *store) view(name string) (uint64, *streamState) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	s, ok := st.streams[name]
	if !ok {
		return st.committed, nil
	}
	cp := *s
	return st.committed, &cp
}

// pushTail appends committed records to the tail and trims it (st.mu held).
func (st *store) pushTail(recs []record) {
	for _, r := range recs {
		st.tail = append(st.tail, r)
		st.tailBytes += recordSize(&r)
	}
	drop := 0
	for drop < len(st.tail) && (len(st.tail)-drop > tailMaxRecords || st.tailBytes > tailMaxBytes) {
		st.tailBytes -= recordSize(&st.tail[drop])
		st.tail[drop] = record{} // release the payload
		drop++
	}
	st.tail = st.tail[drop:]
}

func recordSize(r *record) int { return 64 + len(r.stream) + len(r.typ) + len(r.data) + len(r.meta) }

// fromTail returns up to max committed records with after < position <=
// upTo from memory; ok is false when the tail no longer reaches back to
// after+1 and the caller must read SQLite.
func (st *store) fromTail(after, upTo uint64, max int) (recs []record, ok bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if len(st.tail) == 0 || after+1 < st.tail[0].pos {
		return nil, false
	}
	first := st.tail[0].pos
	from := after + 1 - first
	to := min(upTo+1-first, uint64(len(st.tail)))
	if from >= to {
		return nil, true
	}
	to = min(to, from+uint64(max))
	return append([]record(nil), st.tail[from:to]...), true
}

// stream returns a copy of a stream's committed state, or nil.
func (st *store) stream(name string) *streamState {
	st.mu.RLock()
	defer st.mu.RUnlock()
	s, ok := st.streams[name]
	if !ok {
		return nil
	}
	cp := *s
	return &cp
}

// metaStreamOf returns the stream a $$ metadata stream describes.
func metaStreamOf(name string) (string, bool) {
	if strings.HasPrefix(name, "$$") && len(name) > 2 {
		return name[2:], true
	}
	return "", false
}

// nowTicks is the current time in ticks (100 ns) since the Unix epoch, the
// unit of the "created" metadata. skew shifts the clock in tests.
func (st *store) nowTicks() int64 { return time.Now().UnixNano()/100 + st.skew.Load() }

const selectEvent = "SELECT position, stream, revision, id, type, content_type, created, data, meta FROM events "

// readEncoded runs a read (selectEvent + q) and encodes each row straight into a
// ReadResp event (see encode.go). Rows f does not match keep their position
// and revision but carry no message. The messages share a few large buffers
// that are never reused, because gRPC may still hold them after a send.
func (st *store) readEncoded(ctx context.Context, f *filter, uuidString bool, q string, args ...any) ([]encodedEvent, error) {
	rows, err := st.rdb.QueryContext(ctx, selectEvent+q, args...)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	var (
		out                                      []encodedEvent
		arena                                    []byte
		pos                                      int64
		e                                        eventFields[sql.RawBytes]
		id, stream, typ, contentType, data, meta sql.RawBytes
		id16                                     [16]byte
	)
	for rows.Next() {
		if err := rows.Scan(&pos, &stream, &e.rev, &id, &typ, &contentType, &e.created, &data, &meta); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		ev := encodedEvent{pos: uint64(pos), rev: e.rev}
		if f.matchRaw(stream, typ) {
			id16 = [16]byte{}
			copy(id16[:], id)
			e.pos, e.id, e.stream, e.typ, e.contentType, e.data, e.meta = uint64(pos), id16[:], stream, typ, contentType, data, meta
			need := 256 + len(stream) + len(typ) + len(contentType) + len(data) + len(meta)
			if cap(arena)-len(arena) < need {
				arena = make([]byte, 0, max(arenaSize, need))
			}
			start := len(arena)
			arena = appendEvent(arena, &e, uuidString)
			ev.msg = arena[start:len(arena):len(arena)]
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return out, nil
}

// arenaSize is the size of the buffers readEncoded encodes into.
const arenaSize = 64 << 10

// backup copies the database with VACUUM INTO on a short-lived connection of
// its own: it reads a consistent snapshot and never blocks the writer. (The
// read pool is query-only, which VACUUM INTO refuses.)
func (st *store) backup(ctx context.Context, path string) error {
	u := url.URL{Scheme: "file", Path: st.path, RawQuery: "_busy_timeout=5000"}
	db, err := sql.Open("sqlite3", u.String())
	if err != nil {
		return fmt.Errorf("backup to %s: %w", path, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return fmt.Errorf("backup to %s: %w", path, err)
	}
	return nil
}

// checkIntegrity runs PRAGMA integrity_check on a read connection.
func (st *store) checkIntegrity(ctx context.Context) error {
	rows, err := st.rdb.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("integrity check: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(problems, "; "))
	}
	return nil
}
