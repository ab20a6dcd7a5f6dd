package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strconv"
)

type writeOp int

const (
	opAppend writeOp = iota
	opDelete
	opTombstone
)

type expectKind int

const (
	expectAny expectKind = iota
	expectNoStream
	expectExists
	expectRevision
)

// expectation is the expected stream state sent by the client.
type expectation struct {
	kind expectKind
	rev  uint64
}

// legacyCode is the .NET long form used in delete/tombstone trailers.
func (e expectation) legacyCode() string {
	switch e.kind {
	case expectNoStream:
		return "-1"
	case expectExists:
		return "-4"
	case expectRevision:
		return strconv.FormatUint(e.rev, 10)
	default:
		return "-2"
	}
}

// proposed is one event of an append request.
type proposed struct {
	id          [16]byte
	typ         string
	contentType string
	data        []byte
	meta        []byte
}

type writeReq struct {
	op     writeOp
	stream string
	expect expectation
	events []proposed
	done   chan writeResult
}

type outcome int

const (
	outcomeOK outcome = iota
	outcomeWrongVersion
	outcomeDeleted
)

// writeResult is the answer to one writeReq. rev is the stream's current
// revision (-1: no stream); pos is the position of the last event written
// (or of the original events for an idempotent retry), 0 when none.
type writeResult struct {
	outcome outcome
	rev     int64
	pos     uint64
	err     error
}

// errStopped is returned for writes submitted while the store shuts down.
var errStopped = errors.New("embedded: store is shutting down")

// submit queues a write and waits for its result. If ctx ends first the
// outcome is unknown to the caller (the write may still commit).
func (st *store) submit(ctx context.Context, r *writeReq) writeResult {
	r.done = make(chan writeResult, 1)
	select {
	case st.writeCh <- r:
	case <-ctx.Done():
		return writeResult{err: ctx.Err()}
	case <-st.quit:
		return writeResult{err: errStopped}
	}
	select {
	case res := <-r.done:
		return res
	case <-ctx.Done():
		return writeResult{err: ctx.Err()}
	case <-st.writerDone:
		select {
		case res := <-r.done:
			return res
		default:
			return writeResult{err: errStopped}
		}
	}
}

func (st *store) runWriter() {
	defer close(st.writerDone)
	for {
		var batch []*writeReq
		select {
		case r := <-st.writeCh:
			batch = append(batch, r)
		case <-st.quit:
			return
		}
		// Take what is queued. Then yield, so that handlers which are
		// runnable (on a busy machine, most of them) can queue their
		// requests too: fewer, larger commits cost less CPU per append.
		// Yielding adds no wait when nothing else is runnable.
		for yields := 0; len(batch) < maxBatchRequests; yields++ {
			before := len(batch)
			batch = st.drain(batch)
			if yields == maxGatherYields || (yields > 0 && len(batch) == before) {
				break
			}
			runtime.Gosched()
		}
		st.commitBatch(batch)
	}
}

// maxGatherYields bounds how often the writer yields to gather a batch.
const maxGatherYields = 2

// drain appends queued requests to batch without blocking.
func (st *store) drain(batch []*writeReq) []*writeReq {
	for len(batch) < maxBatchRequests {
		select {
		case r := <-st.writeCh:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// batch is the state of one group-commit transaction.
type batch struct {
	st      *store
	tx      *sql.Tx
	ins     *sql.Stmt
	pos     uint64
	now     int64
	streams map[string]*streamState // copies, updated as requests apply
	ids     map[[16]byte]recentID   // event ids written in this batch
	idOrder [][16]byte
	recs    []record // written in this batch, for the in-memory tail
}

func (b *batch) state(name string) *streamState {
	if s, ok := b.streams[name]; ok {
		return s
	}
	s := b.st.stream(name)
	if s == nil {
		s = newStreamState()
	}
	b.streams[name] = s
	return s
}

func (st *store) commitBatch(reqs []*writeReq) {
	results := make([]writeResult, len(reqs))
	b, err := st.runBatch(reqs, results)
	if err != nil && len(reqs) > 1 {
		// Isolate the failure: nothing of this batch was applied, so run
		// each request in a transaction of its own.
		for _, r := range reqs {
			st.commitBatch([]*writeReq{r})
		}
		return
	}
	if err != nil {
		st.log.Error("embedded store: write batch failed; nothing acknowledged", "requests", len(reqs), "err", err)
		for i := range results {
			results[i] = writeResult{err: err}
		}
	} else {
		st.mu.Lock()
		for name, s := range b.streams {
			if s.dirty {
				s.dirty = false
				st.streams[name] = s
			}
		}
		st.committed = b.pos
		st.pushTail(b.recs)
		close(st.notify)
		st.notify = make(chan struct{})
		st.mu.Unlock()
		st.lastPos = b.pos
		for _, id := range b.idOrder {
			st.remember(id, b.ids[id])
		}
	}
	for i, r := range reqs {
		r.done <- results[i]
	}
}

func (st *store) runBatch(reqs []*writeReq, results []writeResult) (*batch, error) {
	tx, err := st.wdb.Begin()
	if err != nil {
		return nil, fmt.Errorf("begin write: %w", err)
	}
	ins := tx.Stmt(st.insertEvent)
	b := &batch{
		st: st, tx: tx, ins: ins, pos: st.lastPos, now: st.nowTicks(),
		streams: make(map[string]*streamState), ids: make(map[[16]byte]recentID),
	}
	for i, r := range reqs {
		var res writeResult
		switch r.op {
		case opAppend:
			res, err = b.append(r)
		case opDelete:
			res, err = b.softDelete(r)
		case opTombstone:
			res, err = b.tombstone(r)
		}
		if err != nil {
			tx.Rollback()
			return nil, err
		}
		results[i] = res
	}
	up := tx.Stmt(st.upsertStream)
	for name, s := range b.streams {
		if !s.dirty {
			continue
		}
		var meta any
		if s.hasMeta {
			meta = s.metaRaw
		}
		if _, err := up.Exec(name, s.lastRev, s.tombstoned, meta); err != nil {
			tx.Rollback()
			return nil, fmt.Errorf("update stream index: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		// A failed COMMIT can leave SQLite inside the transaction; end it
		// so the next batch starts clean. Nothing was acknowledged.
		_, _ = st.wdb.Exec("ROLLBACK")
		return nil, fmt.Errorf("commit: %w", err)
	}
	return b, nil
}

// insert writes one event and updates the batch's stream state.
func (b *batch) insert(stream string, rev int64, e proposed) error {
	b.pos++
	if _, err := b.ins.Exec(int64(b.pos), stream, rev, e.id[:], e.typ, e.contentType, b.now, e.data, e.meta); err != nil {
		return fmt.Errorf("insert event %d of %s: %w", rev, stream, err)
	}
	s := b.state(stream)
	s.dirty = true
	if rev != deletedRevision {
		s.lastRev = rev
	}
	if base, ok := metaStreamOf(stream); ok && e.typ == "$metadata" {
		bs := b.state(base)
		bs.dirty = true
		bs.hasMeta = true
		bs.metaRaw = e.data
		bs.meta = parseMeta(e.data)
	}
	if _, seen := b.ids[e.id]; !seen {
		b.idOrder = append(b.idOrder, e.id)
	}
	b.ids[e.id] = recentID{stream: stream, rev: rev, pos: b.pos}
	b.recs = append(b.recs, record{pos: b.pos, stream: stream, rev: rev, id: e.id, typ: e.typ,
		contentType: e.contentType, created: b.now, data: e.data, meta: e.meta})
	return nil
}

// appendEvents writes events after the stream's last revision. When the
// stream is soft-deleted it is re-created: revisions continue and $tb moves
// to the first new revision.
func (b *batch) appendEvents(stream string, s *streamState, events []proposed) (writeResult, error) {
	if len(events) == 0 {
		return writeResult{rev: s.lastRev}, nil
	}
	if s.softDeleted() {
		tb := s.lastRev + 1
		data := []byte(`{"$tb":` + strconv.FormatInt(tb, 10) + `}`)
		if err := b.writeMeta(stream, data); err != nil {
			return writeResult{}, err
		}
	}
	for _, e := range events {
		if err := b.insert(stream, s.lastRev+1, e); err != nil {
			return writeResult{}, err
		}
	}
	return writeResult{rev: s.lastRev, pos: b.pos}, nil
}

func (b *batch) writeMeta(stream string, data []byte) error {
	ms := "$$" + stream
	m := b.state(ms)
	id := newEventID()
	return b.insert(ms, m.lastRev+1, proposed{id: id, typ: "$metadata", contentType: "application/json", data: data, meta: []byte{}})
}

// idempotent reports whether events are exactly the stream's events from
// revision first on; it returns the result of the original write.
func (b *batch) idempotent(stream string, first int64, events []proposed) (writeResult, bool, error) {
	rows, err := b.tx.Query("SELECT revision, id, position FROM events WHERE stream = ? AND revision >= ? ORDER BY revision LIMIT ?", stream, first, len(events))
	if err != nil {
		return writeResult{}, false, fmt.Errorf("idempotency check on %s: %w", stream, err)
	}
	defer rows.Close()
	i := 0
	var res writeResult
	for rows.Next() {
		var rev int64
		var id []byte
		var pos uint64
		if err := rows.Scan(&rev, &id, &pos); err != nil {
			return writeResult{}, false, fmt.Errorf("idempotency check on %s: %w", stream, err)
		}
		if rev != first+int64(i) || string(id) != string(events[i].id[:]) {
			return writeResult{}, false, rows.Err()
		}
		res = writeResult{rev: rev, pos: pos}
		i++
	}
	if err := rows.Err(); err != nil {
		return writeResult{}, false, fmt.Errorf("idempotency check on %s: %w", stream, err)
	}
	return res, i == len(events), nil
}

// recentDuplicate is the best-effort dedupe for Any and StreamExists: the
// request is a retry when all its ids were written, in order, to this stream
// recently.
func (b *batch) recentDuplicate(stream string, events []proposed) (writeResult, bool) {
	if len(events) == 0 {
		return writeResult{}, false
	}
	var res writeResult
	for i, e := range events {
		r, ok := b.ids[e.id]
		if !ok {
			r, ok = b.st.recent[e.id]
		}
		if !ok || r.stream != stream || (i > 0 && r.rev != res.rev+1) {
			return writeResult{}, false
		}
		res = writeResult{rev: r.rev, pos: r.pos}
	}
	return res, true
}

func (b *batch) append(r *writeReq) (writeResult, error) {
	s := b.state(r.stream)
	if s.tombstoned {
		return writeResult{outcome: outcomeDeleted}, nil
	}
	if base, ok := metaStreamOf(r.stream); ok && b.state(base).tombstoned {
		return writeResult{outcome: outcomeDeleted}, nil
	}
	wrong := writeResult{outcome: outcomeWrongVersion, rev: s.lastRev}
	switch r.expect.kind {
	case expectAny:
		if res, ok := b.recentDuplicate(r.stream, r.events); ok {
			return res, nil
		}
	case expectExists:
		if s.softDeleted() {
			return writeResult{outcome: outcomeDeleted}, nil
		}
		if s.lastRev < 0 && !s.hasMeta {
			return wrong, nil
		}
		if res, ok := b.recentDuplicate(r.stream, r.events); ok {
			return res, nil
		}
	case expectNoStream:
		if s.lastRev >= 0 && !s.softDeleted() {
			// A retry of the request that created the stream: its events
			// start at 0, or at $tb when a soft delete was undone by it.
			starts := []int64{0}
			if s.meta.tb > 0 {
				starts = []int64{s.meta.tb, 0}
			}
			for _, first := range starts {
				res, ok, err := b.idempotent(r.stream, first, r.events)
				if err != nil || (ok && len(r.events) > 0) {
					return res, err
				}
			}
			return wrong, nil
		}
	case expectRevision:
		cur := s.lastRev
		switch {
		case cur < 0 || r.expect.rev > uint64(cur):
			return wrong, nil
		case r.expect.rev < uint64(cur):
			if s.softDeleted() || len(r.events) == 0 {
				return wrong, nil
			}
			res, ok, err := b.idempotent(r.stream, int64(r.expect.rev)+1, r.events)
			if err != nil || ok {
				return res, err
			}
			return wrong, nil
		}
	}
	return b.appendEvents(r.stream, s, r.events)
}

// checkDelete applies the expected-state rules shared by Delete and
// Tombstone. It returns a non-nil result when the request must not proceed.
func (b *batch) checkDelete(r *writeReq, s *streamState) *writeResult {
	if s.tombstoned {
		return &writeResult{outcome: outcomeDeleted}
	}
	wrong := &writeResult{outcome: outcomeWrongVersion, rev: s.lastRev}
	switch r.expect.kind {
	case expectNoStream:
		if s.lastRev >= 0 && !s.softDeleted() {
			return wrong
		}
	case expectExists:
		if s.softDeleted() && r.op == opDelete {
			return &writeResult{outcome: outcomeDeleted}
		}
		if s.lastRev < 0 {
			return wrong
		}
	case expectRevision:
		if s.lastRev < 0 || r.expect.rev != uint64(s.lastRev) {
			return wrong
		}
	}
	return nil
}

func (b *batch) softDelete(r *writeReq) (writeResult, error) {
	s := b.state(r.stream)
	if res := b.checkDelete(r, s); res != nil {
		return *res, nil
	}
	if s.lastRev < 0 {
		// Nothing to delete: the real server writes no $tb.
		return writeResult{rev: -1, pos: b.pos}, nil
	}
	data := []byte(`{"$tb":` + strconv.FormatInt(deletedRevision, 10) + `}`)
	if err := b.writeMeta(r.stream, data); err != nil {
		return writeResult{}, err
	}
	return writeResult{rev: s.lastRev, pos: b.pos}, nil
}

func (b *batch) tombstone(r *writeReq) (writeResult, error) {
	s := b.state(r.stream)
	if res := b.checkDelete(r, s); res != nil {
		return *res, nil
	}
	e := proposed{id: newEventID(), typ: "$streamDeleted", contentType: "application/octet-stream", data: []byte{}, meta: []byte{}}
	if err := b.insert(r.stream, deletedRevision, e); err != nil {
		return writeResult{}, err
	}
	s.tombstoned = true
	return writeResult{rev: s.lastRev, pos: b.pos}, nil
}

// remember adds an id to the bounded recent-ids cache (writer goroutine only).
func (st *store) remember(id [16]byte, r recentID) {
	entry := recentEntry{id: id, pos: r.pos}
	if len(st.recentLog) < recentIDsLimit {
		st.recentLog = append(st.recentLog, entry)
	} else {
		old := st.recentLog[st.recentAt]
		if cur, ok := st.recent[old.id]; ok && cur.pos == old.pos {
			delete(st.recent, old.id)
		}
		st.recentLog[st.recentAt] = entry
		st.recentAt = (st.recentAt + 1) % recentIDsLimit
	}
	st.recent[id] = r
}
