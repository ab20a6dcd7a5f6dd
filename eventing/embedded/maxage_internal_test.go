package embedded

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

// TestMaxAgeHidesOldEvents moves the store's clock instead of sleeping.
func TestMaxAgeHidesOldEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := Start(ctx, Config{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg, err := esdb.ParseConnectionString(srv.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ev := func() esdb.EventData {
		return esdb.EventData{EventID: uuid.New(), EventType: "E", ContentType: esdb.ContentTypeJson, Data: []byte("{}")}
	}
	if _, err := c.AppendToStream(ctx, "aged", esdb.AppendToStreamOptions{}, ev(), ev()); err != nil {
		t.Fatal(err)
	}
	var m esdb.StreamMetadata
	m.SetMaxAge(time.Minute)
	if _, err := c.SetStreamMetadata(ctx, "aged", esdb.AppendToStreamOptions{}, m); err != nil {
		t.Fatal(err)
	}
	srv.st.skew.Store(int64(2 * time.Minute / 100)) // two minutes later
	if _, err := c.AppendToStream(ctx, "aged", esdb.AppendToStreamOptions{}, ev()); err != nil {
		t.Fatal(err)
	}
	rs, err := c.ReadStream(ctx, "aged", esdb.ReadStreamOptions{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var revs []uint64
	for {
		e, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, e.Event.EventNumber)
	}
	if len(revs) != 1 || revs[0] != 2 {
		t.Fatalf("read with $maxAge 1m two minutes later: revisions %v, want [2]", revs)
	}
}
