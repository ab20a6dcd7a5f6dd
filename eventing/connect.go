package eventing

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

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

// Conn is a connection to the event store that survives the store going
// away. The official client closes itself for good once its discovery
// attempts all fail (about a second without an answer, by default), after
// which every call fails with ErrorCodeConnectionClosed; Conn then replaces
// it with a new client, so callers recover as soon as the store is back.
// It is safe for concurrent use.
type Conn struct {
	connString string // "" for a fixed client that is never replaced

	mu     sync.Mutex
	client *esdb.Client
	closed bool
}

// Dial returns a Conn for an esdb:// connection string. Like Connect, it
// dials nothing until the first call.
func Dial(connString string) (*Conn, error) {
	client, err := Connect(connString)
	if err != nil {
		return nil, err
	}
	return &Conn{connString: connString, client: client}, nil
}

// FixedConn wraps a client that is never replaced.
func FixedConn(client *esdb.Client) *Conn { return &Conn{client: client} }

// Client returns the current client.
func (c *Conn) Client() *esdb.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.client
}

// Observe is told the outcome of a call made with client; when the call
// failed because that client has closed itself, the client is replaced.
func (c *Conn) Observe(client *esdb.Client, err error) {
	if err == nil || c.connString == "" || !isStoreCode(err, esdb.ErrorCodeConnectionClosed) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.client != client {
		return // closed by us, or already replaced
	}
	fresh, derr := Connect(c.connString)
	if derr != nil {
		return // the string parsed before, so this does not happen
	}
	// The old client is not closed: its connection loop has already ended,
	// and the official client panics if Close races with a call still in
	// flight on another goroutine.
	c.client = fresh
}

// Redial returns a new client of its own for the caller to close, as
// SubscriptionOptions.Redial wants.
func (c *Conn) Redial(context.Context) (*esdb.Client, error) {
	if c.connString == "" {
		return nil, fmt.Errorf("redial: %w: fixed client", ErrUnavailable)
	}
	return Connect(c.connString)
}

// Close closes the current client.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.client.Close()
}

// within runs a call that uses the official client so that the caller can
// give up when ctx ends. The client (v4.2.0) can block for ever in a channel
// send, out of reach of any context, when a call fails just as its
// connection loop gives up; such a call is abandoned, not waited for.
func within[T any](ctx context.Context, call func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := call()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}
