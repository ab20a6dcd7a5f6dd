package readstore_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ordertrail/ordertrail/readstore"
)

// TestBulkLoad checks that a store loaded in bulk-load mode (OpenFresh),
// ended by EndBulkLoad or by being opened again after a crash, ends up the
// same as one fed incrementally: same hash, same indexes, WAL journal; and
// that it serves queries while loading.
func TestBulkLoad(t *testing.T) {
	ctx := context.Background()
	events := history(5, 200)
	half := len(events) / 2
	normal := openStore(t, readstore.Options{})
	applyBatches(t, normal, events, 50)
	wantHash, err := normal.Hash(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantIndexes, err := readstore.Indexes(normal)
	if err != nil || len(wantIndexes) == 0 {
		t.Fatalf("indexes of an incrementally fed store: %v, %v", wantIndexes, err)
	}
	check := func(t *testing.T, s *readstore.Store) {
		t.Helper()
		if h, err := s.Hash(ctx); err != nil || h != wantHash {
			t.Errorf("hash = %s, %v; want %s", h, err, wantHash)
		}
		if ix, err := readstore.Indexes(s); err != nil || !slices.Equal(ix, wantIndexes) {
			t.Errorf("indexes = %v, %v; want %v", ix, err, wantIndexes)
		}
		w, r, err := readstore.Pragma(s, "journal_mode")
		if err != nil || w != "wal" || r != "wal" {
			t.Errorf("journal_mode = %q (writer), %q (reader), %v; want wal", w, r, err)
		}
	}
	fresh := func(t *testing.T) (*readstore.Store, string) {
		path := filepath.Join(t.TempDir(), "fresh.db")
		s, err := readstore.OpenFresh(ctx, path, readstore.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if ix, err := readstore.Indexes(s); err != nil || len(ix) != 0 {
			t.Fatalf("indexes in bulk-load mode = %v, %v; want none", ix, err)
		}
		return s, path
	}

	t.Run("EndBulkLoad", func(t *testing.T) {
		s, _ := fresh(t)
		defer s.Close()
		applyBatches(t, s, events[:half], 500)
		id := strings.TrimPrefix(events[half-1].Stream, "order-")
		got, err := s.Order(ctx, id)
		if err != nil || got.Revision != events[half-1].Revision {
			t.Errorf("Order(%s) in bulk-load mode = revision %d, %v; want %d", id, got.Revision, err, events[half-1].Revision)
		}
		if err := s.EndBulkLoad(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.EndBulkLoad(ctx); err != nil {
			t.Fatalf("second EndBulkLoad: %v", err)
		}
		applyBatches(t, s, events[half:], 50) // on, as a normal store
		check(t, s)
	})

	t.Run("left in bulk-load mode", func(t *testing.T) {
		s, path := fresh(t)
		applyBatches(t, s, events[:half], 500)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err := readstore.Open(ctx, path, readstore.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		applyBatches(t, s, events[half:], 50)
		check(t, s)
	})
}
