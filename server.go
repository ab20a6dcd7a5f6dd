// Command ordertrail serves a GraphQL API over event-sourced orders.
//
//	ordertrail [serve] [flags]       run the API (embedded event store by default)
//	ordertrail eventstore [flags]    run the embedded event store on its own
//	ordertrail rebuild [flags]       rebuild the read model from the full history
//	ordertrail backup [flags]        copy the embedded event store, online
//
// Every flag can also be set through the environment variable named in its
// help text; flags win.
package main

//go:generate go run github.com/99designs/gqlgen generate

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver used by backup
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/cors"

	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/eventing/embedded"
	"github.com/ordertrail/ordertrail/graph"
	"github.com/ordertrail/ordertrail/graph/ide"
	"github.com/ordertrail/ordertrail/readstore"
)

// defaultGCPercent is the garbage collector's target when GOGC is not set.
// The live heap is small (tens of MB), so Go's default of 100 collects
// many times a second under load; 200 spends a few MB more on the heap and
// collects about half as often.
const defaultGCPercent = 200

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "ordertrail:", err)
		os.Exit(1)
	}
}

// run dispatches to a subcommand; it returns when ctx is done or the
// subcommand fails.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, getenv, stderr)
	case "eventstore":
		return eventStore(ctx, args, getenv, stderr)
	case "rebuild":
		return rebuild(ctx, args, getenv, stderr)
	case "backup":
		return backup(ctx, args, getenv, stderr)
	}
	return fmt.Errorf("unknown command %q (want serve, eventstore, rebuild or backup)", cmd)
}

// flagSet builds a flag set whose defaults come from the environment.
type flagSet struct {
	*flag.FlagSet
	getenv func(string) string
	err    error
}

func newFlagSet(name string, getenv func(string) string, stderr io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &flagSet{FlagSet: fs, getenv: getenv}
}

func (f *flagSet) string(name, env, def, usage string) *string {
	if v := f.getenv(env); v != "" {
		def = v
	}
	return f.String(name, def, usage+" ($"+env+")")
}

func (f *flagSet) bool(name, env string, def bool, usage string) *bool {
	if v := f.getenv(env); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.err = errors.Join(f.err, fmt.Errorf("$%s: %w", env, err))
		}
		def = b
	}
	return f.Bool(name, def, usage+" ($"+env+")")
}

func (f *flagSet) int(name, env string, def int, usage string) *int {
	if v := f.getenv(env); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.err = errors.Join(f.err, fmt.Errorf("$%s: %w", env, err))
		}
		def = n
	}
	return f.Int(name, def, usage+" ($"+env+")")
}

func (f *flagSet) duration(name, env string, def time.Duration, usage string) *time.Duration {
	if v := f.getenv(env); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.err = errors.Join(f.err, fmt.Errorf("$%s: %w", env, err))
		}
		def = d
	}
	return f.Duration(name, def, usage+" ($"+env+")")
}

func (f *flagSet) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(f.Args(), " "))
	}
	return f.err
}

// secret returns the value of a flag or, when it names a file with the
// "@" prefix or comes from a *_FILE variable, that file's trimmed content,
// so credentials need not appear on the command line.
func secret(value, fileEnv string, getenv func(string) string) (string, error) {
	path := ""
	if strings.HasPrefix(value, "@") {
		path = value[1:]
	} else if value == "" && getenv(fileEnv) != "" {
		path = getenv(fileEnv)
	}
	if path == "" {
		return value, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func newLogger(stderr io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// storeConfig is how the API reaches its event store.
type storeConfig struct {
	eventStore    *string
	data          *string
	maxAppendSize *int
}

func addStoreFlags(fs *flagSet) storeConfig {
	return storeConfig{
		eventStore: fs.string("eventstore", "ORDERTRAIL_EVENTSTORE", "",
			"EventStoreDB connection string (esdb://…, esdb+discover://…); \"@FILE\" reads it from a file; empty runs the embedded store in-process"),
		data:          fs.string("data", "ORDERTRAIL_DATA", "./data", "data directory (embedded event store and read model)"),
		maxAppendSize: fs.int("max-append-size", "ORDERTRAIL_MAX_APPEND_SIZE", 1<<20, "embedded store: largest append in bytes"),
	}
}

// openEventStore returns a client for the configured store, starting the
// embedded one when no connection string is given, and a func that closes
// what it opened.
func (c storeConfig) open(ctx context.Context, getenv func(string) string, logger *slog.Logger) (*eventing.Conn, string, func(), error) {
	conn, err := secret(*c.eventStore, "ORDERTRAIL_EVENTSTORE_FILE", getenv)
	if err != nil {
		return nil, "", nil, err
	}
	closeEmbedded := func() {}
	mode := "external"
	if conn == "" {
		srv, err := embedded.Start(ctx, embedded.Config{
			Dir:           filepath.Join(*c.data, "eventstore"),
			Addr:          "127.0.0.1:0",
			MaxAppendSize: *c.maxAppendSize,
			Logger:        logger.With("component", "eventstore"),
		})
		if err != nil {
			return nil, "", nil, fmt.Errorf("start embedded event store: %w", err)
		}
		conn, mode = srv.ConnectionString(), "embedded"
		closeEmbedded = func() {
			if err := srv.Close(); err != nil {
				logger.Error("close embedded event store", "err", err)
			}
		}
		logger.Info("embedded event store started", "addr", srv.Addr(), "dir", filepath.Join(*c.data, "eventstore"))
	}
	client, err := eventing.Dial(conn)
	if err != nil {
		closeEmbedded()
		return nil, "", nil, err
	}
	return client, mode, func() {
		if err := client.Close(); err != nil {
			logger.Debug("close event store client", "err", err)
		}
		closeEmbedded()
	}, nil
}

func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := newFlagSet("serve", getenv, stderr)
	addr := fs.string("addr", "ORDERTRAIL_ADDR", "127.0.0.1:8080", "HTTP listen address")
	store := addStoreFlags(fs)
	tokens := fs.string("tokens", "ORDERTRAIL_TOKENS", "", "comma-separated bearer tokens required for mutations and subscriptions; \"@FILE\" reads them from a file; empty: open")
	origins := fs.string("allowed-origins", "ORDERTRAIL_ALLOWED_ORIGINS", "", "comma-separated origins allowed for CORS and websockets (e.g. https://app.example.com); empty: same-origin only")
	production := fs.bool("production", "ORDERTRAIL_PRODUCTION", false, "production mode: introspection and field suggestions off unless enabled explicitly")
	introspection := fs.string("introspection", "ORDERTRAIL_INTROSPECTION", "", "true/false; default: on, off in production mode")
	maxBody := fs.int("max-body-bytes", "ORDERTRAIL_MAX_BODY_BYTES", 1<<20, "largest request body")
	maxDepth := fs.int("max-depth", "ORDERTRAIL_MAX_DEPTH", 12, "deepest selection nesting")
	maxComplexity := fs.int("max-complexity", "ORDERTRAIL_MAX_COMPLEXITY", 2000, "highest operation cost (lists weighted by page size)")
	maxTokens := fs.int("max-tokens", "ORDERTRAIL_MAX_TOKENS", 10000, "most parser tokens per document")
	maxAliases := fs.int("max-aliases", "ORDERTRAIL_MAX_ALIASES", 100, "most aliases per operation")
	maxPage := fs.int("max-page-size", "ORDERTRAIL_MAX_PAGE_SIZE", 100, "largest `first` on connections")
	requestTimeout := fs.duration("request-timeout", "ORDERTRAIL_REQUEST_TIMEOUT", 15*time.Second, "longest time an HTTP GraphQL request may take (websockets are not bounded)")
	waitTimeout := fs.duration("read-wait", "ORDERTRAIL_READ_WAIT", 3*time.Second, "how long a query with minPosition waits for the read model")
	poison := fs.string("poison-policy", "ORDERTRAIL_POISON_POLICY", "halt", "what the read-model projection does with an event it cannot apply: halt (stop there, the default) or park (record it as a dead letter and go on)")
	snapshotEvery := fs.int("snapshot-every", "ORDERTRAIL_SNAPSHOT_EVERY", 100, "write an order snapshot every N events (negative: never)")
	legacyCurrency := fs.string("legacy-currency", "ORDERTRAIL_LEGACY_CURRENCY", "USD", "currency of orders stored in the original schema, which had none")
	logFormat := fs.string("log-format", "ORDERTRAIL_LOG_FORMAT", "text", "log format: text or json")
	logLevel := fs.string("log-level", "ORDERTRAIL_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	debugAddr := fs.string("debug-addr", "ORDERTRAIL_DEBUG_ADDR", "", "listen address for Go's profiling endpoints (/debug/pprof/); keep it on loopback; empty: off")
	if err := fs.parse(args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	slog.SetDefault(logger)
	if *debugAddr != "" {
		stop, err := serveDebug(*debugAddr, logger)
		if err != nil {
			return err
		}
		defer stop()
	}
	tokenList, err := secret(*tokens, "ORDERTRAIL_TOKENS_FILE", getenv)
	if err != nil {
		return err
	}
	introspect := !*production
	if *introspection != "" {
		if introspect, err = strconv.ParseBool(*introspection); err != nil {
			return fmt.Errorf("introspection: %w", err)
		}
	}
	if *store.data, err = filepath.Abs(*store.data); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.MkdirAll(*store.data, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}

	client, mode, closeStore, err := store.open(ctx, getenv, logger)
	if err != nil {
		return err
	}
	defer closeStore()
	codec := eventing.NewCodec(eventing.DefaultUpcasters(*legacyCurrency))
	// Results are completed only when a client asks for the events: most
	// ask for the position and the order.
	repo := eventing.NewConnRepository(client, codec, eventing.RepositoryOptions{SnapshotEvery: *snapshotEvery, SkipReadBack: true})

	readOpts := readstore.Options{WaitTimeout: *waitTimeout, Logger: logger.With("component", "readstore")}
	switch *poison {
	case "halt":
	case "park":
		readOpts.Poison = map[string]readstore.PoisonPolicy{readstore.Projection: readstore.Park}
	default:
		return fmt.Errorf("poison-policy %q: want halt or park", *poison)
	}
	readPath, err := currentReadModel(*store.data)
	if err != nil {
		return err
	}
	removeStaleReadModels(*store.data, readPath, logger)
	readModel, err := readstore.Open(ctx, readPath, readOpts)
	if err != nil {
		return fmt.Errorf("open read model: %w", err)
	}
	if st, err := readModel.Status(ctx); err == nil && st.State != "RUNNING" {
		// A halt is retried at every start: the release that fixes the
		// cause needs no manual step, and an unfixed cause halts again.
		logger.Warn("read-model projection was halted; retrying", "position", st.HaltedAt, "err", st.Error)
		if err := readModel.Resume(ctx); err != nil {
			return fmt.Errorf("resume read model: %w", err)
		}
	}
	reads := readstore.NewLive(readModel)
	defer func() { _ = reads.Current().Close() }()

	metrics := newMetrics()
	feed := &feedStatus{conn: client}
	// A rebuild holds gate while it swaps read models.
	gate := new(sync.Mutex)
	proj := &readstore.Projector{Live: reads, Gate: gate, OnApplied: func(events []eventing.Envelope) {
		if len(events) > 0 {
			metrics.projectionLag.Set(time.Since(events[len(events)-1].RecordedAt).Seconds())
			metrics.projectionBatch.Observe(float64(len(events)))
		}
	}}
	rebuilder := &rebuilder{
		path: readPath, dataDir: *store.data, client: client, codec: codec, live: reads,
		gate: gate, opts: readOpts, logger: logger.With("component", "rebuild"),
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := eventing.RunSubscription(runCtx, client.Client(), codec, proj, eventing.SubscriptionOptions{
			OnStatus: feed.set,
			Redial:   client.Redial,
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("read-model subscription stopped", "err", err)
		}
	}()
	defer func() { cancelRun(); wg.Wait() }()

	tokenSet := splitList(tokenList)
	gql := graph.NewServer(graph.Deps{
		Commands:    repo,
		Events:      repo,
		Reads:       reads,
		Live:        reads,
		Feed:        feed,
		Rebuild:     rebuilder,
		Logger:      logger,
		MaxPageSize: *maxPage,
	}, graph.Options{
		AllowedOrigins: hostPatterns(splitList(*origins)),
		Tokens:         tokenSet,
		Introspection:  introspect,
		Suggestions:    !*production,
		MaxDepth:       *maxDepth,
		MaxComplexity:  *maxComplexity,
		MaxTokens:      *maxTokens,
		MaxAliases:     *maxAliases,
		Metrics:        graph.NewMetrics(metrics.registry),
	})

	mux := http.NewServeMux()
	api := graph.HTTPAuth(tokenSet, limitBody(int64(*maxBody), withTimeout(*requestTimeout, graph.WithLoaders(reads, gql))))
	if allowed := splitList(*origins); len(allowed) > 0 {
		api = cors.New(cors.Options{
			AllowedOrigins:   allowed,
			AllowedMethods:   []string{http.MethodGet, http.MethodPost},
			AllowedHeaders:   []string{"Content-Type", "Authorization", "X-Request-ID"},
			AllowCredentials: true,
		}).Handler(api)
	}
	mux.Handle("/graphql", api)
	mux.Handle("/ide/", ide.Assets())
	mux.Handle("/{$}", ide.Handler("ordertrail", "/graphql"))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /readyz", readiness(client, reads, feed))
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics.registry, promhttp.HandlerOpts{}))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Shutdown waits for plain requests but does not track websockets, so
	// their operations get a context that shutting down cancels.
	sockets, closeSockets := context.WithCancel(context.Background())
	defer closeSockets()
	httpSrv := &http.Server{
		Handler:           withRequestID(logger, endWithServer(sockets, mux)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	httpSrv.RegisterOnShutdown(closeSockets)
	if len(tokenSet) == 0 {
		logger.Warn("no tokens configured: mutations and subscriptions are open to anyone who can reach the API (set --tokens)")
	}
	logger.Info("ordertrail listening", "addr", ln.Addr().String(), "graphql", "http://"+ln.Addr().String()+"/graphql", "eventstore", mode, "introspection", introspect)

	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("http shutdown", "err", err)
	}
	return nil
}

// serveDebug serves the profiling endpoints of net/http/pprof on addr
// until the returned func is called.
func serveDebug(addr string, logger *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	logger.Info("profiling endpoints listening", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	return func() { _ = srv.Close() }, nil
}

// hostPatterns turns origins such as "https://app.example.com" into the
// host patterns the websocket origin check expects.
func hostPatterns(origins []string) []string {
	out := make([]string, 0, len(origins))
	for _, o := range origins {
		if _, rest, ok := strings.Cut(o, "://"); ok {
			o = rest
		}
		out = append(out, strings.TrimSuffix(o, "/"))
	}
	return out
}

// endWithServer ends websocket requests when server is done; plain
// requests are left to finish.
func endWithServer(server context.Context, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(server, cancel)
		defer stop()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// withTimeout bounds plain HTTP requests, so a store that does not answer
// turns into an UNAVAILABLE error rather than a hanging client; websocket
// upgrades live as long as their connection.
func withTimeout(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d <= 0 || strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// limitBody answers 413 for bodies over max before any parsing.
func limitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			http.Error(w, fmt.Sprintf(`{"errors":[{"message":"request body is larger than %d bytes","extensions":{"code":"REQUEST_TOO_LARGE"}}]}`, max), http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
		next.ServeHTTP(w, r)
	})
}

// withRequestID gives every request an ID (the client's X-Request-ID when
// it is sane), echoes it in the response and puts it in the context for
// logs and error responses.
func withRequestID(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if len(id) == 0 || len(id) > 64 || strings.ContainsFunc(id, func(c rune) bool { return c < '!' || c > '~' }) {
			id = uuid.NewString()
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r.WithContext(graph.WithRequestID(r.Context(), id)))
		logger.Debug("request", "requestId", id, "method", r.Method, "path", r.URL.Path)
	})
}

// feedStatus holds the latest status of the read model's subscription.
type feedStatus struct {
	conn *eventing.Conn
	mu   sync.Mutex
	st   eventing.SubscriptionStatus
}

// Head returns the position of the last event in the store.
func (f *feedStatus) Head(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return headPosition(ctx, f.conn)
}

func (f *feedStatus) set(st eventing.SubscriptionStatus) {
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
}

// Status returns the latest subscription status.
func (f *feedStatus) Status() eventing.SubscriptionStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

// readiness answers 200 when the event store answers and the read model's
// subscription is connected and caught up.
func readiness(client *eventing.Conn, reads *readstore.Live, feed *feedStatus) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var problems []string
		if err := pingStore(ctx, client); err != nil {
			problems = append(problems, "event store unreachable: "+err.Error())
		}
		st := feed.Status()
		if !st.Connected || !st.CaughtUp {
			problems = append(problems, "read model not caught up")
		}
		if ps, err := reads.Status(ctx); err != nil {
			problems = append(problems, "read model: "+err.Error())
		} else if ps.State != "RUNNING" {
			problems = append(problems, fmt.Sprintf("read-model projection halted at position %d: %s", ps.HaltedAt, ps.Error))
		}
		if len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, strings.Join(problems, "\n")+"\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
}

// pingStore reads the last event of $all, which every store answers.
func pingStore(ctx context.Context, conn *eventing.Conn) error {
	_, err := headPosition(ctx, conn)
	return err
}

// headPosition returns the commit position of the last event in $all, or
// 0 when the store is empty.
func headPosition(ctx context.Context, conn *eventing.Conn) (uint64, error) {
	type result struct {
		pos uint64
		err error
	}
	done := make(chan result, 1)
	go func() { // the official client can block past ctx; see eventing.within
		pos, err := readHead(ctx, conn)
		done <- result{pos, err}
	}()
	select {
	case r := <-done:
		return r.pos, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func readHead(ctx context.Context, conn *eventing.Conn) (uint64, error) {
	client := conn.Client()
	rs, err := client.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		conn.Observe(client, err)
		return 0, err
	}
	defer rs.Close()
	ev, err := rs.Recv()
	if errors.Is(err, io.EOF) {
		return 0, nil
	}
	if err != nil {
		conn.Observe(client, err)
		return 0, err
	}
	if ev.Event == nil {
		return 0, nil
	}
	return ev.Event.Position.Commit, nil
}

// readModelPointer names the file, in the data directory, that holds the
// name of the current read-model database; a rebuild replaces it
// atomically.
const readModelPointer = "readmodel.current"

// currentReadModel returns the path of the read model to open.
func currentReadModel(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, readModelPointer))
	if errors.Is(err, os.ErrNotExist) {
		return filepath.Join(dataDir, "readmodel.db"), nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", readModelPointer, err)
	}
	name := strings.TrimSpace(string(b))
	if name == "" || name != filepath.Base(name) {
		return "", fmt.Errorf("%s names %q, not a file in the data directory", readModelPointer, name)
	}
	return filepath.Join(dataDir, name), nil
}

// removeStaleReadModels deletes read-model files left by a rebuild that
// was interrupted (the process died before it could swap them in).
func removeStaleReadModels(dataDir, current string, logger *slog.Logger) {
	matches, _ := filepath.Glob(filepath.Join(dataDir, "readmodel-*.db"))
	for _, m := range matches {
		if m == current {
			continue
		}
		if err := removeSQLite(m); err != nil {
			logger.Warn("remove unfinished read-model rebuild", "path", m, "err", err)
			continue
		}
		logger.Info("removed unfinished read-model rebuild", "path", filepath.Base(m))
	}
}

// pointReadModelAt makes path the read model opened at the next start.
func pointReadModelAt(dataDir, path string) error {
	tmp := filepath.Join(dataDir, readModelPointer+".tmp")
	if err := os.WriteFile(tmp, []byte(filepath.Base(path)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write read-model pointer: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dataDir, readModelPointer)); err != nil {
		return fmt.Errorf("replace read-model pointer: %w", err)
	}
	return nil
}

// rebuildBatchSize is the most events a rebuild applies per transaction:
// large batches write each index page once for many events.
const rebuildBatchSize = 10_000

// rebuilder rebuilds the read model from the full history into a fresh
// database while the current one keeps serving, then swaps it in.
type rebuilder struct {
	mu      sync.Mutex // one rebuild at a time
	path    string     // file of the current read model
	dataDir string
	client  *eventing.Conn
	codec   *eventing.Codec
	live    *readstore.Live
	gate    sync.Locker // the live projection's Gate
	opts    readstore.Options
	logger  *slog.Logger
}

// Rebuild replays $all into a new read-model file, catches it up to the
// live head, swaps it in and removes the old file.
func (rb *rebuilder) Rebuild(ctx context.Context) (graph.RebuildReport, error) {
	if !rb.mu.TryLock() {
		return graph.RebuildReport{}, errors.New("a rebuild is already running")
	}
	defer rb.mu.Unlock()
	start := time.Now()
	path := filepath.Join(rb.dataDir, fmt.Sprintf("readmodel-%s.db", start.UTC().Format("20060102T150405.000000000")))
	fresh, err := readstore.OpenFresh(ctx, path, rb.opts)
	if err != nil {
		return graph.RebuildReport{}, fmt.Errorf("rebuild: %w", err)
	}
	swapped := false
	defer func() {
		if !swapped {
			_ = fresh.Close()
			_ = removeSQLite(path)
		}
	}()

	// Feed the fresh model from the start of $all while the current one
	// keeps serving and keeps being fed.
	subCtx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	freshProj := &readstore.Projector{Live: readstore.NewLive(fresh)}
	subDone := make(chan error, 1)
	go func() {
		subDone <- eventing.RunSubscription(subCtx, rb.client.Client(), rb.codec, freshProj,
			eventing.SubscriptionOptions{BatchSize: rebuildBatchSize, Redial: rb.client.Redial})
	}()
	// Catch up to where the current model is, without holding it up.
	target, err := rb.live.Current().LastChange(ctx)
	if err != nil {
		return graph.RebuildReport{}, err
	}
	if err := waitUntil(ctx, fresh, target); err != nil {
		return graph.RebuildReport{}, fmt.Errorf("rebuild: catch up: %w", err)
	}
	// Build the indexes before pausing the live projection; the fresh
	// model keeps catching up meanwhile.
	if err := fresh.EndBulkLoad(ctx); err != nil {
		return graph.RebuildReport{}, fmt.Errorf("rebuild: %w", err)
	}

	// Pause the live projection, let the fresh model reach the last event
	// the current one applied, and swap.
	rb.gate.Lock()
	defer rb.gate.Unlock()
	prev := rb.live.Current()
	if target, err = prev.LastChange(ctx); err != nil {
		return graph.RebuildReport{}, err
	}
	if err := waitUntil(ctx, fresh, target); err != nil {
		return graph.RebuildReport{}, fmt.Errorf("rebuild: final catch-up: %w", err)
	}
	stopSub()
	if err := <-subDone; err != nil && !errors.Is(err, context.Canceled) {
		return graph.RebuildReport{}, fmt.Errorf("rebuild: subscription: %w", err)
	}
	prevCP, err := prev.Checkpoint(ctx)
	if err != nil {
		return graph.RebuildReport{}, err
	}
	freshCP, err := fresh.Checkpoint(ctx)
	if err != nil {
		return graph.RebuildReport{}, err
	}
	if freshCP < prevCP {
		// The fresh model has applied every event up to target, and none
		// lies between target and prevCP, so it may take prevCP as its
		// checkpoint.
		if _, err := fresh.Apply(ctx, nil, prevCP); err != nil {
			return graph.RebuildReport{}, fmt.Errorf("rebuild: align checkpoint: %w", err)
		}
	} else if freshCP > prevCP {
		// The fresh model ran ahead while the live one was paused; bring
		// the live one to the same point, so the two can be compared.
		if err := rb.applyRange(ctx, prev, prevCP, freshCP); err != nil {
			return graph.RebuildReport{}, fmt.Errorf("rebuild: align checkpoint: %w", err)
		}
	}
	rep := graph.RebuildReport{Events: int(freshProj.Applied())}
	if rep.PreviousCheckpoint, err = prev.Checkpoint(ctx); err != nil {
		return graph.RebuildReport{}, err
	}
	if rep.Checkpoint, err = fresh.Checkpoint(ctx); err != nil {
		return graph.RebuildReport{}, err
	}
	if rep.Hash, err = fresh.Hash(ctx); err != nil {
		return graph.RebuildReport{}, err
	}
	if rep.PreviousHash, err = prev.Hash(ctx); err != nil {
		return graph.RebuildReport{}, err
	}
	if _, err := rb.live.Swap(ctx, fresh); err != nil {
		return graph.RebuildReport{}, fmt.Errorf("rebuild: swap: %w", err)
	}
	swapped = true
	if err := pointReadModelAt(rb.dataDir, path); err != nil {
		return graph.RebuildReport{}, err
	}
	oldPath := rb.path
	rb.path = path
	if err := prev.Close(); err != nil {
		rb.logger.Warn("close replaced read model", "err", err)
	}
	if err := removeSQLite(oldPath); err != nil {
		rb.logger.Warn("remove replaced read model", "path", oldPath, "err", err)
	}
	rep.Duration = time.Since(start)
	rb.logger.Info("read model rebuilt", "file", filepath.Base(path), "events", rep.Events,
		"checkpoint", rep.Checkpoint, "hash", rep.Hash, "previousHash", rep.PreviousHash, "duration", rep.Duration)
	return rep, nil
}

// applyRange applies to s the order events of $all in (from, to], with
// to as the checkpoint.
func (rb *rebuilder) applyRange(ctx context.Context, s *readstore.Store, from, to uint64) error {
	client := rb.client.Client()
	rs, err := client.ReadAll(ctx, esdb.ReadAllOptions{From: esdb.Position{Commit: from, Prepare: from}}, ^uint64(0))
	if err != nil {
		rb.client.Observe(client, err)
		return err
	}
	defer rs.Close()
	var batch []eventing.Envelope
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			rb.client.Observe(client, err)
			return err
		}
		if ev.Event == nil || ev.Event.Position.Commit <= from {
			continue
		}
		if ev.Event.Position.Commit > to {
			break
		}
		if !strings.HasPrefix(ev.Event.StreamID, eventing.OrderStreamPrefix) {
			continue
		}
		env, _ := rb.codec.DecodeResolved(ev) // DecodeErr travels in env
		batch = append(batch, env)
	}
	_, err = s.Apply(ctx, readstore.FromEnvelopes(batch), to)
	return err
}

// waitUntil waits until s has applied every event up to position.
func waitUntil(ctx context.Context, s *readstore.Store, position uint64) error {
	for {
		err := s.WaitFor(ctx, position)
		if err == nil || !errors.Is(err, readstore.ErrStale) || errors.Is(err, readstore.ErrHalted) {
			return err
		}
	}
}

// removeSQLite removes a database file with its WAL and shared-memory files.
func removeSQLite(path string) error {
	var errs []error
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func eventStore(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := newFlagSet("eventstore", getenv, stderr)
	addr := fs.string("addr", "ORDERTRAIL_EVENTSTORE_ADDR", "127.0.0.1:2113", "gRPC listen address")
	data := fs.string("data", "ORDERTRAIL_DATA", "./data/eventstore", "data directory")
	certFile := fs.string("tls-cert", "ORDERTRAIL_TLS_CERT", "", "TLS certificate file (PEM)")
	keyFile := fs.string("tls-key", "ORDERTRAIL_TLS_KEY", "", "TLS private key file (PEM)")
	users := fs.string("users", "ORDERTRAIL_EVENTSTORE_USERS", "", "basic-auth users as user:password pairs, comma-separated; \"@FILE\" reads them from a file (one per line); only with TLS")
	insecure := fs.bool("insecure", "ORDERTRAIL_INSECURE", false, "allow listening on a non-loopback address without TLS")
	maxAppend := fs.int("max-append-size", "ORDERTRAIL_MAX_APPEND_SIZE", 1<<20, "largest append in bytes")
	logFormat := fs.string("log-format", "ORDERTRAIL_LOG_FORMAT", "text", "log format: text or json")
	logLevel := fs.string("log-level", "ORDERTRAIL_LOG_LEVEL", "info", "log level")
	if err := fs.parse(args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	if *data, err = filepath.Abs(*data); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	userList, err := secret(*users, "ORDERTRAIL_EVENTSTORE_USERS_FILE", getenv)
	if err != nil {
		return err
	}
	userMap := map[string]string{}
	for _, pair := range splitList(userList) {
		name, pass, ok := strings.Cut(pair, ":")
		if !ok || name == "" {
			return fmt.Errorf("users: %q is not user:password", name)
		}
		userMap[name] = pass
	}
	srv, err := embedded.Start(ctx, embedded.Config{
		Dir: *data, Addr: *addr, MaxAppendSize: *maxAppend,
		TLSCertFile: *certFile, TLSKeyFile: *keyFile, Users: userMap,
		Insecure: *insecure, Logger: logger,
	})
	if err != nil {
		return err
	}
	logger.Info("event store listening", "addr", srv.Addr(), "connection", srv.ConnectionString(), "dir", *data)
	<-ctx.Done()
	logger.Info("shutting down")
	return srv.Close()
}

// backup copies the embedded event store's database with VACUUM INTO. It
// runs as a read transaction next to the store (in this process's service
// or a standalone store process), so writes go on while it copies; the
// copy is a consistent snapshot of a prefix of $all.
func backup(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := newFlagSet("backup", getenv, stderr)
	dir := fs.string("store", "ORDERTRAIL_EVENTSTORE_DATA", "./data/eventstore", "the embedded store's data directory (the service keeps it in DATA/eventstore)")
	out := fs.string("out", "ORDERTRAIL_BACKUP_OUT", "", "file to write; must not exist. Restore by placing it as events.db in an empty store directory")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("backup: --out is required")
	}
	src := filepath.Join(*dir, "events.db")
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("backup: %s already exists", *out)
	}
	db, err := sql.Open("sqlite3", "file:"+src+"?_busy_timeout=10000")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer db.Close()
	start := time.Now()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, *out); err != nil {
		return fmt.Errorf("backup %s: %w", src, err)
	}
	var check string
	copyDB, err := sql.Open("sqlite3", "file:"+*out+"?mode=ro")
	if err != nil {
		return fmt.Errorf("backup: check copy: %w", err)
	}
	defer copyDB.Close()
	if err := copyDB.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		return fmt.Errorf("backup: integrity check of %s: %q %v", *out, check, err)
	}
	fmt.Fprintf(stderr, "backup of %s written to %s in %s (integrity ok)\n", src, *out, time.Since(start).Round(time.Millisecond))
	return nil
}

// rebuildMutation asks a running service to rebuild its read models.
const rebuildMutation = `mutation { rebuildReadModels { checkpoint hash previousCheckpoint previousHash events durationMs } }`

// rebuildInto creates a read model at path and feeds it, in bulk-load
// mode, from the start of $all until the subscription has caught up, then
// ends the bulk load. It returns the store, open, and the number of events
// applied; on error the store is closed and the caller removes path.
func rebuildInto(ctx context.Context, client *esdb.Client, codec *eventing.Codec, path string, opts readstore.Options) (*readstore.Store, int64, error) {
	fresh, err := readstore.OpenFresh(ctx, path, opts)
	if err != nil {
		return nil, 0, err
	}
	proj := &readstore.Projector{Live: readstore.NewLive(fresh)}
	subCtx, stop := context.WithCancel(ctx)
	defer stop()
	caughtUp := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		done <- eventing.RunSubscription(subCtx, client, codec, proj, eventing.SubscriptionOptions{
			BatchSize: rebuildBatchSize,
			OnStatus: func(st eventing.SubscriptionStatus) {
				if st.CaughtUp {
					once.Do(func() { close(caughtUp) })
				}
			},
		})
	}()
	select {
	case <-caughtUp:
	case err := <-done:
		_ = fresh.Close()
		return nil, 0, err
	}
	stop()
	<-done
	if err := fresh.EndBulkLoad(ctx); err != nil {
		_ = fresh.Close()
		return nil, 0, err
	}
	return fresh, proj.Applied(), nil
}

// rebuild rebuilds the read models. With a service answering at --api it
// asks that service (which keeps serving and swaps the new model in);
// with none, it rebuilds the data directory's read model offline.
func rebuild(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := newFlagSet("rebuild", getenv, stderr)
	api := fs.string("api", "ORDERTRAIL_API", "http://127.0.0.1:8080/graphql", "GraphQL endpoint of a running service")
	token := fs.string("token", "ORDERTRAIL_TOKEN", "", "bearer token for the running service; \"@FILE\" reads it from a file")
	store := addStoreFlags(fs)
	if err := fs.parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	tok, err := secret(*token, "ORDERTRAIL_TOKEN_FILE", getenv)
	if err != nil {
		return err
	}
	body, err := postGraphQL(ctx, *api, tok, rebuildMutation)
	if err == nil {
		fmt.Fprintln(os.Stdout, string(body))
		return nil
	}
	var netErr *net.OpError
	if !errors.As(err, &netErr) {
		return fmt.Errorf("rebuild through %s: %w", *api, err)
	}
	logger.Info("no service answers; rebuilding offline", "api", *api)
	if *store.data, err = filepath.Abs(*store.data); err != nil {
		return err
	}
	client, _, closeStore, err := store.open(ctx, getenv, logger)
	if err != nil {
		return err
	}
	defer closeStore()
	oldPath, err := currentReadModel(*store.data)
	if err != nil {
		return err
	}
	start := time.Now()
	path := filepath.Join(*store.data, fmt.Sprintf("readmodel-%s.db", start.UTC().Format("20060102T150405.000000000")))
	codec := eventing.NewCodec(eventing.DefaultUpcasters(getenvOr(getenv, "ORDERTRAIL_LEGACY_CURRENCY", "USD")))
	fresh, applied, err := rebuildInto(ctx, client.Client(), codec, path, readstore.Options{Logger: logger})
	if err != nil {
		_ = removeSQLite(path)
		return fmt.Errorf("rebuild: %w", err)
	}
	hash, err := fresh.Hash(ctx)
	if err != nil {
		return err
	}
	cp, err := fresh.Checkpoint(ctx)
	if err != nil {
		return err
	}
	if err := fresh.Close(); err != nil {
		return err
	}
	if err := pointReadModelAt(*store.data, path); err != nil {
		return err
	}
	if err := removeSQLite(oldPath); err != nil {
		logger.Warn("remove replaced read model", "path", oldPath, "err", err)
	}
	fmt.Fprintf(os.Stdout, `{"data":{"rebuildReadModels":{"checkpoint":"%d","hash":"%s","events":%d,"durationMs":%d}}}`+"\n",
		cp, hash, applied, time.Since(start).Milliseconds())
	return nil
}

func getenvOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// postGraphQL sends one operation and returns the response body; GraphQL
// errors in the body become an error.
func postGraphQL(ctx context.Context, url, token, query string) ([]byte, error) {
	payload, err := json.Marshal(map[string]string{"query": query})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	var out struct {
		Errors []struct{ Message string } `json:"errors"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	if len(out.Errors) > 0 {
		return nil, fmt.Errorf("%s", out.Errors[0].Message)
	}
	return body, nil
}

// metrics are the service's Prometheus metrics.
type metrics struct {
	registry        *prometheus.Registry
	projectionLag   prometheus.Gauge
	projectionBatch prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		projectionLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ordertrail_projection_lag_seconds",
			Help: "Time from an event's commit to its projection, for the last batch.",
		}),
		projectionBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ordertrail_projection_batch_events",
			Help:    "Events per committed read-model batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 … 8192
		}),
	}
	m.registry.MustRegister(m.projectionLag, m.projectionBatch, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
