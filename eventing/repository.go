package eventing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/ordertrail/ordertrail/domain"
)

// Namespaces of the name-based UUIDs this package derives. They are part of
// the stored data: changing one breaks the idempotency of retried commands.
var (
	orderIDNamespace = uuid.MustParse("5b1f3c1e-8c4a-4f0e-9d55-2f6f2d6b7a10")
	eventIDNamespace = uuid.MustParse("a3d2e7c4-1b6f-4c8e-8f0a-6e9b4d2c5f31")
)

// NewOrderID returns the ID of the order a create command makes: derived
// from the command ID, so a retried create names the same order, or random
// when there is no command ID.
func NewOrderID(commandID string) string {
	if commandID == "" {
		return uuid.NewString()
	}
	return uuid.NewSHA1(orderIDNamespace, []byte(commandID)).String()
}

// eventID returns the ID of the index-th event appended by a command: the
// same for every retry of that command, random without a command ID.
func eventID(orderID, commandID string, index int) uuid.UUID {
	if commandID == "" {
		return uuid.New()
	}
	return uuid.NewSHA1(eventIDNamespace, []byte(orderID+"/"+commandID+"/"+strconv.Itoa(index)))
}

// RepositoryOptions tunes a Repository. The zero value gives the defaults.
type RepositoryOptions struct {
	SnapshotEvery int          // events between snapshots; 0 means 100, negative means never
	MaxRetries    int          // reloads after a concurrency conflict; 0 means 5, negative means none
	Logger        *slog.Logger // nil means slog.Default()
	// SkipReadBack saves the read that completes a command's Result after
	// its append: the events then lack their recorded times and all but
	// the last lack their positions (Result.Complete is false), and
	// Repository.Events reads them when they are wanted.
	SkipReadBack bool
}

// CommandMeta identifies a command and its place in a conversation. A
// non-empty CommandID makes the command retry-safe.
type CommandMeta struct {
	CommandID     string
	CorrelationID string
	CausationID   string
	Actor         string
}

// Result is the outcome of a command: the order after it, the events it
// appended and the commit position of the last of them (or of the order's
// last event when it appended nothing), for read-your-writes waits.
type Result struct {
	Order    *domain.Order
	Events   []Envelope
	Position uint64
	// Complete reports that Events carry their stored positions and
	// recorded times; see RepositoryOptions.SkipReadBack.
	Complete bool
}

// Repository loads and saves orders in the event store, with snapshots and
// optimistic concurrency. It is safe for concurrent use.
type Repository struct {
	conn  *Conn
	codec *Codec
	opts  RepositoryOptions
	log   *slog.Logger
}

// NewRepository returns a repository over client.
func NewRepository(client *esdb.Client, codec *Codec, opts RepositoryOptions) *Repository {
	return NewConnRepository(FixedConn(client), codec, opts)
}

// NewConnRepository returns a repository over conn, which replaces its
// client when the store has been away long enough for the client to give
// up.
func NewConnRepository(conn *Conn, codec *Codec, opts RepositoryOptions) *Repository {
	if opts.SnapshotEvery == 0 {
		opts.SnapshotEvery = 100
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = 5
	} else if opts.MaxRetries < 0 {
		opts.MaxRetries = 0
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Repository{conn: conn, codec: codec, opts: opts, log: opts.Logger}
}

// Create runs fn on a new order and stores the events it raises, failing
// with ErrConflict if the order exists. Retried with the same command ID it
// stores nothing new and returns the original Result.
func (r *Repository) Create(ctx context.Context, orderID string, meta CommandMeta, fn func(*domain.Order) error) (Result, error) {
	return within(ctx, func() (Result, error) { return r.create(ctx, orderID, meta, fn) })
}

func (r *Repository) create(ctx context.Context, orderID string, meta CommandMeta, fn func(*domain.Order) error) (Result, error) {
	o := domain.New(orderID)
	if err := o.BeginCommand(meta.CommandID); err != nil {
		return Result{}, fmt.Errorf("create order %s: %w", orderID, err)
	}
	if err := fn(o); err != nil {
		return Result{}, fmt.Errorf("create order %s: %w", orderID, err)
	}
	if len(o.Changes()) == 0 {
		return Result{}, fmt.Errorf("create order %s: the command raised no events: %w", orderID, domain.ErrNotCreated)
	}
	res, err := r.save(ctx, o, meta, 0, esdb.NoStream{})
	if errors.Is(err, ErrConflict) && meta.CommandID != "" {
		// Another attempt of this command may have created the order.
		l, lerr := r.load(ctx, orderID)
		if lerr == nil && l.order.Handled(meta.CommandID) {
			return r.original(ctx, l, meta.CommandID)
		}
	}
	if err != nil {
		return Result{}, fmt.Errorf("create order %s: %w", orderID, err)
	}
	return res, nil
}

// Update loads an order, runs fn on it and stores the events it raises at
// exactly the loaded revision. A concurrent write makes it reload and run
// fn again, up to MaxRetries times, then fail with ErrConflict. A command
// ID the order has already handled returns that command's original Result
// without running fn. A missing order is ErrNotFound.
func (r *Repository) Update(ctx context.Context, orderID string, meta CommandMeta, fn func(*domain.Order) error) (Result, error) {
	return within(ctx, func() (Result, error) { return r.update(ctx, orderID, meta, fn) })
}

func (r *Repository) update(ctx context.Context, orderID string, meta CommandMeta, fn func(*domain.Order) error) (Result, error) {
	var conflict error
	for attempt := 0; attempt <= r.opts.MaxRetries; attempt++ {
		l, err := r.load(ctx, orderID)
		if err != nil {
			return Result{}, fmt.Errorf("update order %s: %w", orderID, err)
		}
		o := l.order
		if err := o.BeginCommand(meta.CommandID); errors.Is(err, domain.ErrDuplicateCommand) {
			return r.original(ctx, l, meta.CommandID)
		} else if err != nil {
			return Result{}, fmt.Errorf("update order %s: %w", orderID, err)
		}
		loaded := o.Version()
		if err := fn(o); err != nil {
			return Result{}, fmt.Errorf("update order %s: %w", orderID, err)
		}
		if len(o.Changes()) == 0 {
			return Result{Order: clean(o), Position: l.position, Complete: true}, nil
		}
		res, err := r.save(ctx, o, meta, loaded, esdb.Revision(uint64(loaded-1)))
		if errors.Is(err, ErrConflict) {
			conflict = err
			continue
		}
		if err != nil {
			return Result{}, fmt.Errorf("update order %s: %w", orderID, err)
		}
		return res, nil
	}
	return Result{}, fmt.Errorf("update order %s: gave up after %d retries: %w", orderID, r.opts.MaxRetries, conflict)
}

// Load returns the current state of an order, or ErrNotFound.
func (r *Repository) Load(ctx context.Context, orderID string) (*domain.Order, error) {
	return within(ctx, func() (*domain.Order, error) { return r.loadOrder(ctx, orderID) })
}

func (r *Repository) loadOrder(ctx context.Context, orderID string) (*domain.Order, error) {
	l, err := r.load(ctx, orderID)
	if err != nil {
		return nil, fmt.Errorf("load order %s: %w", orderID, err)
	}
	return l.order, nil
}

// save appends o's changes at the expected revision; loaded is the number
// of events o was loaded with, so the first change lands at that revision.
func (r *Repository) save(ctx context.Context, o *domain.Order, meta CommandMeta, loaded int, expected esdb.ExpectedRevision) (Result, error) {
	stream := OrderStream(o.ID())
	changes := o.Changes()
	events := make([]esdb.EventData, len(changes))
	envs := make([]Envelope, len(changes))
	for i, c := range changes {
		md := Metadata{
			CorrelationID: meta.CorrelationID, CausationID: meta.CausationID,
			CommandID: c.CommandID, Actor: meta.Actor,
		}
		ed, err := r.codec.Encode(eventID(o.ID(), meta.CommandID, i), c.Event, md)
		if err != nil {
			return Result{}, err
		}
		events[i] = ed
		md.SchemaVersion = r.codec.SchemaVersion(ed.EventType)
		envs[i] = Envelope{
			EventID: ed.EventID.String(), Stream: stream, Revision: uint64(loaded + i),
			Type: ed.EventType, Metadata: md, RawMeta: ed.Metadata, Data: ed.Data, Event: c.Event,
		}
	}
	client := r.conn.Client()
	wr, err := client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: expected}, events...)
	r.conn.Observe(client, err)
	if err != nil {
		return Result{}, storeError("append", stream, err)
	}
	envs[len(envs)-1].Position = wr.CommitPosition
	// The append reply carries only the last position; read the events back
	// for the others and the recorded times, so that this Result equals the
	// one a retry of the command gets.
	complete := false
	if !r.opts.SkipReadBack {
		if stored, err := r.readRange(ctx, stream, uint64(loaded), uint64(len(envs))); err != nil {
			r.log.WarnContext(ctx, "read back appended events", "stream", stream, "err", err)
		} else if sameEvents(stored, envs) {
			envs, complete = stored, true
		}
	}
	position := envs[len(envs)-1].Position
	o = clean(o)
	r.maybeSnapshot(ctx, o, loaded, position)
	return Result{Order: o, Events: envs, Position: position, Complete: complete}, nil
}

func sameEvents(a, b []Envelope) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].EventID != b[i].EventID || a[i].Revision != b[i].Revision {
			return false
		}
	}
	return true
}

// clean returns o without its uncommitted changes.
func clean(o *domain.Order) *domain.Order {
	c, err := domain.FromSnapshot(o.Snapshot(), nil)
	if err != nil { // cannot happen: no tail to replay
		return o
	}
	return c
}

// original rebuilds the Result of an already handled command from the
// events that carry its ID, which one append stored next to each other.
func (r *Repository) original(ctx context.Context, l loadedOrder, commandID string) (Result, error) {
	stream := OrderStream(l.order.ID())
	// No count limit: the scan stops at the command's first event.
	client := r.conn.Client()
	rs, err := client.ReadStream(ctx, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, ^uint64(0))
	r.conn.Observe(client, err)
	if err != nil {
		return Result{}, storeError("read", stream, err)
	}
	defer rs.Close()
	var found []Envelope
	for {
		re, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Result{}, storeError("read", stream, err)
		}
		env, err := r.codec.DecodeResolved(re)
		if err != nil {
			return Result{}, fmt.Errorf("find command %s in order %s: %w", commandID, l.order.ID(), err)
		}
		if env.Metadata.CommandID == commandID {
			found = append(found, env)
		} else if len(found) > 0 {
			break
		}
	}
	if len(found) == 0 {
		return Result{}, fmt.Errorf("find command %s in order %s: handled but no event carries it", commandID, l.order.ID())
	}
	slices.Reverse(found)
	lastEvent := found[len(found)-1]
	// The order as the command left it, as the first answer had it.
	o := l.order
	if lastEvent.Revision != uint64(o.Version()-1) {
		var err error
		if o, err = r.StateAt(ctx, o.ID(), &lastEvent.Revision, nil); err != nil {
			return Result{}, fmt.Errorf("find command %s: %w", commandID, err)
		}
	}
	return Result{Order: o, Events: found, Position: lastEvent.Position, Complete: true}, nil
}

// loadedOrder is an order as read from the store with the commit position
// of its last event.
type loadedOrder struct {
	order    *domain.Order
	position uint64
}

// load reads the latest usable snapshot and the events after it. The read
// starts at the snapshot's own last event, to check that the snapshot
// belongs to this stream as it is; if not, it replays the whole stream.
func (r *Repository) load(ctx context.Context, orderID string) (loadedOrder, error) {
	stream := OrderStream(orderID)
	snap, snapPos, ok := r.readSnapshot(ctx, orderID)
	var tail []Envelope
	if ok {
		at := uint64(snap.Version - 1)
		events, err := r.readFrom(ctx, stream, at)
		if err != nil {
			return loadedOrder{}, err
		}
		if len(events) > 0 && events[0].Revision == at && events[0].Position == snapPos {
			tail = events[1:]
		} else {
			r.log.WarnContext(ctx, "order snapshot does not match its stream; replaying", "stream", stream, "version", snap.Version)
			ok = false
		}
	}
	from := uint64(0)
	if ok {
		from = uint64(snap.Version)
	} else {
		events, err := r.readFrom(ctx, stream, 0)
		if err != nil {
			return loadedOrder{}, err
		}
		tail = events
	}
	recs := make([]domain.Recorded, len(tail))
	for i, env := range tail {
		if env.DecodeErr != nil {
			return loadedOrder{}, env.DecodeErr
		}
		if env.Revision != from+uint64(i) {
			return loadedOrder{}, fmt.Errorf("read %s: revision %d where %d was expected", stream, env.Revision, from+uint64(i))
		}
		recs[i] = domain.Recorded{Event: env.Event, CommandID: env.Metadata.CommandID}
	}
	var o *domain.Order
	var err error
	if ok {
		o, err = domain.FromSnapshot(snap, recs)
	} else {
		o, err = domain.Rehydrate(orderID, recs)
	}
	if err != nil {
		return loadedOrder{}, err
	}
	if !o.Exists() {
		return loadedOrder{}, fmt.Errorf("read %s: %w", stream, ErrNotFound)
	}
	pos := snapPos
	if len(tail) > 0 {
		pos = tail[len(tail)-1].Position
	}
	return loadedOrder{order: o, position: pos}, nil
}

// readPage is how many events one read asks for.
const readPage = 4096

// readFrom reads a stream forwards from a revision to its end. Undecodable
// events come back with DecodeErr set. A missing stream is ErrNotFound.
func (r *Repository) readFrom(ctx context.Context, stream string, from uint64) ([]Envelope, error) {
	var all []Envelope
	for {
		page, err := r.readRange(ctx, stream, from, readPage)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < readPage {
			return all, nil
		}
		from = page[len(page)-1].Revision + 1
	}
}

// Events reads up to count events of an order from a revision on.
func (r *Repository) Events(ctx context.Context, orderID string, from, count uint64) ([]Envelope, error) {
	return within(ctx, func() ([]Envelope, error) { return r.readRange(ctx, OrderStream(orderID), from, count) })
}

// readRange reads up to count events of a stream from a revision on.
func (r *Repository) readRange(ctx context.Context, stream string, from, count uint64) ([]Envelope, error) {
	client := r.conn.Client()
	rs, err := client.ReadStream(ctx, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(from)}, count)
	r.conn.Observe(client, err)
	if err != nil {
		return nil, storeError("read", stream, err)
	}
	defer rs.Close()
	var out []Envelope
	for {
		re, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			r.conn.Observe(client, err)
			return nil, storeError("read", stream, err)
		}
		env, _ := r.codec.DecodeResolved(re) // DecodeErr is kept in env
		out = append(out, env)
	}
}

// Snapshots live in their own stream, outside the "order-" prefix that
// projections subscribe to.
const (
	snapshotStreamPrefix  = "orderSnapshot-"
	snapshotEventType     = "OrderSnapshot"
	snapshotSchemaVersion = 2 // the shape of domain.Snapshot; 2 added fixedRevisions
	snapshotsKept         = 3
)

func snapshotStream(orderID string) string { return snapshotStreamPrefix + orderID }

// snapshotMeta is the custom metadata of a snapshot event.
type snapshotMeta struct {
	SnapshotSchemaVersion int    `json:"snapshotSchemaVersion"`
	Revision              uint64 `json:"revision"` // of the last event included
	Position              uint64 `json:"position"` // commit position of that event
}

// maybeSnapshot stores a snapshot of o when the save that brought it from
// loaded events to its version crossed a multiple of SnapshotEvery. A
// failure is logged, never returned: the events are already stored.
func (r *Repository) maybeSnapshot(ctx context.Context, o *domain.Order, loaded int, position uint64) {
	every := r.opts.SnapshotEvery
	if every < 0 || o.Version()/every == loaded/every {
		return
	}
	if err := r.writeSnapshot(ctx, o, position); err != nil {
		r.log.WarnContext(ctx, "write order snapshot", "order", o.ID(), "version", o.Version(), "err", err)
	}
}

func (r *Repository) writeSnapshot(ctx context.Context, o *domain.Order, position uint64) error {
	stream := snapshotStream(o.ID())
	data, err := json.Marshal(o.Snapshot())
	if err != nil {
		return err
	}
	meta, err := json.Marshal(snapshotMeta{SnapshotSchemaVersion: snapshotSchemaVersion, Revision: uint64(o.Version() - 1), Position: position})
	if err != nil {
		return err
	}
	client := r.conn.Client()
	wr, err := client.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, esdb.EventData{
		EventID: uuid.New(), EventType: snapshotEventType, ContentType: esdb.ContentTypeJson, Data: data, Metadata: meta,
	})
	r.conn.Observe(client, err)
	if err != nil {
		return storeError("append", stream, err)
	}
	if wr.NextExpectedVersion == 0 { // the stream's first snapshot: bound it
		var sm esdb.StreamMetadata
		sm.SetMaxCount(snapshotsKept)
		client = r.conn.Client()
		_, err := client.SetStreamMetadata(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, sm)
		r.conn.Observe(client, err)
		if err != nil {
			return storeError("set metadata of", stream, err)
		}
	}
	return nil
}

// readSnapshot returns the latest snapshot of an order if there is one in
// the current snapshot schema; anything else means a full replay.
func (r *Repository) readSnapshot(ctx context.Context, orderID string) (domain.Snapshot, uint64, bool) {
	stream := snapshotStream(orderID)
	client := r.conn.Client()
	rs, err := client.ReadStream(ctx, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	r.conn.Observe(client, err)
	if err != nil {
		return domain.Snapshot{}, 0, false
	}
	defer rs.Close()
	re, err := rs.Recv()
	if err != nil {
		if !errors.Is(err, io.EOF) && !isStoreCode(err, esdb.ErrorCodeResourceNotFound) {
			r.log.WarnContext(ctx, "read order snapshot", "stream", stream, "err", err)
		}
		return domain.Snapshot{}, 0, false
	}
	ev := re.OriginalEvent()
	var meta snapshotMeta
	var s domain.Snapshot
	switch {
	case ev.EventType != snapshotEventType,
		unmarshalObject(ev.UserMetadata, &meta) != nil,
		meta.SnapshotSchemaVersion != snapshotSchemaVersion,
		unmarshalObject(ev.Data, &s) != nil,
		s.OrderID != orderID, s.Version < 1, uint64(s.Version) != meta.Revision+1:
		r.log.DebugContext(ctx, "ignoring order snapshot", "stream", stream, "revision", ev.EventNumber)
		return domain.Snapshot{}, 0, false
	}
	return s, meta.Position, true
}
