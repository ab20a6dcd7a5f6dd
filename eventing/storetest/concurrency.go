package storetest

import (
	"bytes"
	"sync"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

// testAppendSize checks the append size limit: 1,048,576 bytes of event
// data per append by default, rejected as a whole with nothing written
// (esdb-protocol.md §5.18). The real server answers InvalidArgument, which
// the Go client reports as ErrorCodeUnknown, so only "an error that is not a
// concurrency error" is asserted.
func testAppendSize(t *testing.T, c *esdb.Client) {
	const limit = 1 << 20
	blob := func(n int) esdb.EventData {
		return esdb.EventData{EventID: uuid.New(), EventType: "Blob", ContentType: esdb.ContentTypeBinary, Data: bytes.Repeat([]byte{'x'}, n)}
	}
	t.Run("OneEventOverLimit", func(t *testing.T) {
		stream := newStream("size")
		_, err := c.AppendToStream(opContext(t), stream, esdb.AppendToStreamOptions{}, blob(limit+1))
		if err == nil || errCode(err) == esdb.ErrorCodeWrongExpectedVersion {
			t.Fatalf("append of %d bytes: err %v, want a size error", limit+1, err)
		}
		wantReadErr(t, c, stream, esdb.ErrorCodeResourceNotFound)
	})
	t.Run("BatchOverLimitWritesNothing", func(t *testing.T) {
		stream := newStream("size")
		mustAppend(t, c, stream, esdb.NoStream{}, blob(10))
		_, err := c.AppendToStream(opContext(t), stream, esdb.AppendToStreamOptions{}, blob(100), blob(limit/2), blob(limit/2))
		if err == nil || errCode(err) == esdb.ErrorCodeWrongExpectedVersion {
			t.Fatalf("append of 3 events totalling more than %d bytes: err %v, want a size error", limit, err)
		}
		wantRevisions(t, mustRead(t, c, stream), 0)
	})
	t.Run("UnderLimit", func(t *testing.T) {
		stream := newStream("size")
		ev := blob(1_000_000)
		mustAppend(t, c, stream, esdb.NoStream{}, ev)
		got := mustRead(t, c, stream)
		if len(got) != 1 || !bytes.Equal(got[0].OriginalEvent().Data, ev.Data) {
			t.Fatalf("read back %d events, want the one 1,000,000-byte event", len(got))
		}
	})
}

// testConcurrency checks optimistic concurrency under contention
// (reliability.md §1.2): 32 writers racing on one stream with exact expected
// revisions give exactly one winner per revision, contiguous revisions and
// no duplicate event IDs.
func testConcurrency(t *testing.T, c *esdb.Client) {
	const writers = 32
	t.Run("ExactRevisionRace", func(t *testing.T) {
		const rounds = 8
		stream := newStream("race")
		var winners []uuid.UUID
		for round := range rounds {
			var exp esdb.ExpectedRevision = esdb.NoStream{}
			if round > 0 {
				exp = esdb.Revision(uint64(round - 1))
			}
			type result struct {
				id  uuid.UUID
				res *esdb.WriteResult
				err error
			}
			results := make([]result, writers)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					ev := newEvent("Raced", w)
					<-start
					res, err := c.AppendToStream(opContext(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, ev)
					results[w] = result{ev.EventID, res, err}
				})
			}
			close(start)
			wg.Wait()
			var won []result
			for _, r := range results {
				switch {
				case r.err == nil:
					won = append(won, r)
				case errCode(r.err) != esdb.ErrorCodeWrongExpectedVersion:
					t.Fatalf("round %d: loser got %v, want ErrorCodeWrongExpectedVersion", round, r.err)
				}
			}
			if len(won) != 1 {
				t.Fatalf("round %d (%s): %d writers won, want exactly 1", round, expString(exp), len(won))
			}
			if won[0].res.NextExpectedVersion != uint64(round) {
				t.Fatalf("round %d: winner got NextExpectedVersion %d", round, won[0].res.NextExpectedVersion)
			}
			winners = append(winners, won[0].id)
		}
		got := mustRead(t, c, stream)
		for i, e := range got {
			if e.OriginalEvent().EventNumber != uint64(i) {
				t.Fatalf("revisions %v are not contiguous", revisions(got))
			}
		}
		if !equalIDs(ids(got), winners) {
			t.Fatalf("stream holds %v, winners were %v", ids(got), winners)
		}
	})
	t.Run("RetryingWriters", func(t *testing.T) {
		// Each writer reads the head, appends at that exact revision and, on
		// WrongExpectedVersion, reads again: every acknowledged event lands
		// exactly once at the revision its acknowledgement reported.
		const perWriter = 2
		stream := newStream("race")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvent("Opened", 0))
		var mu sync.Mutex
		acked := map[uint64]uuid.UUID{0: uuid.Nil}
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := 0; i < perWriter; {
					head, err := readStream(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
					if err != nil || len(head) != 1 {
						t.Errorf("writer %d: read head: %v", w, err)
						return
					}
					ev := newEvent("Raced", w*perWriter+i)
					res, err := c.AppendToStream(opContext(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(head[0].OriginalEvent().EventNumber)}, ev)
					if errCode(err) == esdb.ErrorCodeWrongExpectedVersion {
						continue
					}
					if err != nil {
						t.Errorf("writer %d: append: %v", w, err)
						return
					}
					mu.Lock()
					if prev, dup := acked[res.NextExpectedVersion]; dup {
						t.Errorf("revision %d acknowledged to %s and %s", res.NextExpectedVersion, prev, ev.EventID)
					}
					acked[res.NextExpectedVersion] = ev.EventID
					mu.Unlock()
					i++
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		got := mustRead(t, c, stream)
		if len(got) != writers*perWriter+1 {
			t.Fatalf("stream holds %d events, want %d", len(got), writers*perWriter+1)
		}
		seen := map[uuid.UUID]bool{}
		for i, e := range got[1:] {
			o := e.OriginalEvent()
			if o.EventNumber != uint64(i+1) || acked[o.EventNumber] != o.EventID || seen[o.EventID] {
				t.Fatalf("revision %d holds %s (seen before: %v), acknowledged %s", o.EventNumber, o.EventID, seen[o.EventID], acked[o.EventNumber])
			}
			seen[o.EventID] = true
		}
	})
}
