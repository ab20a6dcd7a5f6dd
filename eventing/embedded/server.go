package embedded

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/gossip"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ErrLocked is returned (wrapped) by Start when another process, or another
// Server in this process, already holds the data directory.
var ErrLocked = errors.New("embedded: data directory is locked by another store")

// ErrCorrupt is returned (wrapped) by CheckIntegrity when SQLite reports
// damage in the event database.
var ErrCorrupt = errors.New("embedded: event database is corrupt")

// ErrConfig is returned (wrapped) by Start for an invalid Config.
var ErrConfig = errors.New("embedded: invalid config")

// serverVersion is what ServerFeatures reports; the client parses three
// numeric parts.
const serverVersion = "24.10.0"

// Config configures an embedded store.
type Config struct {
	Dir                     string            // data directory; the SQLite file is Dir/events.db; created if missing
	Addr                    string            // listen address, default "127.0.0.1:0"
	MaxAppendSize           int               // bytes per append (sum of data+metadata of all events), default 1<<20
	TLSCertFile, TLSKeyFile string            // optional; with TLS, basic-auth users are required on Streams calls
	Users                   map[string]string // username -> password for basic auth (only meaningful with TLS)
	Insecure                bool              // allow listening on a non-loopback address without TLS
	Logger                  *slog.Logger      // nil: slog.Default()
}

// Server is a running embedded store. It is safe for concurrent use.
type Server struct {
	cfg      Config
	id       uuid.UUID // gossip instance id
	log      *slog.Logger
	lock     *os.File
	st       *store
	lis      net.Listener
	grpc     *grpc.Server
	tls      bool
	closing  chan struct{}
	served   chan struct{}
	closeErr error
	once     sync.Once
}

// Start opens (or creates) the store in cfg.Dir, listens on cfg.Addr and
// serves in the background until Close. ctx bounds only the start-up work.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is required", ErrConfig)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.MaxAppendSize <= 0 {
		cfg.MaxAppendSize = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	useTLS := cfg.TLSCertFile != "" || cfg.TLSKeyFile != ""
	if !useTLS && !cfg.Insecure && !isLoopback(cfg.Addr) {
		return nil, fmt.Errorf("%w: refusing to listen on non-loopback address %q without TLS (set Insecure to allow)", ErrConfig, cfg.Addr)
	}
	var creds credentials.TransportCredentials
	if useTLS {
		c, err := credentials.NewServerTLSFromFile(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("load TLS key pair: %w", err)
		}
		creds = c
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg.Dir, cfg.Logger)
	if err != nil {
		unlockDir(lock)
		return nil, err
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		st.close()
		unlockDir(lock)
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		cfg: cfg, id: uuid.New(), log: cfg.Logger, lock: lock, st: st, lis: lis, tls: useTLS,
		closing: make(chan struct{}), served: make(chan struct{}),
	}
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(17 << 20),
		grpc.WaitForHandlers(true),
		grpc.ForceServerCodecV2(newServerCodec()),
		grpc.UnknownServiceHandler(unsupported),
		grpc.ChainUnaryInterceptor(s.authUnary),
		grpc.ChainStreamInterceptor(s.authStream),
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s.grpc = grpc.NewServer(opts...)
	streams.RegisterStreamsServer(s.grpc, &streamsService{srv: s, st: st})
	serverfeatures.RegisterServerFeaturesServer(s.grpc, featuresService{})
	gossip.RegisterGossipServer(s.grpc, gossipService{srv: s})
	go func() {
		defer close(s.served)
		if err := s.grpc.Serve(lis); err != nil {
			s.log.Error("embedded store: serve", "addr", lis.Addr().String(), "err", err)
		}
	}()
	s.log.Info("embedded store started", "addr", s.Addr(), "dir", cfg.Dir, "tls", useTLS)
	return s, nil
}

// Addr returns the address actually bound, e.g. "127.0.0.1:41234".
func (s *Server) Addr() string { return s.lis.Addr().String() }

// ConnectionString returns an esdb:// connection string for the official
// client.
func (s *Server) ConnectionString() string {
	if s.tls {
		return "esdb://" + s.Addr() + "?tls=true&tlsVerifyCert=false"
	}
	return "esdb://" + s.Addr() + "?tls=false"
}

// Close stops serving (live subscriptions end with Unavailable), waits for
// in-flight calls, closes SQLite and releases the directory lock.
func (s *Server) Close() error {
	s.once.Do(func() {
		close(s.closing)
		stopped := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			s.grpc.Stop()
			<-stopped
		}
		<-s.served
		s.closeErr = s.st.close()
		unlockDir(s.lock)
		s.log.Info("embedded store closed", "dir", s.cfg.Dir)
	})
	return s.closeErr
}

// CheckIntegrity runs SQLite's PRAGMA integrity_check and returns an error
// wrapping ErrCorrupt if it reports anything but "ok".
func (s *Server) CheckIntegrity(ctx context.Context) error {
	return s.st.checkIntegrity(ctx)
}

// Backup writes a consistent copy of the event database to path (which must
// not exist) with VACUUM INTO; appends may continue meanwhile.
func (s *Server) Backup(ctx context.Context, path string) error {
	return s.st.backup(ctx, path)
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is in use (another embedded store holds %s)", ErrLocked, dir, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

func unlockDir(f *os.File) {
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	f.Close()
}

// unsupported answers every service the embedded store does not implement.
func unsupported(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	// Take the client's first message before failing: a bidirectional call
	// (persistent Read) would otherwise see EOF on its first Send instead of
	// our status. Every client call sends one first, so this does not block.
	_ = stream.RecvMsg(&shared.Empty{})
	feature := "this service"
	switch {
	case strings.Contains(method, "persistent_subscriptions"):
		feature = "persistent subscriptions"
	case strings.Contains(method, "projections"):
		feature = "projections"
	case strings.Contains(method, ".users."):
		feature = "user management"
	case strings.Contains(method, ".operations."):
		feature = "operations"
	case strings.Contains(method, ".monitoring."):
		feature = "monitoring"
	}
	return status.Errorf(codes.Unimplemented, "embedded store does not support %s (%s)", feature, method)
}

const streamsPrefix = "/event_store.client.streams.Streams/"

// authorize enforces basic auth on Streams calls when TLS is on.
func (s *Server) authorize(ctx context.Context, method string) error {
	if !s.tls || !strings.HasPrefix(method, streamsPrefix) {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return status.Error(codes.Unauthenticated, "authentication required")
	}
	const prefix = "Basic "
	if !strings.HasPrefix(vals[0], prefix) {
		return status.Error(codes.Unauthenticated, "unsupported authorization scheme")
	}
	raw, err := base64.StdEncoding.DecodeString(vals[0][len(prefix):])
	if err != nil {
		return status.Error(codes.Unauthenticated, "malformed basic credentials")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	want, known := s.cfg.Users[user]
	if !ok || !known || subtle.ConstantTimeCompare([]byte(pass), []byte(want)) != 1 {
		return status.Error(codes.Unauthenticated, "invalid username or password")
	}
	return nil
}

func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.authorize(ss.Context(), info.FullMethod); err != nil {
		// Consume what the client sends before it waits for our answer, so
		// it reads this status rather than EOF on a Send: the whole request
		// of a client-streaming Append, the first message otherwise.
		limit := 1
		if info.IsClientStream && !info.IsServerStream {
			limit = 10_000
		}
		for range limit {
			if ss.RecvMsg(&shared.Empty{}) != nil {
				break
			}
		}
		return err
	}
	return h(srv, ss)
}

type featuresService struct {
	serverfeatures.UnimplementedServerFeaturesServer
}

// GetSupportedMethods lists exactly the methods this server implements.
func (featuresService) GetSupportedMethods(context.Context, *shared.Empty) (*serverfeatures.SupportedMethods, error) {
	const st = "event_store.client.streams.streams"
	return &serverfeatures.SupportedMethods{
		EventStoreServerVersion: serverVersion,
		Methods: []*serverfeatures.SupportedMethod{
			{ServiceName: st, MethodName: "read", Features: []string{"position", "events"}},
			{ServiceName: st, MethodName: "append"},
			{ServiceName: st, MethodName: "delete"},
			{ServiceName: st, MethodName: "tombstone"},
			{ServiceName: "event_store.client.gossip.gossip", MethodName: "read"},
			{ServiceName: "event_store.client.server_features.serverfeatures", MethodName: "getsupportedmethods"},
		},
	}, nil
}

type gossipService struct {
	gossip.UnimplementedGossipServer
	srv *Server
}

// Read reports this node as the only, alive leader.
func (g gossipService) Read(context.Context, *shared.Empty) (*gossip.ClusterInfo, error) {
	host, portStr, err := net.SplitHostPort(g.srv.Addr())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "listener address: %v", err)
	}
	port, err := strconv.ParseUint(portStr, 10, 32)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "listener port: %v", err)
	}
	return &gossip.ClusterInfo{Members: []*gossip.MemberInfo{{
		InstanceId:   uuidProto(g.srv.id, false),
		TimeStamp:    time.Now().UnixNano() / 100,
		State:        gossip.MemberInfo_Leader,
		IsAlive:      true,
		HttpEndPoint: &gossip.EndPoint{Address: host, Port: uint32(port)},
	}}}, nil
}
