package embedded_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/ordertrail/ordertrail/eventing/embedded"
	"github.com/ordertrail/ordertrail/eventing/storetest"
)

// TestConformance runs the event-store conformance suite against the
// embedded store, one server on a fresh directory for the whole suite, as a
// shared real server would be.
func TestConformance(t *testing.T) {
	srv := startServer(t, t.TempDir())
	storetest.Run(t, func(t *testing.T) *esdb.Client { return storetest.NewClient(t, srv.ConnectionString()) })
}

// startServer starts the embedded store on dir and closes it when t ends.
func startServer(t *testing.T, dir string) *embedded.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("start embedded store on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close embedded store: %v", err)
		}
	})
	return srv
}
