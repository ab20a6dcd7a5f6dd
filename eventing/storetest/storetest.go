package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

// Run runs the whole suite against the store newClient connects to. newClient
// is called once per top-level group and must register its own cleanup
// (t.Cleanup) for the client it returns. Subtests are named so that -run can
// pick them, for example -run 'Conformance/ExpectedRevision/SoftDeleted'.
func Run(t *testing.T, newClient func(t *testing.T) *esdb.Client) {
	t.Helper()
	groups := []struct {
		name string
		run  func(t *testing.T, c *esdb.Client)
	}{
		{"ExpectedRevision", testExpectedRevision},
		{"Idempotency", testIdempotency},
		{"ZeroEventAppend", testZeroEventAppend},
		{"AllOrder", testAllOrder},
		{"ReadStream", testReadStream},
		{"ReadAll", testReadAll},
		{"Created", testCreated},
		{"SubscribeToStream", testSubscribeToStream},
		{"SubscribeToAll", testSubscribeToAll},
		{"Filters", testFilters},
		{"Delete", testDelete},
		{"Metadata", testMetadata},
		{"AppendSize", testAppendSize},
		{"Concurrency", testConcurrency},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) { g.run(t, newClient(t)) })
	}
}

// opTimeout bounds every single operation; subTimeout bounds a whole
// subscription test. Both are deadlines, not waits: a conforming store
// finishes far sooner.
const (
	opTimeout  = 15 * time.Second
	subTimeout = 20 * time.Second
)

func opContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newStream returns a stream name no other test or run uses.
func newStream(kind string) string {
	return fmt.Sprintf("storetest_%s-%s", kind, strings.ReplaceAll(uuid.NewString(), "-", ""))
}

// newEvent returns a JSON event with a fresh ID, type typ and a data payload
// that records n.
func newEvent(typ string, n int) esdb.EventData {
	data, _ := json.Marshal(map[string]int{"n": n})
	return esdb.EventData{
		EventID:     uuid.New(),
		EventType:   typ,
		ContentType: esdb.ContentTypeJson,
		Data:        data,
		Metadata:    []byte(`{"source":"storetest"}`),
	}
}

func newEvents(typ string, count int) []esdb.EventData {
	evs := make([]esdb.EventData, count)
	for i := range evs {
		evs[i] = newEvent(typ, i)
	}
	return evs
}

// errCode returns the client error code carried by err, or -1 when err is
// not an *esdb.Error.
func errCode(err error) esdb.ErrorCode {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return -1
}

func mustAppend(t *testing.T, c *esdb.Client, stream string, exp esdb.ExpectedRevision, evs ...esdb.EventData) *esdb.WriteResult {
	t.Helper()
	res, err := c.AppendToStream(opContext(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, evs...)
	if err != nil {
		t.Fatalf("append %d event(s) to %s with %s: %v", len(evs), stream, expString(exp), err)
	}
	return res
}

func expString(exp esdb.ExpectedRevision) string {
	switch e := exp.(type) {
	case esdb.Any:
		return "Any"
	case esdb.NoStream:
		return "NoStream"
	case esdb.StreamExists:
		return "StreamExists"
	case esdb.StreamRevision:
		return fmt.Sprintf("Revision(%d)", e.Value)
	}
	return fmt.Sprintf("%T", exp)
}

// readStream reads up to count events and returns them with the error that
// ended the read (nil for a clean io.EOF).
func readStream(t *testing.T, c *esdb.Client, stream string, opts esdb.ReadStreamOptions, count uint64) ([]*esdb.ResolvedEvent, error) {
	t.Helper()
	rs, err := c.ReadStream(opContext(t), stream, opts, count)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	return collect(rs)
}

func readAll(t *testing.T, c *esdb.Client, opts esdb.ReadAllOptions, count uint64) []*esdb.ResolvedEvent {
	t.Helper()
	rs, err := c.ReadAll(opContext(t), opts, count)
	if err != nil {
		t.Fatalf("read $all: %v", err)
	}
	defer rs.Close()
	evs, err := collect(rs)
	if err != nil {
		t.Fatalf("read $all: %v", err)
	}
	return evs
}

func collect(rs *esdb.ReadStream) ([]*esdb.ResolvedEvent, error) {
	var evs []*esdb.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

// mustRead reads the whole stream forwards and fails on any error.
func mustRead(t *testing.T, c *esdb.Client, stream string) []*esdb.ResolvedEvent {
	t.Helper()
	evs, err := readStream(t, c, stream, esdb.ReadStreamOptions{}, 10_000)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return evs
}

// wantReadErr reads stream and checks that the first Recv fails with code.
func wantReadErr(t *testing.T, c *esdb.Client, stream string, code esdb.ErrorCode) {
	t.Helper()
	evs, err := readStream(t, c, stream, esdb.ReadStreamOptions{}, 10)
	if err == nil || errCode(err) != code || len(evs) != 0 {
		t.Fatalf("read %s: got %d events, err %v (code %d); want no events and error code %d", stream, len(evs), err, errCode(err), code)
	}
}

func revisions(evs []*esdb.ResolvedEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.OriginalEvent().EventNumber
	}
	return out
}

func ids(evs []*esdb.ResolvedEvent) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.OriginalEvent().EventID
	}
	return out
}

func dataIDs(evs []esdb.EventData) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.EventID
	}
	return out
}

func equalIDs(a, b []uuid.UUID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func wantRevisions(t *testing.T, evs []*esdb.ResolvedEvent, want ...uint64) {
	t.Helper()
	got := revisions(evs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("revisions: got %v, want %v", got, want)
	}
}

// less orders $all positions. Positions are (commit, prepare) log offsets:
// they grow but are not contiguous, and events of one multi-event append may
// share a commit position, so they compare as pairs.
func less(a, b esdb.Position) bool {
	if a.Commit != b.Commit {
		return a.Commit < b.Commit
	}
	return a.Prepare < b.Prepare
}

// onStreams keeps the events of the given streams, in order.
func onStreams(evs []*esdb.ResolvedEvent, streams ...string) []*esdb.ResolvedEvent {
	var out []*esdb.ResolvedEvent
	for _, e := range evs {
		for _, s := range streams {
			if e.OriginalEvent().StreamID == s {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// checkEvent compares a read event with what was appended.
func checkEvent(t *testing.T, got *esdb.ResolvedEvent, stream string, rev uint64, want esdb.EventData) {
	t.Helper()
	e := got.OriginalEvent()
	if e.StreamID != stream || e.EventNumber != rev || e.EventID != want.EventID || e.EventType != want.EventType ||
		string(e.Data) != string(want.Data) || string(e.UserMetadata) != string(want.Metadata) {
		t.Fatalf("event: got %s@%d id=%s type=%q data=%q meta=%q; want %s@%d id=%s type=%q data=%q meta=%q",
			e.StreamID, e.EventNumber, e.EventID, e.EventType, e.Data, e.UserMetadata,
			stream, rev, want.EventID, want.EventType, want.Data, want.Metadata)
	}
	if want.ContentType == esdb.ContentTypeJson && e.ContentType != "application/json" {
		t.Fatalf("event %s: content type %q, want application/json", e.EventID, e.ContentType)
	}
}

// eventually polls check until it returns "" or the deadline passes. It is
// for conditions that only time changes (such as $maxAge expiry), where
// there is no event to wait on.
func eventually(t *testing.T, deadline time.Duration, check func() string) {
	t.Helper()
	timeout := time.After(deadline)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		msg := check()
		if msg == "" {
			return
		}
		select {
		case <-timeout:
			t.Fatalf("not met within %v: %s", deadline, msg)
		case <-tick.C:
		}
	}
}

// NewClient connects the official client to conn (an esdb:// connection
// string) for the duration of t, with the client's own logging off: the
// suite provokes errors on purpose and reports its own.
func NewClient(t *testing.T, conn string) *esdb.Client {
	t.Helper()
	cfg, err := esdb.ParseConnectionString(conn)
	if err != nil {
		t.Fatalf("parse connection string %q: %v", conn, err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatalf("connect to %s: %v", conn, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
