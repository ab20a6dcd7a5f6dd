package storetest

import (
	"fmt"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// streamState is the state a stream is put in before the append under test.
type streamState int

const (
	missing streamState = iota
	oneEvent
	sixEvents
	softDeleted  // six events, then DeleteStream
	tombstoned   // one event, then TombstoneStream
	metadataOnly // no events, but $$stream has a metadata event
)

func (s streamState) String() string {
	return [...]string{"Missing", "OneEvent", "SixEvents", "SoftDeleted", "Tombstoned", "MetadataOnly"}[s]
}

// setUp creates a stream in state s and returns its name.
func (s streamState) setUp(t *testing.T, c *esdb.Client) string {
	t.Helper()
	stream := newStream("exp")
	switch s {
	case oneEvent:
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Seeded", 1)...)
	case sixEvents:
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Seeded", 6)...)
	case softDeleted:
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Seeded", 6)...)
		if _, err := c.DeleteStream(opContext(t), stream, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(5)}); err != nil {
			t.Fatalf("soft delete %s: %v", stream, err)
		}
	case tombstoned:
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Seeded", 1)...)
		if _, err := c.TombstoneStream(opContext(t), stream, esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Revision(0)}); err != nil {
			t.Fatalf("tombstone %s: %v", stream, err)
		}
	case metadataOnly:
		var m esdb.StreamMetadata
		m.SetMaxCount(100)
		if _, err := c.SetStreamMetadata(opContext(t), stream, esdb.AppendToStreamOptions{}, m); err != nil {
			t.Fatalf("set metadata of %s: %v", stream, err)
		}
	}
	return stream
}

// outcome is what an append of one fresh event gives.
type outcome struct {
	code esdb.ErrorCode // -1: success
	next uint64         // on success: NextExpectedVersion, the new event's revision
}

var (
	wrongVersion = outcome{code: esdb.ErrorCodeWrongExpectedVersion}
	deleted      = outcome{code: esdb.ErrorCodeStreamDeleted}
)

func ok(next uint64) outcome { return outcome{code: -1, next: next} }

// testExpectedRevision checks the expected-state matrix. The outcomes are
// KurrentDB's IndexWriter.CheckCommit (24.x):
//   - tombstoned: every expectation gives StreamDeleted;
//   - StreamExists: soft-deleted gives StreamDeleted, missing gives
//     WrongExpectedVersion unless $$stream has events (client test
//     appendWithInvalidStreamRevision; esdb-protocol.md §9);
//   - an exact revision below the current one with a fresh event ID is
//     WrongExpectedVersion, except NoStream on a soft-deleted stream, which
//     re-creates it, revisions continuing (server soft_delete tests,
//     esdb-protocol.md §5.15);
//   - an exact revision above the current one is WrongExpectedVersion.
func testExpectedRevision(t *testing.T, c *esdb.Client) {
	exps := []esdb.ExpectedRevision{esdb.Any{}, esdb.NoStream{}, esdb.StreamExists{}, esdb.Revision(0), esdb.Revision(5)}
	matrix := map[streamState][5]outcome{
		missing:      {ok(0), ok(0), wrongVersion, wrongVersion, wrongVersion},
		oneEvent:     {ok(1), wrongVersion, ok(1), ok(1), wrongVersion},
		sixEvents:    {ok(6), wrongVersion, ok(6), wrongVersion, ok(6)},
		softDeleted:  {ok(6), ok(6), deleted, wrongVersion, ok(6)},
		tombstoned:   {deleted, deleted, deleted, deleted, deleted},
		metadataOnly: {ok(0), ok(0), ok(0), wrongVersion, wrongVersion},
	}
	for _, state := range []streamState{missing, oneEvent, sixEvents, softDeleted, tombstoned, metadataOnly} {
		for i, exp := range exps {
			want := matrix[state][i]
			t.Run(fmt.Sprintf("%s/%s", state, expString(exp)), func(t *testing.T) {
				stream := state.setUp(t, c)
				before, beforeErr := readStream(t, c, stream, esdb.ReadStreamOptions{}, 100)
				ev := newEvent("Probed", 99)
				res, err := c.AppendToStream(opContext(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, ev)

				if want.code != -1 {
					if err == nil || errCode(err) != want.code {
						t.Fatalf("append with %s to %s stream: got result %+v, err %v (code %d); want error code %d",
							expString(exp), state, res, err, errCode(err), want.code)
					}
					// Nothing was written.
					after, afterErr := readStream(t, c, stream, esdb.ReadStreamOptions{}, 100)
					if len(after) != len(before) || errCode(afterErr) != errCode(beforeErr) {
						t.Fatalf("failed append changed the stream: before %v (%v), after %v (%v)",
							revisions(before), beforeErr, revisions(after), afterErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("append with %s to %s stream: %v; want success with next revision %d", expString(exp), state, err, want.next)
				}
				if res.NextExpectedVersion != want.next {
					t.Fatalf("append with %s to %s stream: NextExpectedVersion %d, want %d", expString(exp), state, res.NextExpectedVersion, want.next)
				}
				evs := mustRead(t, c, stream)
				if len(evs) == 0 {
					t.Fatalf("read after append: no events")
				}
				checkEvent(t, evs[len(evs)-1], stream, want.next, ev)
				if state == softDeleted {
					// The re-created stream shows only the events written after the delete.
					wantRevisions(t, evs, want.next)
				} else if uint64(len(evs)) != want.next+1 {
					t.Fatalf("read after append: revisions %v, want 0..%d", revisions(evs), want.next)
				}
			})
		}
	}
}

// testIdempotency checks retries with the same event IDs (reliability.md
// §1.1, KurrentDB CheckCommit): with the same exact expected revision or
// NoStream a retry succeeds with the same result and writes nothing, even
// after later appends; a partial overlap is WrongExpectedVersion.
func testIdempotency(t *testing.T, c *esdb.Client) {
	t.Run("NoStreamRetry", func(t *testing.T) {
		stream := newStream("idem")
		evs := newEvents("Placed", 2)
		first := mustAppend(t, c, stream, esdb.NoStream{}, evs...)
		second := mustAppend(t, c, stream, esdb.NoStream{}, evs...)
		if second.NextExpectedVersion != first.NextExpectedVersion {
			t.Fatalf("retry result %+v, first result %+v; want the same NextExpectedVersion", *second, *first)
		}
		got := mustRead(t, c, stream)
		if !equalIDs(ids(got), dataIDs(evs)) {
			t.Fatalf("stream holds %v, want exactly %v", ids(got), dataIDs(evs))
		}
	})
	t.Run("ExactRevisionRetry", func(t *testing.T) {
		stream := newStream("idem")
		seed := newEvents("Placed", 1)
		mustAppend(t, c, stream, esdb.NoStream{}, seed...)
		batch := newEvents("Paid", 2)
		first := mustAppend(t, c, stream, esdb.Revision(0), batch...)
		second := mustAppend(t, c, stream, esdb.Revision(0), batch...)
		if second.NextExpectedVersion != first.NextExpectedVersion || first.NextExpectedVersion != 2 {
			t.Fatalf("retry result %+v, first result %+v; want equal with NextExpectedVersion 2", *second, *first)
		}
		// Still idempotent after the stream has moved on.
		later := newEvents("Shipped", 1)
		mustAppend(t, c, stream, esdb.Revision(2), later...)
		third := mustAppend(t, c, stream, esdb.Revision(0), batch...)
		if third.NextExpectedVersion != 2 {
			t.Fatalf("retry after later append: NextExpectedVersion %d, want 2", third.NextExpectedVersion)
		}
		got := mustRead(t, c, stream)
		want := append(append(dataIDs(seed), dataIDs(batch)...), dataIDs(later)...)
		if !equalIDs(ids(got), want) {
			t.Fatalf("stream holds %v, want exactly %v", ids(got), want)
		}
	})
	t.Run("SingleEventRetrySameResult", func(t *testing.T) {
		// A retried single-event append reports the original revision and
		// position.
		stream := newStream("idem")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Placed", 1)...)
		ev := newEvent("Paid", 1)
		first := mustAppend(t, c, stream, esdb.Revision(0), ev)
		second := mustAppend(t, c, stream, esdb.Revision(0), ev)
		if *first != *second {
			t.Fatalf("retry result %+v differs from first result %+v", *second, *first)
		}
		wantRevisions(t, mustRead(t, c, stream), 0, 1)
	})
	t.Run("RetryAfterMoreEventsWithSubset", func(t *testing.T) {
		// The first event alone at the same expected revision is also already
		// committed: success, nothing written.
		stream := newStream("idem")
		batch := newEvents("Placed", 3)
		mustAppend(t, c, stream, esdb.NoStream{}, batch...)
		res := mustAppend(t, c, stream, esdb.NoStream{}, batch[0])
		if res.NextExpectedVersion != 0 {
			t.Fatalf("retry of first event: NextExpectedVersion %d, want 0", res.NextExpectedVersion)
		}
		if got := mustRead(t, c, stream); len(got) != 3 {
			t.Fatalf("stream holds revisions %v, want 0..2", revisions(got))
		}
	})
	partial := []struct {
		name  string
		retry func(batch []esdb.EventData) []esdb.EventData
	}{
		{"PartialOverlapNewTail", func(b []esdb.EventData) []esdb.EventData { return []esdb.EventData{b[0], newEvent("Other", 7)} }},
		{"PartialOverlapLonger", func(b []esdb.EventData) []esdb.EventData {
			return append(append([]esdb.EventData{}, b...), newEvent("Other", 7))
		}},
		{"SameIDsOtherOrder", func(b []esdb.EventData) []esdb.EventData { return []esdb.EventData{b[1], b[0]} }},
	}
	for _, p := range partial {
		t.Run(p.name, func(t *testing.T) {
			stream := newStream("idem")
			mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Placed", 1)...)
			batch := newEvents("Paid", 2)
			mustAppend(t, c, stream, esdb.Revision(0), batch...)
			_, err := c.AppendToStream(opContext(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(0)}, p.retry(batch)...)
			if errCode(err) != esdb.ErrorCodeWrongExpectedVersion {
				t.Fatalf("partially overlapping retry: err %v (code %d), want WrongExpectedVersion", err, errCode(err))
			}
			if got := mustRead(t, c, stream); len(got) != 3 {
				t.Fatalf("stream holds revisions %v, want 0..2", revisions(got))
			}
		})
	}
	t.Run("AnyImmediateRetry", func(t *testing.T) {
		// With Any the server only de-duplicates events it still has in its
		// recent-events cache; an immediate retry always is.
		stream := newStream("idem")
		evs := newEvents("Placed", 2)
		mustAppend(t, c, stream, esdb.Any{}, evs...)
		res := mustAppend(t, c, stream, esdb.Any{}, evs...)
		if res.NextExpectedVersion != 1 {
			t.Fatalf("retry with Any: NextExpectedVersion %d, want 1", res.NextExpectedVersion)
		}
		if got := mustRead(t, c, stream); !equalIDs(ids(got), dataIDs(evs)) {
			t.Fatalf("stream holds %v, want exactly %v", ids(got), dataIDs(evs))
		}
	})
	t.Run("SameIDOtherStream", func(t *testing.T) {
		// Idempotency is keyed by (stream, event ID): the same ID may be
		// written to another stream.
		a, b := newStream("idem"), newStream("idem")
		ev := newEvent("Placed", 1)
		mustAppend(t, c, a, esdb.NoStream{}, ev)
		mustAppend(t, c, b, esdb.NoStream{}, ev)
		if got := mustRead(t, c, b); len(got) != 1 || got[0].OriginalEvent().EventID != ev.EventID {
			t.Fatalf("stream %s holds %v, want [%s]", b, ids(got), ev.EventID)
		}
	})
}

// testZeroEventAppend checks that appending no events succeeds when the
// expectation holds and creates or changes nothing (reliability.md §1.2).
func testZeroEventAppend(t *testing.T, c *esdb.Client) {
	for _, exp := range []esdb.ExpectedRevision{esdb.NoStream{}, esdb.Any{}} {
		t.Run("Missing/"+expString(exp), func(t *testing.T) {
			stream := newStream("zero")
			mustAppend(t, c, stream, exp)
			wantReadErr(t, c, stream, esdb.ErrorCodeResourceNotFound)
		})
	}
	t.Run("Existing/Revision(0)", func(t *testing.T) {
		stream := newStream("zero")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Placed", 1)...)
		mustAppend(t, c, stream, esdb.Revision(0))
		wantRevisions(t, mustRead(t, c, stream), 0)
		// The stream is still at revision 0.
		res := mustAppend(t, c, stream, esdb.Revision(0), newEvent("Paid", 1))
		if res.NextExpectedVersion != 1 {
			t.Fatalf("append after empty append: NextExpectedVersion %d, want 1", res.NextExpectedVersion)
		}
	})
}
