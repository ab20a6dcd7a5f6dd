package eventing

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// Connect returns a client for an esdb:// connection string, logging
// through slog.Default() instead of the client's own stdout logger. The
// client connects lazily, on its first call. The error never repeats the
// connection string, which may hold credentials.
func Connect(connString string) (*esdb.Client, error) {
	cfg, err := esdb.ParseConnectionString(connString)
	if err != nil {
		return nil, fmt.Errorf("connect to event store: invalid connection string: %w", err)
	}
	cfg.Logger = clientLogger(slog.Default())
	client, err := esdb.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to event store %s: %w", cfg.Address, err)
	}
	return client, nil
}

// clientLogger routes the esdb client's log lines to log. The client
// reports routine events such as a closed subscription as errors, so
// nothing is logged above Warn.
func clientLogger(log *slog.Logger) esdb.LoggingFunc {
	return func(level esdb.LogLevel, format string, args ...any) {
		lvl := slog.LevelDebug // its info lines are per-connection chatter
		if level == esdb.LogWarn || level == esdb.LogError {
			lvl = slog.LevelWarn
		}
		if !log.Enabled(context.Background(), lvl) {
			return
		}
		log.Log(context.Background(), lvl, "esdb client: "+fmt.Sprintf(format, args...))
	}
}
