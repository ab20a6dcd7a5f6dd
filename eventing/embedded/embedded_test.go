package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ordertrail/ordertrail/eventing/embedded"
)

var quiet = slog.New(slog.DiscardHandler)

// start runs a store in dir (a fresh temp dir when empty) and closes it at
// the end of the test.
func start(t *testing.T, dir string) *embedded.Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	srv, err := embedded.Start(context.Background(), embedded.Config{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func connect(t *testing.T, srv *embedded.Server) *esdb.Client {
	t.Helper()
	cfg, err := esdb.ParseConnectionString(srv.ConnectionString())
	if err != nil {
		t.Fatalf("parse %q: %v", srv.ConnectionString(), err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func event(typ string, n int) esdb.EventData {
	return esdb.EventData{
		EventID:     uuid.New(),
		EventType:   typ,
		ContentType: esdb.ContentTypeJson,
		Data:        []byte(fmt.Sprintf(`{"n":%d}`, n)),
		Metadata:    []byte(`{"m":true}`),
	}
}

func errorCode(err error) esdb.ErrorCode {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return -1
}

func readAllOf(rs *esdb.ReadStream, err error) ([]*esdb.ResolvedEvent, error) {
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*esdb.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

func TestAppendAndReadStream(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))

	before := time.Now()
	evs := []esdb.EventData{event("OrderPlaced", 0), event("OrderPaid", 1), event("OrderShipped", 2)}
	res, err := c.AppendToStream(ctx, "order-1", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, evs...)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if res.NextExpectedVersion != 2 || res.CommitPosition == 0 || res.CommitPosition != res.PreparePosition {
		t.Fatalf("append result = %+v, want next revision 2 and a non-zero position with commit == prepare", res)
	}

	got, err := readAllOf(c.ReadStream(ctx, "order-1", esdb.ReadStreamOptions{}, 10))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("read %d events, want 3", len(got))
	}
	for i, ev := range got {
		e := ev.Event
		if e.EventID != evs[i].EventID || e.EventType != evs[i].EventType || string(e.Data) != string(evs[i].Data) ||
			string(e.UserMetadata) != string(evs[i].Metadata) || e.EventNumber != uint64(i) || e.ContentType != "application/json" {
			t.Errorf("event %d = %+v, want %+v at revision %d", i, e, evs[i], i)
		}
		if e.CreatedDate.Before(before.Add(-time.Second)) || e.CreatedDate.After(time.Now().Add(time.Second)) {
			t.Errorf("event %d created %v, want about %v", i, e.CreatedDate, before)
		}
	}
	if got[2].Event.Position.Commit != res.CommitPosition {
		t.Errorf("last event position %d, append reported %d", got[2].Event.Position.Commit, res.CommitPosition)
	}

	back, err := readAllOf(c.ReadStream(ctx, "order-1", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 2))
	if err != nil || len(back) != 2 || back[0].Event.EventNumber != 2 || back[1].Event.EventNumber != 1 {
		t.Fatalf("backwards read = %d events (err %v), want revisions 2,1", len(back), err)
	}
	from1, err := readAllOf(c.ReadStream(ctx, "order-1", esdb.ReadStreamOptions{From: esdb.Revision(1)}, 10))
	if err != nil || len(from1) != 2 || from1[0].Event.EventNumber != 1 {
		t.Fatalf("read from revision 1 = %d events (err %v), want revisions 1,2", len(from1), err)
	}

	_, err = readAllOf(c.ReadStream(ctx, "order-missing", esdb.ReadStreamOptions{}, 10))
	if errorCode(err) != esdb.ErrorCodeResourceNotFound {
		t.Errorf("read missing stream: err = %v, want ResourceNotFound", err)
	}
}

func TestExpectedRevision(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))
	app := func(stream string, exp esdb.ExpectedRevision) error {
		_, err := c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, event("E", 0))
		return err
	}
	steps := []struct {
		name    string
		stream  string
		exp     esdb.ExpectedRevision
		wantWEV bool
	}{
		{"stream exists on missing stream", "s", esdb.StreamExists{}, true},
		{"exact revision on missing stream", "s", esdb.Revision(0), true},
		{"no stream creates", "s", esdb.NoStream{}, false},
		{"no stream again", "s", esdb.NoStream{}, true},
		{"exact 0", "s", esdb.Revision(0), false},
		{"stale exact 0", "s", esdb.Revision(0), true},
		{"future exact 7", "s", esdb.Revision(7), true},
		{"stream exists", "s", esdb.StreamExists{}, false},
		{"any", "s", esdb.Any{}, false},
	}
	for _, s := range steps {
		err := app(s.stream, s.exp)
		if s.wantWEV && errorCode(err) != esdb.ErrorCodeWrongExpectedVersion {
			t.Errorf("%s: err = %v, want WrongExpectedVersion", s.name, err)
		}
		if !s.wantWEV && err != nil {
			t.Errorf("%s: err = %v, want success", s.name, err)
		}
	}
	got, err := readAllOf(c.ReadStream(ctx, "s", esdb.ReadStreamOptions{}, 100))
	if err != nil || len(got) != 4 {
		t.Fatalf("stream has %d events (err %v), want 4", len(got), err)
	}
}

func TestReadAllBounds(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))
	var positions []uint64
	for i := range 5 {
		r, err := c.AppendToStream(ctx, fmt.Sprintf("order-%d", i), esdb.AppendToStreamOptions{}, event("E", i))
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		positions = append(positions, r.CommitPosition)
	}
	all, err := readAllOf(c.ReadAll(ctx, esdb.ReadAllOptions{}, 100))
	if err != nil || len(all) != 5 {
		t.Fatalf("ReadAll = %d events (err %v), want 5", len(all), err)
	}
	for i, ev := range all {
		if ev.Event.Position.Commit != positions[i] {
			t.Errorf("ReadAll[%d] at %d, want %d", i, ev.Event.Position.Commit, positions[i])
		}
	}
	p := esdb.Position{Commit: positions[2], Prepare: positions[2]}
	fwd, err := readAllOf(c.ReadAll(ctx, esdb.ReadAllOptions{From: p}, 100))
	if err != nil || len(fwd) != 3 || fwd[0].Event.Position.Commit != positions[2] {
		t.Errorf("forwards from %d: %d events (err %v), want 3 starting at %d (inclusive)", positions[2], len(fwd), err, positions[2])
	}
	bwd, err := readAllOf(c.ReadAll(ctx, esdb.ReadAllOptions{From: p, Direction: esdb.Backwards}, 100))
	if err != nil || len(bwd) != 2 || bwd[0].Event.Position.Commit != positions[1] {
		t.Errorf("backwards from %d: %d events (err %v), want 2 starting at %d (exclusive)", positions[2], len(bwd), err, positions[1])
	}
	end, err := readAllOf(c.ReadAll(ctx, esdb.ReadAllOptions{From: esdb.End{}, Direction: esdb.Backwards}, 2))
	if err != nil || len(end) != 2 || end[0].Event.Position.Commit != positions[4] {
		t.Errorf("backwards from end: %d events (err %v), want 2 starting at %d", len(end), err, positions[4])
	}
}

// next returns the next subscription event, failing the test on a drop.
func next(t *testing.T, sub *esdb.Subscription) *esdb.SubscriptionEvent {
	t.Helper()
	ev := sub.Recv()
	if ev.SubscriptionDropped != nil {
		t.Fatalf("subscription dropped: %v", ev.SubscriptionDropped.Error)
	}
	return ev
}

func TestSubscribeToAllFiltered(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))
	// 2 matching events among 40 others: a checkpoint is due after 32 scanned.
	var want []uuid.UUID
	for i := range 42 {
		stream, ev := fmt.Sprintf("other-%d", i), event("E", i)
		if i == 0 || i == 41 {
			stream = fmt.Sprintf("order-%d", i)
			want = append(want, ev.EventID)
		}
		if _, err := c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{}, ev); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	sub, err := c.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{
		From:   esdb.Start{},
		Filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{"order-"}},
	})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer sub.Close()

	var got []uuid.UUID
	var checkpoints []uint64
	for caughtUp := false; !caughtUp; {
		ev := next(t, sub)
		switch {
		case ev.EventAppeared != nil:
			if s := ev.EventAppeared.Event.StreamID; !strings.HasPrefix(s, "order-") {
				t.Errorf("filtered subscription delivered %s", s)
			}
			got = append(got, ev.EventAppeared.Event.EventID)
		case ev.CheckPointReached != nil:
			checkpoints = append(checkpoints, ev.CheckPointReached.Commit)
		case ev.CaughtUp != nil:
			caughtUp = true
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("catch-up delivered %v, want %v", got, want)
	}
	all, err := readAllOf(c.ReadAll(ctx, esdb.ReadAllOptions{}, 100))
	if err != nil || len(all) != 42 {
		t.Fatalf("ReadAll: %d events, %v", len(all), err)
	}
	// One checkpoint, at the 32nd scanned event, matching or not.
	if want := all[31].Event.Position.Commit; len(checkpoints) != 1 || checkpoints[0] != want {
		t.Errorf("checkpoints at %v, want exactly one at %d (32nd scanned event)", checkpoints, want)
	}

	live := event("OrderPlaced", 99)
	if _, err := c.AppendToStream(ctx, "other-live", esdb.AppendToStreamOptions{}, event("E", 98)); err != nil {
		t.Fatalf("append: %v", err)
	}
	if _, err := c.AppendToStream(ctx, "order-live", esdb.AppendToStreamOptions{}, live); err != nil {
		t.Fatalf("append: %v", err)
	}
	for {
		ev := next(t, sub)
		if ev.EventAppeared != nil {
			if id := ev.EventAppeared.Event.EventID; id != live.EventID {
				t.Fatalf("live event %v, want %v", id, live.EventID)
			}
			break
		}
	}
}

func TestSubscribeToStreamCatchUpThenLive(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))
	for i := range 3 {
		if _, err := c.AppendToStream(ctx, "order-7", esdb.AppendToStreamOptions{}, event("E", i)); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	sub, err := c.SubscribeToStream(ctx, "order-7", esdb.SubscribeToStreamOptions{From: esdb.Revision(0)})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer sub.Close()
	var revs []uint64
	appended := false
	for len(revs) < 4 {
		ev := next(t, sub)
		switch {
		case ev.EventAppeared != nil:
			revs = append(revs, ev.EventAppeared.Event.EventNumber)
		case ev.CaughtUp != nil:
			if appended {
				t.Fatal("caught_up sent twice")
			}
			appended = true
			if _, err := c.AppendToStream(ctx, "order-7", esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(2)}, event("E", 3), event("E", 4)); err != nil {
				t.Fatalf("append: %v", err)
			}
		}
	}
	if fmt.Sprint(revs) != "[1 2 3 4]" {
		t.Errorf("delivered revisions %v, want [1 2 3 4] (start is exclusive)", revs)
	}
}

func TestRestartAndResumeFromPosition(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	srv := start(t, dir)
	c := connect(t, srv)
	var stored esdb.Position
	for i := range 3 {
		r, err := c.AppendToStream(ctx, "order-r", esdb.AppendToStreamOptions{}, event("E", i))
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		if i == 1 {
			stored = esdb.Position{Commit: r.CommitPosition, Prepare: r.PreparePosition}
		}
	}
	c.Close()
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	srv2 := start(t, dir)
	c2 := connect(t, srv2)
	sub, err := c2.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{
		From:   stored,
		Filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{"order-"}},
	})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer sub.Close()
	var ev *esdb.SubscriptionEvent
	for ev = next(t, sub); ev.EventAppeared == nil; ev = next(t, sub) {
		if ev.CaughtUp != nil {
			t.Fatal("caught up before the event after the stored position")
		}
	}
	if e := ev.EventAppeared.Event; e.EventNumber != 2 || e.Position.Commit <= stored.Commit {
		t.Errorf("resumed at revision %d position %d, want revision 2 after position %d", e.EventNumber, e.Position.Commit, stored.Commit)
	}
	r, err := c2.AppendToStream(ctx, "order-r", esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(2)}, event("E", 3))
	if err != nil || r.NextExpectedVersion != 3 {
		t.Fatalf("append after restart: %+v, %v; want revision 3", r, err)
	}
}

func TestSecondStartOnSameDirIsLocked(t *testing.T) {
	dir := t.TempDir()
	start(t, dir)
	_, err := embedded.Start(context.Background(), embedded.Config{Dir: dir, Logger: quiet})
	if !errors.Is(err, embedded.ErrLocked) {
		t.Fatalf("second Start: err = %v, want ErrLocked", err)
	}
}

func TestRefusesPublicAddressWithoutTLS(t *testing.T) {
	_, err := embedded.Start(context.Background(), embedded.Config{Dir: t.TempDir(), Addr: "0.0.0.0:0", Logger: quiet})
	if err == nil {
		t.Fatal("Start on 0.0.0.0 without TLS or Insecure succeeded")
	}
}

func TestMissingRequiredMetadataIsRejected(t *testing.T) {
	ctx := testCtx(t)
	srv := start(t, "")
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	call, err := streams.NewStreamsClient(conn).Append(ctx)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	id := uuid.New()
	msgs := []*streams.AppendReq{
		{Content: &streams.AppendReq_Options_{Options: &streams.AppendReq_Options{
			StreamIdentifier:       &shared.StreamIdentifier{StreamName: []byte("s")},
			ExpectedStreamRevision: &streams.AppendReq_Options_Any{Any: &shared.Empty{}},
		}}},
		{Content: &streams.AppendReq_ProposedMessage_{ProposedMessage: &streams.AppendReq_ProposedMessage{
			Id:       &shared.UUID{Value: &shared.UUID_String_{String_: id.String()}},
			Metadata: map[string]string{"type": "E"},
			Data:     []byte("{}"),
		}}},
	}
	for _, m := range msgs {
		if err := call.Send(m); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	_, err = call.CloseAndRecv()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("append without content-type: err = %v, want InvalidArgument", err)
	}
	if got := call.Trailer().Get("exception"); len(got) != 1 || got[0] != "missing-required-metadata-property" {
		t.Errorf("exception trailer = %v, want missing-required-metadata-property", got)
	}
	c := connect(t, srv)
	if _, err := readAllOf(c.ReadStream(ctx, "s", esdb.ReadStreamOptions{}, 10)); errorCode(err) != esdb.ErrorCodeResourceNotFound {
		t.Errorf("rejected append wrote something: read err = %v, want ResourceNotFound", err)
	}
}

func TestDiscoveryThroughGossipAndServerFeatures(t *testing.T) {
	ctx := testCtx(t)
	srv := start(t, "")
	// Two seeds make the client ask Gossip.Read for the leader first.
	cfg, err := esdb.ParseConnectionString("esdb://" + srv.Addr() + "," + srv.Addr() + "?tls=false")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.AppendToStream(ctx, "g", esdb.AppendToStreamOptions{}, event("E", 0)); err != nil {
		t.Fatalf("append through gossip discovery: %v", err)
	}
	v, err := c.GetServerVersion()
	if err != nil || v.Major != 24 || v.Minor != 10 || v.Patch != 0 {
		t.Errorf("server version = %+v, %v; want 24.10.0", v, err)
	}
}
