package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/google/uuid"
)

// BenchmarkStoreSubmitSerial measures the writer alone (no gRPC): one
// single-event append per group commit.
func BenchmarkStoreSubmitSerial(b *testing.B) {
	st, err := openStore(context.Background(), b.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer st.close()
	ctx := context.Background()
	data := []byte(`{"n":1}`)
	for b.Loop() {
		res := st.submit(ctx, &writeReq{op: opAppend, stream: "s", events: []proposed{{id: uuid.New(), typ: "E", contentType: "application/json", data: data, meta: []byte{}}}})
		if res.err != nil || res.outcome != outcomeOK {
			b.Fatalf("submit: %+v", res)
		}
	}
}

// TestWriterPragmas checks the durability settings on the writer connection
// and that the read pool cannot write.
func TestWriterPragmas(t *testing.T) {
	ctx := context.Background()
	st, err := openStore(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	var mode string
	var sync int
	if err := st.wdb.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q (%v), want wal", mode, err)
	}
	if err := st.wdb.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
		t.Errorf("synchronous = %d (%v), want 2 (FULL)", sync, err)
	}
	if _, err := st.rdb.ExecContext(ctx, "INSERT INTO streams (name, last_revision, tombstoned) VALUES ('x', 0, 0)"); err == nil {
		t.Error("read pool accepted a write")
	}
}

// TestGroupCommitChecksEachRequestAgainstEarlierOnes runs several requests in
// one batch: each sees the effects of the ones before it, and a failing
// request does not fail the others.
func TestGroupCommitChecksEachRequestAgainstEarlierOnes(t *testing.T) {
	ctx := context.Background()
	st, err := openStore(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	ev := func() []proposed {
		return []proposed{{id: uuid.New(), typ: "E", contentType: "application/json", data: []byte("{}"), meta: []byte{}}}
	}
	dup := ev()
	reqs := []*writeReq{
		{op: opAppend, stream: "a", expect: expectation{kind: expectNoStream}, events: dup},
		{op: opAppend, stream: "a", expect: expectation{kind: expectNoStream}, events: ev()},         // stream exists now
		{op: opAppend, stream: "a", expect: expectation{kind: expectRevision, rev: 0}, events: ev()}, // sees revision 0
		{op: opAppend, stream: "a", expect: expectation{kind: expectAny}, events: dup},               // retry of the first
		{op: opTombstone, stream: "b", expect: expectation{kind: expectAny}},
		{op: opAppend, stream: "b", expect: expectation{kind: expectAny}, events: ev()}, // tombstoned above
		{op: opAppend, stream: "c", expect: expectation{kind: expectExists}, events: ev()},
	}
	for _, r := range reqs {
		r.done = make(chan writeResult, 1)
	}
	// The writer goroutine is idle; run one batch on this goroutine.
	st.commitBatch(reqs)
	want := []writeResult{
		{outcome: outcomeOK, rev: 0, pos: 1},
		{outcome: outcomeWrongVersion, rev: 0},
		{outcome: outcomeOK, rev: 1, pos: 2},
		{outcome: outcomeOK, rev: 0, pos: 1},
		{outcome: outcomeOK, rev: -1, pos: 3},
		{outcome: outcomeDeleted},
		{outcome: outcomeWrongVersion, rev: -1},
	}
	for i, r := range reqs {
		if got := <-r.done; got != want[i] {
			t.Errorf("request %d: %+v, want %+v", i, got, want[i])
		}
	}
	if c, _ := st.snapshot(); c != 3 {
		t.Errorf("committed position %d, want 3", c)
	}
}

func TestTailBounds(t *testing.T) {
	st := &store{}
	var recs []record
	for p := uint64(5); p <= 9; p++ {
		recs = append(recs, record{pos: p})
	}
	st.pushTail(recs)
	for _, tc := range []struct {
		after, upTo uint64
		max         int
		want        string
		ok          bool
	}{
		{3, 9, 10, "[]", false}, // position 4 is not in memory
		{4, 9, 10, "[5 6 7 8 9]", true},
		{6, 8, 10, "[7 8]", true},
		{9, 9, 10, "[]", true},
		{4, 9, 2, "[5 6]", true},
		{7, 6, 10, "[]", true},
	} {
		got, ok := st.fromTail(tc.after, tc.upTo, tc.max)
		var pos []uint64
		for _, r := range got {
			pos = append(pos, r.pos)
		}
		if s := fmt.Sprint(pos); ok != tc.ok || (s != tc.want && !(pos == nil && tc.want == "[]")) {
			t.Errorf("fromTail(%d, %d, %d) = %v, %v; want %s, %v", tc.after, tc.upTo, tc.max, pos, ok, tc.want, tc.ok)
		}
	}
	big := make([]record, tailMaxRecords+10)
	for i := range big {
		big[i] = record{pos: 10 + uint64(i)}
	}
	st.pushTail(big)
	if len(st.tail) != tailMaxRecords || st.tail[len(st.tail)-1].pos != big[len(big)-1].pos {
		t.Errorf("tail holds %d records ending at %d, want the last %d", len(st.tail), st.tail[len(st.tail)-1].pos, tailMaxRecords)
	}
}

// TestFailedWriteDoesNotFailItsBatch injects an SQL error for one stream
// with a trigger: the other requests of the batch still commit.
func TestFailedWriteDoesNotFailItsBatch(t *testing.T) {
	ctx := context.Background()
	st, err := openStore(ctx, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if _, err := st.wdb.ExecContext(ctx, `CREATE TRIGGER inject BEFORE INSERT ON events WHEN NEW.stream = 'bad'
		BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	ev := func() []proposed {
		return []proposed{{id: uuid.New(), typ: "E", contentType: "application/json", data: []byte("{}"), meta: []byte{}}}
	}
	reqs := []*writeReq{
		{op: opAppend, stream: "good-1", events: ev()},
		{op: opAppend, stream: "bad", events: ev()},
		{op: opAppend, stream: "good-2", events: ev()},
	}
	for _, r := range reqs {
		r.done = make(chan writeResult, 1)
	}
	st.commitBatch(reqs)
	for i, r := range reqs {
		res := <-r.done
		if failed := res.err != nil; failed != (i == 1) {
			t.Errorf("request %d (%s): err = %v", i, r.stream, res.err)
		}
	}
	if c, _ := st.snapshot(); c != 2 {
		t.Errorf("committed position %d, want 2 (the two good events, no gap)", c)
	}
	if s := st.stream("bad"); s != nil {
		t.Errorf("failed stream has index state %+v, want none", s)
	}
	var n int
	if err := st.rdb.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil || n != 2 {
		t.Errorf("events table holds %d rows (%v), want 2", n, err)
	}
}
