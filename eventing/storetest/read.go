package storetest

import (
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// testAllOrder checks $all: one global order, strictly increasing positions
// (never assumed contiguous), per-stream revisions in order, stream reads
// and $all reads agreeing on positions (servers >= 22.6), and an append's
// result carrying the position of its event.
func testAllOrder(t *testing.T, c *esdb.Client) {
	streams := []string{newStream("order"), newStream("order"), newStream("order")}
	var appended []esdb.EventData
	var appendedOn []string
	singles := map[string]esdb.WriteResult{} // event ID -> result of its single-event append
	for i := range 24 {
		s := streams[i%3]
		batch := newEvents("Step", 1+i%4)
		res := mustAppend(t, c, s, esdb.Any{}, batch...)
		if len(batch) == 1 {
			singles[batch[0].EventID.String()] = *res
		}
		for range batch {
			appendedOn = append(appendedOn, s)
		}
		appended = append(appended, batch...)
	}
	first := mustRead(t, c, streams[0])[0].OriginalEvent().Position
	all := onStreams(readAll(t, c, esdb.ReadAllOptions{From: first}, 100_000), streams...)

	if !equalIDs(ids(all), dataIDs(appended)) {
		t.Fatalf("$all order of our events: got %v, want append order %v", ids(all), dataIDs(appended))
	}
	next := map[string]uint64{}
	for i, e := range all {
		ev := e.OriginalEvent()
		if i > 0 && !less(all[i-1].OriginalEvent().Position, ev.Position) {
			t.Fatalf("$all position %+v at index %d does not follow %+v", ev.Position, i, all[i-1].OriginalEvent().Position)
		}
		checkEvent(t, e, appendedOn[i], next[ev.StreamID], appended[i])
		next[ev.StreamID]++
		if e.Commit == nil || *e.Commit != ev.Position.Commit {
			t.Fatalf("$all event %s: ResolvedEvent.Commit %v, want %d", ev.EventID, e.Commit, ev.Position.Commit)
		}
		if r, ok := singles[ev.EventID.String()]; ok && (r.CommitPosition != ev.Position.Commit || r.PreparePosition != ev.Position.Prepare) {
			t.Fatalf("single-event append of %s returned position %d/%d, the event is at %+v", ev.EventID, r.CommitPosition, r.PreparePosition, ev.Position)
		}
	}
	// Stream reads carry the same positions as $all.
	byID := map[string]esdb.Position{}
	for _, e := range all {
		byID[e.OriginalEvent().EventID.String()] = e.OriginalEvent().Position
	}
	for _, s := range streams {
		for _, e := range mustRead(t, c, s) {
			if p := byID[e.OriginalEvent().EventID.String()]; p != e.OriginalEvent().Position {
				t.Fatalf("stream read of %s gives position %+v, $all gives %+v", e.OriginalEvent().EventID, e.OriginalEvent().Position, p)
			}
		}
	}
}

// testReadStream checks stream read bounds: forwards reads from a revision
// are inclusive, backwards reads from a revision are inclusive and go down,
// count limits, reads past the end are empty, and a missing stream is
// ErrorCodeResourceNotFound at the first Recv (client test
// readStreamNotFound).
func testReadStream(t *testing.T, c *esdb.Client) {
	stream := newStream("read")
	evs := newEvents("Step", 10)
	mustAppend(t, c, stream, esdb.NoStream{}, evs...)

	cases := []struct {
		name  string
		opts  esdb.ReadStreamOptions
		count uint64
		want  []uint64
	}{
		{"ForwardsFromStart", esdb.ReadStreamOptions{From: esdb.Start{}}, 100, []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"ForwardsDefaultIsStart", esdb.ReadStreamOptions{}, 3, []uint64{0, 1, 2}},
		{"ForwardsFromRevision", esdb.ReadStreamOptions{From: esdb.Revision(4)}, 3, []uint64{4, 5, 6}},
		{"ForwardsFromLastRevision", esdb.ReadStreamOptions{From: esdb.Revision(9)}, 3, []uint64{9}},
		{"ForwardsPastEnd", esdb.ReadStreamOptions{From: esdb.Revision(10)}, 3, nil},
		{"BackwardsFromEnd", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 3, []uint64{9, 8, 7}},
		{"BackwardsFromRevision", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(4)}, 3, []uint64{4, 3, 2}},
		{"BackwardsToStart", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(1)}, 10, []uint64{1, 0}},
		{"BackwardsFromStart", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Start{}}, 10, []uint64{0}},
		{"CountOne", esdb.ReadStreamOptions{}, 1, []uint64{0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readStream(t, c, stream, tc.opts, tc.count)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			wantRevisions(t, got, tc.want...)
			for _, e := range got {
				checkEvent(t, e, stream, e.OriginalEvent().EventNumber, evs[e.OriginalEvent().EventNumber])
			}
		})
	}
	t.Run("EOFAfterCompletion", func(t *testing.T) {
		rs, err := c.ReadStream(opContext(t), stream, esdb.ReadStreamOptions{}, 1_024)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		if got, err := collect(rs); err != nil || len(got) != 10 {
			t.Fatalf("read: %d events, err %v", len(got), err)
		}
		if _, err := rs.Recv(); err == nil {
			t.Fatalf("Recv after io.EOF: got nil error, want io.EOF again")
		}
	})
	for _, dir := range []esdb.Direction{esdb.Forwards, esdb.Backwards} {
		name := "NotFound/Forwards"
		from := esdb.StreamPosition(esdb.Start{})
		if dir == esdb.Backwards {
			name, from = "NotFound/Backwards", esdb.End{}
		}
		t.Run(name, func(t *testing.T) {
			got, err := readStream(t, c, newStream("missing"), esdb.ReadStreamOptions{Direction: dir, From: from}, 10)
			if len(got) != 0 || errCode(err) != esdb.ErrorCodeResourceNotFound {
				t.Fatalf("read missing stream: %d events, err %v (code %d); want ErrorCodeResourceNotFound", len(got), err, errCode(err))
			}
		})
	}
}

// testReadAll checks $all read bounds as the real server has them
// (esdb-protocol.md §5.2, client fixtures all-c1788-p1788 and
// all-back-c3386-p3386): forwards from a position is inclusive, backwards
// from a position is exclusive.
func testReadAll(t *testing.T, c *esdb.Client) {
	stream := newStream("readall")
	evs := newEvents("Step", 5)
	for i := range evs {
		mustAppend(t, c, stream, esdb.Any{}, evs[i])
	}
	read := mustRead(t, c, stream)
	pos := make([]esdb.Position, len(read))
	for i, e := range read {
		pos[i] = e.OriginalEvent().Position
	}

	t.Run("ForwardsFromPositionInclusive", func(t *testing.T) {
		got := readAll(t, c, esdb.ReadAllOptions{From: pos[2]}, 1)
		if len(got) != 1 || got[0].OriginalEvent().EventID != evs[2].EventID || got[0].OriginalEvent().Position != pos[2] {
			t.Fatalf("read $all forwards from %+v count 1: got %v, want the event at that position %s", pos[2], ids(got), evs[2].EventID)
		}
		mine := onStreams(readAll(t, c, esdb.ReadAllOptions{From: pos[2]}, 10_000), stream)
		if !equalIDs(ids(mine), dataIDs(evs[2:])) {
			t.Fatalf("read $all forwards from %+v: our events %v, want %v", pos[2], ids(mine), dataIDs(evs[2:]))
		}
	})
	t.Run("BackwardsFromPositionExclusive", func(t *testing.T) {
		got := readAll(t, c, esdb.ReadAllOptions{From: pos[2], Direction: esdb.Backwards}, 1_000)
		for i, e := range got {
			p := e.OriginalEvent().Position
			if !less(p, pos[2]) || (i > 0 && !less(p, got[i-1].OriginalEvent().Position)) {
				t.Fatalf("read $all backwards from %+v: position %+v at index %d is out of order", pos[2], p, i)
			}
		}
		mine := onStreams(got, stream)
		if !equalIDs(ids(mine), dataIDs([]esdb.EventData{evs[1], evs[0]})) {
			t.Fatalf("read $all backwards from %+v: our events %v, want [%s %s]", pos[2], ids(mine), evs[1].EventID, evs[0].EventID)
		}
	})
	t.Run("ForwardsFromStart", func(t *testing.T) {
		got := readAll(t, c, esdb.ReadAllOptions{From: esdb.Start{}}, 50)
		if len(got) == 0 {
			t.Fatalf("read $all forwards from start: no events")
		}
		for i, e := range got {
			p := e.OriginalEvent().Position
			if i > 0 && !less(got[i-1].OriginalEvent().Position, p) {
				t.Fatalf("read $all from start: position %+v at index %d is out of order", p, i)
			}
		}
	})
	t.Run("BackwardsFromEnd", func(t *testing.T) {
		got := readAll(t, c, esdb.ReadAllOptions{From: esdb.End{}, Direction: esdb.Backwards}, 1)
		if len(got) != 1 || less(got[0].OriginalEvent().Position, pos[4]) {
			t.Fatalf("read $all backwards from end count 1: got %v, want the newest event (at or after %+v)", ids(got), pos[4])
		}
	})
}

// testCreated checks the `created` timestamp: set by the server at append
// time, identical in stream reads, $all reads and subscriptions. The client
// parses it as 100 ns ticks since the Unix epoch (esdb-protocol.md §5.8).
func testCreated(t *testing.T, c *esdb.Client) {
	const skew = 5 * time.Second // a real server's clock may differ slightly
	stream := newStream("created")
	before := time.Now()
	ev := newEvent("Stamped", 1)
	mustAppend(t, c, stream, esdb.NoStream{}, ev)
	after := time.Now()

	got := mustRead(t, c, stream)[0].OriginalEvent()
	created := got.CreatedDate
	if created.Before(before.Add(-skew)) || created.After(after.Add(skew)) {
		t.Fatalf("created %v, want between %v and %v", created, before, after)
	}
	if created.Nanosecond()%100 != 0 {
		t.Fatalf("created %v has sub-tick precision", created)
	}
	all := readAll(t, c, esdb.ReadAllOptions{From: got.Position}, 1)
	if len(all) != 1 || !all[0].OriginalEvent().CreatedDate.Equal(created) {
		t.Fatalf("$all read gives created %v, stream read %v", all, created)
	}
	ctx := subContext(t)
	sub, err := c.SubscribeToStream(ctx, stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	e := nextEvent(t, sub)
	if !e.OriginalEvent().CreatedDate.Equal(created) {
		t.Fatalf("subscription gives created %v, stream read %v", e.OriginalEvent().CreatedDate, created)
	}
}
