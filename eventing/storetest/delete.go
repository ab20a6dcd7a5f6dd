package storetest

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// testDelete checks soft delete and tombstone as the server's soft_delete
// tests and the client's delete tests have them (esdb-protocol.md §5.15 and
// its §9 corrections).
func testDelete(t *testing.T, c *esdb.Client) {
	t.Run("SoftDelete", func(t *testing.T) {
		stream := newStream("del")
		evs := newEvents("Step", 2)
		mustAppend(t, c, stream, esdb.NoStream{}, evs...)
		firstPos := mustRead(t, c, stream)[0].OriginalEvent().Position
		res, err := c.DeleteStream(opContext(t), stream, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(1)})
		if err != nil {
			t.Fatal(err)
		}
		if res.Position.Commit == 0 || res.Position.Prepare == 0 {
			t.Fatalf("delete result position %+v, want non-zero (client test canDeleteStream)", res.Position)
		}
		wantReadErr(t, c, stream, esdb.ErrorCodeResourceNotFound)
		// $all keeps the events until a scavenge.
		if got := onStreams(readAll(t, c, esdb.ReadAllOptions{From: firstPos}, 100_000), stream); !equalIDs(ids(got), dataIDs(evs)) {
			t.Fatalf("$all after soft delete holds %v of the stream, want %v", ids(got), dataIDs(evs))
		}
		// The metadata stream holds $tb = long.MaxValue. (GetStreamMetadata
		// would round it through float64, so the raw JSON is checked.)
		if raw := rawMetadata(t, c, stream); raw["$tb"] != json.Number(strconv.FormatInt(math.MaxInt64, 10)) {
			t.Fatalf("metadata after soft delete: %v, want $tb %d", raw, int64(math.MaxInt64))
		}
	})
	t.Run("SoftDeleteDropsOtherMetadata", func(t *testing.T) {
		stream := newStream("del")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvent("Step", 0))
		var m esdb.StreamMetadata
		m.SetMaxCount(50)
		m.AddCustomProperty("owner", "storetest")
		if _, err := c.SetStreamMetadata(opContext(t), stream, esdb.AppendToStreamOptions{}, m); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeleteStream(opContext(t), stream, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(0)}); err != nil {
			t.Fatal(err)
		}
		if raw := rawMetadata(t, c, stream); len(raw) != 1 || raw["$tb"] == nil {
			t.Fatalf("metadata after soft delete: %v, want only $tb", raw)
		}
	})
	t.Run("SoftDeleteThenAppendContinuesRevisions", func(t *testing.T) {
		stream := newStream("del")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Step", 2)...)
		if _, err := c.DeleteStream(opContext(t), stream, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Any{}}); err != nil {
			t.Fatal(err)
		}
		evs := newEvents("Again", 3)
		res := mustAppend(t, c, stream, esdb.Any{}, evs...)
		if res.NextExpectedVersion != 4 {
			t.Fatalf("append after soft delete: NextExpectedVersion %d, want 4", res.NextExpectedVersion)
		}
		got := mustRead(t, c, stream)
		wantRevisions(t, got, 2, 3, 4)
		for i, e := range got {
			checkEvent(t, e, stream, uint64(2+i), evs[i])
		}
		m, err := c.GetStreamMetadata(opContext(t), stream, esdb.ReadStreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tb := m.TruncateBefore(); tb == nil || *tb != 2 {
			j, _ := m.ToJson()
			t.Fatalf("metadata after re-creation: %s, want $tb 2", j)
		}
	})
	t.Run("SetMetadataUndeletes", func(t *testing.T) {
		stream := newStream("del")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Step", 2)...)
		if _, err := c.DeleteStream(opContext(t), stream, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(1)}); err != nil {
			t.Fatal(err)
		}
		var m esdb.StreamMetadata
		m.SetMaxCount(100)
		if _, err := c.SetStreamMetadata(opContext(t), stream, esdb.AppendToStreamOptions{}, m); err != nil {
			t.Fatal(err)
		}
		wantRevisions(t, mustRead(t, c, stream), 0, 1)
	})
	t.Run("SoftDeleteWrongExpectedRevision", func(t *testing.T) {
		stream := newStream("del")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Step", 2)...)
		if _, err := c.DeleteStream(opContext(t), stream, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(5)}); err == nil {
			t.Fatalf("delete with Revision(5) of a stream at revision 1: want an error")
		}
		wantRevisions(t, mustRead(t, c, stream), 0, 1)
	})
	t.Run("Tombstone", func(t *testing.T) {
		stream := newStream("del")
		evs := newEvents("Step", 2)
		mustAppend(t, c, stream, esdb.NoStream{}, evs...)
		firstPos := mustRead(t, c, stream)[0].OriginalEvent().Position
		res, err := c.TombstoneStream(opContext(t), stream, esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Revision(1)})
		if err != nil {
			t.Fatal(err)
		}
		if res.Position.Commit == 0 || res.Position.Prepare == 0 {
			t.Fatalf("tombstone result position %+v, want non-zero (client test canTombstoneStream)", res.Position)
		}
		wantReadErr(t, c, stream, esdb.ErrorCodeStreamDeleted)
		for _, exp := range []esdb.ExpectedRevision{esdb.Any{}, esdb.NoStream{}, esdb.Revision(1)} {
			if _, err := c.AppendToStream(opContext(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, newEvent("Late", 0)); errCode(err) != esdb.ErrorCodeStreamDeleted {
				t.Fatalf("append with %s after tombstone: err %v (code %d), want ErrorCodeStreamDeleted", expString(exp), err, errCode(err))
			}
		}
		if _, err := c.DeleteStream(opContext(t), stream, esdb.DeleteStreamOptions{}); err == nil {
			t.Fatalf("soft delete of a tombstoned stream: want an error")
		}
		if _, err := c.TombstoneStream(opContext(t), stream, esdb.TombstoneStreamOptions{}); err == nil {
			t.Fatalf("second tombstone: want an error")
		}
		// $all keeps the events until a scavenge.
		if got := onStreams(readAll(t, c, esdb.ReadAllOptions{From: firstPos}, 100_000), stream); len(got) < 2 || !equalIDs(ids(got[:2]), dataIDs(evs)) {
			t.Fatalf("$all after tombstone holds %v of the stream, want %v first", ids(got), dataIDs(evs))
		}
	})
	t.Run("TombstoneReadBackwards", func(t *testing.T) {
		stream := newStream("del")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvent("Step", 0))
		if _, err := c.TombstoneStream(opContext(t), stream, esdb.TombstoneStreamOptions{}); err != nil {
			t.Fatal(err)
		}
		got, err := readStream(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 10)
		if len(got) != 0 || errCode(err) != esdb.ErrorCodeStreamDeleted {
			t.Fatalf("read backwards after tombstone: %d events, err %v; want ErrorCodeStreamDeleted", len(got), err)
		}
	})
}

// testMetadata checks stream metadata: GetStreamMetadata returns the latest
// (the metadata stream behaves as $maxCount 1, esdb-protocol.md §5.14), it
// round-trips (client test metadataOperation), and reads honour $maxCount,
// $tb and $maxAge.
func testMetadata(t *testing.T, c *esdb.Client) {
	setMeta := func(t *testing.T, stream string, m esdb.StreamMetadata) {
		t.Helper()
		if _, err := c.SetStreamMetadata(opContext(t), stream, esdb.AppendToStreamOptions{}, m); err != nil {
			t.Fatalf("set metadata of %s: %v", stream, err)
		}
	}
	t.Run("RoundTrip", func(t *testing.T) {
		stream := newStream("meta")
		mustAppend(t, c, stream, esdb.Any{}, newEvent("Step", 0))
		var acl esdb.Acl
		acl.AddReadRoles("admin")
		var m esdb.StreamMetadata
		m.SetMaxAge(2 * time.Hour)
		m.SetMaxCount(7)
		m.SetAcl(acl)
		m.AddCustomProperty("owner", "storetest")
		setMeta(t, stream, m)
		got, err := c.GetStreamMetadata(opContext(t), stream, esdb.ReadStreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		gotJSON, _ := got.ToJson()
		wantJSON, _ := m.ToJson()
		if string(gotJSON) != string(wantJSON) {
			t.Fatalf("metadata: got %s, want %s", gotJSON, wantJSON)
		}
	})
	t.Run("LatestWins", func(t *testing.T) {
		stream := newStream("meta")
		for i := uint64(1); i <= 3; i++ {
			var m esdb.StreamMetadata
			m.SetMaxCount(i * 10)
			setMeta(t, stream, m)
		}
		got, err := c.GetStreamMetadata(opContext(t), stream, esdb.ReadStreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if mc := got.MaxCount(); mc == nil || *mc != 30 {
			j, _ := got.ToJson()
			t.Fatalf("GetStreamMetadata: %s, want $maxCount 30 (the latest)", j)
		}
	})
	t.Run("MaxCount", func(t *testing.T) {
		stream := newStream("meta")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Step", 6)...)
		var m esdb.StreamMetadata
		m.SetMaxCount(2)
		setMeta(t, stream, m)
		wantRevisions(t, mustRead(t, c, stream), 4, 5)
		back, err := readStream(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 10)
		if err != nil {
			t.Fatal(err)
		}
		wantRevisions(t, back, 5, 4)
		// Appends continue at the real revision.
		if res := mustAppend(t, c, stream, esdb.Revision(5), newEvent("Step", 6)); res.NextExpectedVersion != 6 {
			t.Fatalf("append: NextExpectedVersion %d, want 6", res.NextExpectedVersion)
		}
		wantRevisions(t, mustRead(t, c, stream), 5, 6)
	})
	t.Run("TruncateBefore", func(t *testing.T) {
		stream := newStream("meta")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Step", 6)...)
		var m esdb.StreamMetadata
		m.SetTruncateBefore(3)
		setMeta(t, stream, m)
		wantRevisions(t, mustRead(t, c, stream), 3, 4, 5)
	})
	t.Run("MaxAgeLong", func(t *testing.T) {
		stream := newStream("meta")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Step", 3)...)
		var m esdb.StreamMetadata
		m.SetMaxAge(time.Hour)
		setMeta(t, stream, m)
		wantRevisions(t, mustRead(t, c, stream), 0, 1, 2)
	})
	t.Run("MaxAgeExpires", func(t *testing.T) {
		// Client test readStreamWithMaxAge: expired events read as an empty
		// stream (io.EOF), not as a missing one. We poll until a deadline
		// rather than sleep for a guessed time.
		stream := newStream("meta")
		mustAppend(t, c, stream, esdb.NoStream{}, newEvents("Step", 2)...)
		var m esdb.StreamMetadata
		m.SetMaxAge(time.Second)
		setMeta(t, stream, m)
		eventually(t, 10*time.Second, func() string {
			evs, err := readStream(t, c, stream, esdb.ReadStreamOptions{}, 10)
			if err != nil {
				return "read error " + err.Error()
			}
			if len(evs) != 0 {
				return "events still visible"
			}
			return ""
		})
	})
}

// rawMetadata returns the latest $$stream event's JSON with exact numbers.
func rawMetadata(t *testing.T, c *esdb.Client, stream string) map[string]any {
	t.Helper()
	evs, err := readStream(t, c, "$$"+stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil || len(evs) != 1 {
		t.Fatalf("read $$%s: %d events, %v", stream, len(evs), err)
	}
	d := json.NewDecoder(bytes.NewReader(evs[0].OriginalEvent().Data))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("metadata of %s: %v", stream, err)
	}
	return m
}
