package storetest

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

// subContext bounds a subscription: when it expires the client drops the
// subscription and the next Recv fails the test instead of blocking.
func subContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), subTimeout)
	t.Cleanup(cancel)
	return ctx
}

// nextMsg returns the next subscription message and fails the test if the
// subscription dropped (which includes the deadline of its context).
func nextMsg(t *testing.T, sub *esdb.Subscription) *esdb.SubscriptionEvent {
	t.Helper()
	m := sub.Recv()
	if m.SubscriptionDropped != nil {
		t.Fatalf("subscription dropped while waiting: %v", m.SubscriptionDropped.Error)
	}
	return m
}

// nextEvent returns the next event, skipping caught-up and checkpoint
// messages.
func nextEvent(t *testing.T, sub *esdb.Subscription) *esdb.ResolvedEvent {
	t.Helper()
	for {
		if m := nextMsg(t, sub); m.EventAppeared != nil {
			return m.EventAppeared
		}
	}
}

// received is what a subscription delivered.
type received struct {
	events   []*esdb.ResolvedEvent // events of the watched streams, in delivery order
	all      []*esdb.ResolvedEvent // every event delivered
	caughtUp int                   // len(events) when CaughtUp arrived; -1 if it has not
	checks   []esdb.Position       // CheckPointReached positions
}

// receive reads from sub until want events of the given streams (all
// streams if none given) arrived and, if waitCaughtUp, CaughtUp was seen.
func receive(t *testing.T, sub *esdb.Subscription, r *received, want int, waitCaughtUp bool, streams ...string) {
	t.Helper()
	for len(r.events) < want || (waitCaughtUp && r.caughtUp < 0) {
		m := nextMsg(t, sub)
		switch {
		case m.EventAppeared != nil:
			e := m.EventAppeared
			if n := len(r.all); n > 0 && !less(r.all[n-1].OriginalEvent().Position, e.OriginalEvent().Position) {
				t.Fatalf("subscription delivered position %+v after %+v", e.OriginalEvent().Position, r.all[n-1].OriginalEvent().Position)
			}
			r.all = append(r.all, e)
			if len(streams) == 0 || len(onStreams([]*esdb.ResolvedEvent{e}, streams...)) == 1 {
				r.events = append(r.events, e)
			}
		case m.CaughtUp != nil:
			if r.caughtUp < 0 {
				r.caughtUp = len(r.events)
			}
		case m.CheckPointReached != nil:
			r.checks = append(r.checks, *m.CheckPointReached)
		}
	}
}

func newReceived() *received { return &received{caughtUp: -1} }

// appendInBatches appends count events to stream in batches of 1..5 with
// exact expected revisions, starting at revision from.
func appendInBatches(t *testing.T, c *esdb.Client, stream string, from uint64, count int) []esdb.EventData {
	var out []esdb.EventData
	rev := from
	for len(out) < count {
		n := min(1+len(out)%5, count-len(out))
		batch := newEvents("Step", n)
		var exp esdb.ExpectedRevision = esdb.Revision(rev - 1)
		if rev == 0 {
			exp = esdb.NoStream{}
		}
		if _, err := c.AppendToStream(opContext(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, batch...); err != nil {
			t.Errorf("append to %s at %s: %v", stream, expString(exp), err)
			return out
		}
		rev += uint64(n)
		out = append(out, batch...)
	}
	return out
}

// testSubscribeToStream checks stream subscriptions: catch-up then live
// with CaughtUp in between (servers >= 23, client test
// subscriptionToStreamCaughtUpMessage), start revisions exclusive
// (esdb-protocol.md §5.2), and no gap or duplicate across the switch from
// catch-up to live.
func testSubscribeToStream(t *testing.T, c *esdb.Client) {
	t.Run("CatchUpThenLive", func(t *testing.T) {
		stream := newStream("sub")
		evs := newEvents("Step", 3)
		mustAppend(t, c, stream, esdb.NoStream{}, evs...)
		sub, err := c.SubscribeToStream(subContext(t), stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		r := newReceived()
		receive(t, sub, r, 3, true)
		if r.caughtUp != 3 {
			t.Fatalf("CaughtUp arrived after %d events, want after the 3 existing ones", r.caughtUp)
		}
		live := newEvents("Live", 3)
		mustAppend(t, c, stream, esdb.Revision(2), live[:2]...)
		mustAppend(t, c, stream, esdb.Revision(4), live[2])
		receive(t, sub, r, 6, false)
		wantRevisions(t, r.events, 0, 1, 2, 3, 4, 5)
		all := append(evs, live...)
		for i, e := range r.events {
			checkEvent(t, e, stream, uint64(i), all[i])
		}
	})
	t.Run("FromEnd", func(t *testing.T) {
		stream := newStream("sub")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Old", 2)...)
		sub, err := c.SubscribeToStream(subContext(t), stream, esdb.SubscribeToStreamOptions{From: esdb.End{}})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		ev := newEvent("New", 1)
		mustAppend(t, c, stream, esdb.Revision(1), ev)
		checkEvent(t, nextEvent(t, sub), stream, 2, ev)
	})
	t.Run("FromRevisionExclusive", func(t *testing.T) {
		stream := newStream("sub")
		evs := newEvents("Step", 4)
		mustAppend(t, c, stream, esdb.NoStream{}, evs...)
		sub, err := c.SubscribeToStream(subContext(t), stream, esdb.SubscribeToStreamOptions{From: esdb.Revision(1)})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		checkEvent(t, nextEvent(t, sub), stream, 2, evs[2])
		checkEvent(t, nextEvent(t, sub), stream, 3, evs[3])
		ev := newEvent("Live", 4)
		mustAppend(t, c, stream, esdb.Revision(3), ev)
		checkEvent(t, nextEvent(t, sub), stream, 4, ev)
	})
	t.Run("BeforeStreamExists", func(t *testing.T) {
		stream := newStream("sub")
		sub, err := c.SubscribeToStream(subContext(t), stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		evs := newEvents("Step", 2)
		mustAppend(t, c, stream, esdb.NoStream{}, evs...)
		checkEvent(t, nextEvent(t, sub), stream, 0, evs[0])
		checkEvent(t, nextEvent(t, sub), stream, 1, evs[1])
	})
	t.Run("NoGapNoDuplicateAcrossCatchUp", func(t *testing.T) {
		stream := newStream("sub")
		const before, during = 60, 60
		appendInBatches(t, c, stream, 0, before)
		sub, err := c.SubscribeToStream(subContext(t), stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		var wg sync.WaitGroup
		wg.Go(func() { appendInBatches(t, c, stream, before, during) })
		r := newReceived()
		receive(t, sub, r, before+during, false)
		wg.Wait()
		for i, rev := range revisions(r.events) {
			if rev != uint64(i) {
				t.Fatalf("subscription delivered revisions %v, want 0..%d in order", revisions(r.events), before+during-1)
			}
		}
		if r.caughtUp < before {
			t.Fatalf("CaughtUp after %d events, want it (once) after at least the %d existing ones", r.caughtUp, before)
		}
	})
}

// testSubscribeToAll checks $all subscriptions: start positions exclusive
// (esdb-protocol.md §5.2, reliability.md §1.5), strictly increasing
// positions, and the delivered sequence equal to the $all read.
func testSubscribeToAll(t *testing.T, c *esdb.Client) {
	t.Run("FromEnd", func(t *testing.T) {
		stream := newStream("suball")
		sub, err := c.SubscribeToAll(subContext(t), esdb.SubscribeToAllOptions{From: esdb.End{}})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		evs := newEvents("Step", 3)
		mustAppend(t, c, stream, esdb.NoStream{}, evs[:2]...)
		mustAppend(t, c, stream, esdb.Revision(1), evs[2])
		r := newReceived()
		receive(t, sub, r, 3, false, stream)
		for i, e := range r.events {
			checkEvent(t, e, stream, uint64(i), evs[i])
		}
	})
	t.Run("FromPositionExclusive", func(t *testing.T) {
		stream := newStream("suball")
		evs := newEvents("Step", 5)
		for i := range 4 {
			mustAppend(t, c, stream, esdb.Any{}, evs[i])
		}
		p1 := mustRead(t, c, stream)[1].OriginalEvent().Position
		sub, err := c.SubscribeToAll(subContext(t), esdb.SubscribeToAllOptions{From: p1})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		first := nextEvent(t, sub)
		if !less(p1, first.OriginalEvent().Position) {
			t.Fatalf("subscription from %+v delivered %+v first, want a later position", p1, first.OriginalEvent().Position)
		}
		r := &received{caughtUp: -1, all: []*esdb.ResolvedEvent{first}, events: onStreams([]*esdb.ResolvedEvent{first}, stream)}
		receive(t, sub, r, 2, false, stream)
		mustAppend(t, c, stream, esdb.Revision(3), evs[4])
		receive(t, sub, r, 3, false, stream)
		for i, e := range r.events {
			checkEvent(t, e, stream, uint64(i+2), evs[i+2])
		}
	})
	t.Run("FromStartCatchUpThenLive", func(t *testing.T) {
		prefix := newStream("pfx")
		a, b := prefix+"-a", prefix+"-b"
		var wg sync.WaitGroup
		wg.Go(func() { appendInBatches(t, c, a, 0, 30) })
		wg.Go(func() { appendInBatches(t, c, b, 0, 30) })
		wg.Wait()
		sub, err := c.SubscribeToAll(subContext(t), esdb.SubscribeToAllOptions{
			From:   esdb.Start{},
			Filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{prefix}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		wg.Go(func() { appendInBatches(t, c, a, 30, 40) })
		wg.Go(func() { appendInBatches(t, c, b, 30, 40) })
		r := newReceived()
		receive(t, sub, r, 140, true)
		wg.Wait()
		if r.caughtUp < 60 {
			t.Fatalf("CaughtUp after %d events, want after at least the 60 written before subscribing", r.caughtUp)
		}
		first := mustRead(t, c, a)[0].OriginalEvent().Position
		if p := mustRead(t, c, b)[0].OriginalEvent().Position; less(p, first) {
			first = p
		}
		want := onStreams(readAll(t, c, esdb.ReadAllOptions{From: first}, 100_000), a, b)
		if !equalIDs(ids(r.events), ids(want)) {
			t.Fatalf("subscription delivered %d events %s\n$all holds %d: %s", len(r.events), describe(r.events), len(want), describe(want))
		}
		for i := range want {
			if r.events[i].OriginalEvent().Position != want[i].OriginalEvent().Position {
				t.Fatalf("event %d: subscription position %+v, $all read %+v", i, r.events[i].OriginalEvent().Position, want[i].OriginalEvent().Position)
			}
		}
	})
}

// testFilters checks server-side $all filters: stream prefix (several
// prefixes are ORed), event-type prefix, regular expressions on either, and
// CheckPointReached for filtered subscriptions (every 32 scanned events by
// default, reliability.md §1.5, esdb-protocol.md §5.12).
func testFilters(t *testing.T, c *esdb.Client) {
	id := strings.ReplaceAll(uuid.NewString(), "-", "")
	streamA := "flt" + id + "-a"
	streamB := "flt" + id + "-b"
	streamC := "other" + id + "-c"
	typeX, typeY := "X"+id+"Made", "Y"+id+"Made"
	// Written in this order: a/X b/Y c/X a/Y b/X c/Y a/X ...
	streams := []string{streamA, streamB, streamC}
	types := []string{typeX, typeY}
	marker := newStream("fltmarker")
	mustAppend(t, c, marker, esdb.NoStream{}, newEvent("Marker", 0))
	start := mustRead(t, c, marker)[0].OriginalEvent().Position
	type written struct {
		stream string
		ev     esdb.EventData
	}
	var all []written
	for i := range 12 {
		ev := newEvent(types[i%2], i)
		s := streams[i%3]
		mustAppend(t, c, s, esdb.Any{}, ev)
		all = append(all, written{s, ev})
	}

	cases := []struct {
		name   string
		filter esdb.SubscriptionFilter
		match  func(w written) bool
	}{
		{"StreamPrefix", esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{"flt" + id}},
			func(w written) bool { return w.stream != streamC }},
		{"StreamPrefixes", esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{streamA, streamC}},
			func(w written) bool { return w.stream != streamB }},
		{"EventTypePrefix", esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: []string{"X" + id}},
			func(w written) bool { return w.ev.EventType == typeX }},
		{"StreamRegex", esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Regex: "^(flt|other)" + id + "-(a|c)$"},
			func(w written) bool { return w.stream != streamB }},
		{"EventTypeRegex", esdb.SubscriptionFilter{Type: esdb.EventFilterType, Regex: "^Y" + id},
			func(w written) bool { return w.ev.EventType == typeY }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.filter.Regex != "" {
				regexp.MustCompile(tc.filter.Regex) // the pattern means the same in RE2 and .NET
			}
			var want []uuid.UUID
			for _, w := range all {
				if tc.match(w) {
					want = append(want, w.ev.EventID)
				}
			}
			f := tc.filter
			sub, err := c.SubscribeToAll(subContext(t), esdb.SubscribeToAllOptions{From: start, Filter: &f})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			r := newReceived()
			receive(t, sub, r, len(want), false)
			if !equalIDs(ids(r.events), want) {
				t.Fatalf("filter %+v delivered %v, want %v", f, ids(r.events), want)
			}
			// A later matching event arrives next: nothing non-matching slipped in.
			last := all[0]
			for _, w := range all {
				if tc.match(w) {
					last = w
				}
			}
			ev := newEvent(last.ev.EventType, 100)
			mustAppend(t, c, last.stream, esdb.Any{}, ev)
			all = append(all, written{last.stream, ev})
			if got := nextEvent(t, sub); got.OriginalEvent().EventID != ev.EventID {
				t.Fatalf("after the catch-up the filter delivered %s (%s, %s), want the new matching event %s",
					got.OriginalEvent().EventID, got.OriginalEvent().StreamID, got.OriginalEvent().EventType, ev.EventID)
			}
		})
	}
	t.Run("ExcludeSystemEvents", func(t *testing.T) {
		stream := newStream("flt")
		var m esdb.StreamMetadata
		m.SetMaxCount(10) // writes a $metadata event, which the filter must skip
		if _, err := c.SetStreamMetadata(opContext(t), stream, esdb.AppendToStreamOptions{}, m); err != nil {
			t.Fatal(err)
		}
		from := readAll(t, c, esdb.ReadAllOptions{From: esdb.End{}, Direction: esdb.Backwards}, 1)[0].OriginalEvent().Position
		ev := newEvent("Visible", 1)
		mustAppend(t, c, stream, esdb.Any{}, ev)
		sub, err := c.SubscribeToAll(subContext(t), esdb.SubscribeToAllOptions{From: from, Filter: esdb.ExcludeSystemEventsFilter()})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		r := newReceived()
		receive(t, sub, r, 1, false, stream)
		for _, e := range r.all {
			if strings.HasPrefix(e.OriginalEvent().EventType, "$") {
				t.Fatalf("system event %s of type %s delivered through ExcludeSystemEventsFilter", e.OriginalEvent().EventID, e.OriginalEvent().EventType)
			}
		}
	})
	t.Run("CheckPointReached", func(t *testing.T) {
		noise := newStream("fltnoise")
		mustAppend(t, c, noise, esdb.NoStream{}, newEvent("Noise", 0))
		from := mustRead(t, c, noise)[0].OriginalEvent().Position
		for i := range 4 {
			mustAppend(t, c, noise, esdb.Any{}, newEvents("Noise", 25+i)...)
		}
		typ := "Rare" + strings.ReplaceAll(uuid.NewString(), "-", "")
		rare := newEvent(typ, 1)
		mustAppend(t, c, noise, esdb.Any{}, rare)
		last := mustRead(t, c, noise)
		rarePos := last[len(last)-1].OriginalEvent().Position
		sub, err := c.SubscribeToAll(subContext(t), esdb.SubscribeToAllOptions{
			From:   from,
			Filter: &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: []string{typ}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		r := newReceived()
		more := false
		for len(r.events) < 1 || len(r.checks) < 1 {
			m := nextMsg(t, sub)
			switch {
			case m.EventAppeared != nil:
				r.events = append(r.events, m.EventAppeared)
			case m.CheckPointReached != nil:
				r.checks = append(r.checks, *m.CheckPointReached)
			}
			if len(r.events) > 0 && len(r.checks) == 0 && !more {
				// Live now: more scanned noise makes a checkpoint due.
				mustAppend(t, c, noise, esdb.Any{}, newEvents("Noise", 40)...)
				more = true
			}
		}
		if got := r.events[0].OriginalEvent(); got.EventID != rare.EventID || got.Position != rarePos {
			t.Fatalf("filtered subscription delivered %s at %+v, want %s at %+v", got.EventID, got.Position, rare.EventID, rarePos)
		}
		for i, p := range r.checks {
			if !less(from, p) || (i > 0 && less(p, r.checks[i-1])) {
				t.Fatalf("checkpoints %v: want each after the start %+v and non-decreasing", r.checks, from)
			}
		}
	})
}

// describe formats events for failure messages.
func describe(evs []*esdb.ResolvedEvent) string {
	var b strings.Builder
	for _, e := range evs {
		o := e.OriginalEvent()
		fmt.Fprintf(&b, "%s@%d(%d/%d) ", o.StreamID, o.EventNumber, o.Position.Commit, o.Position.Prepare)
	}
	return b.String()
}
