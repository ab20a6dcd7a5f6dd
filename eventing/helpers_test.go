package eventing_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/eventing/embedded"
)

var quiet = slog.New(slog.DiscardHandler)

// TestMain silences the default logger, which eventing.Connect gives the
// esdb client, unless ORDERTRAIL_TEST_LOG is set.
func TestMain(m *testing.M) {
	if os.Getenv("ORDERTRAIL_TEST_LOG") == "" {
		slog.SetDefault(quiet)
	}
	os.Exit(m.Run())
}

// legacyCurrency is the currency of orders created by the original service
// in these tests.
const legacyCurrency = "EUR"

// store is an embedded event store and a client connected to it.
type store struct {
	dir    string
	srv    *embedded.Server
	client *esdb.Client
}

// startStore runs an embedded store in a fresh directory for the test.
func startStore(t testing.TB) *store {
	t.Helper()
	s := &store{dir: t.TempDir()}
	s.start(t, "")
	t.Cleanup(func() {
		s.client.Close()
		s.srv.Close()
	})
	return s
}

// start (re)starts the server on addr ("" for any port) and connects a new
// client.
func (s *store) start(t testing.TB, addr string) {
	t.Helper()
	srv, err := embedded.Start(context.Background(), embedded.Config{Dir: s.dir, Addr: addr, Logger: quiet})
	if err != nil {
		t.Fatalf("start embedded store: %v", err)
	}
	s.srv = srv
	c, err := eventing.Connect(srv.ConnectionString())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if s.client != nil {
		s.client.Close()
	}
	s.client = c
}

// restart closes the server and starts it again on the same address and
// directory, keeping the client.
func (s *store) restart(t testing.TB) {
	t.Helper()
	addr := s.srv.Addr()
	if err := s.srv.Close(); err != nil {
		t.Fatalf("close embedded store: %v", err)
	}
	srv, err := embedded.Start(context.Background(), embedded.Config{Dir: s.dir, Addr: addr, Logger: quiet})
	if err != nil {
		t.Fatalf("restart embedded store on %s: %v", addr, err)
	}
	s.srv = srv
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newCodec() *eventing.Codec { return eventing.NewCodec(eventing.DefaultUpcasters(legacyCurrency)) }

func newRepo(s *store, opts eventing.RepositoryOptions) *eventing.Repository {
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	return eventing.NewRepository(s.client, newCodec(), opts)
}

func eur(minor int64) domain.Money { return domain.Money{Amount: minor, Currency: "EUR"} }

// createOrder is a create command with one item worth 10.00 EUR.
func createOrder(customer string) func(*domain.Order) error {
	return func(o *domain.Order) error {
		return o.Create(customer, "EUR", []domain.NewItem{{SKU: "sku-1", Quantity: 1, UnitPrice: eur(1000)}})
	}
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
