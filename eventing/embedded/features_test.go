package embedded_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ordertrail/ordertrail/eventing/embedded"
)

func rawConn(t *testing.T, srv *embedded.Server) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func streamLen(t *testing.T, c *esdb.Client, stream string) int {
	t.Helper()
	got, err := readAllOf(c.ReadStream(testCtx(t), stream, esdb.ReadStreamOptions{}, 1000))
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return len(got)
}

func TestIdempotentRetries(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))
	app := func(exp esdb.ExpectedRevision, evs ...esdb.EventData) (*esdb.WriteResult, error) {
		return c.AppendToStream(ctx, "order-idem", esdb.AppendToStreamOptions{ExpectedRevision: exp}, evs...)
	}
	a, b, cc, d := event("A", 0), event("B", 1), event("C", 2), event("D", 3)

	first, err := app(esdb.NoStream{}, a, b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := app(esdb.NoStream{}, a, b)
	if err != nil || *again != *first {
		t.Fatalf("NoStream retry = %+v, %v; want the original %+v", again, err, first)
	}

	second, err := app(esdb.Revision(1), cc)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := app(esdb.Revision(1), cc)
			if err != nil || *r != *second {
				t.Errorf("concurrent exact retry = %+v, %v; want %+v", r, err, second)
			}
		}()
	}
	wg.Wait()

	for name, evs := range map[string][]esdb.EventData{
		"first id same, extra event": {cc, d},
		"different id":               {d},
	} {
		if _, err := app(esdb.Revision(1), evs...); errorCode(err) != esdb.ErrorCodeWrongExpectedVersion {
			t.Errorf("partial overlap (%s): err = %v, want WrongExpectedVersion", name, err)
		}
	}

	anyRes, err := app(esdb.Any{}, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, exp := range []esdb.ExpectedRevision{esdb.Any{}, esdb.StreamExists{}} {
		r, err := app(exp, d)
		if err != nil || *r != *anyRes {
			t.Errorf("%T retry = %+v, %v; want %+v", exp, r, err, anyRes)
		}
	}
	if n := streamLen(t, c, "order-idem"); n != 4 {
		t.Errorf("stream holds %d events after retries, want 4", n)
	}
}

func TestMaximumAppendSize(t *testing.T) {
	ctx := testCtx(t)
	srv, err := embedded.Start(ctx, embedded.Config{Dir: t.TempDir(), MaxAppendSize: 1000, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	call, err := streams.NewStreamsClient(rawConn(t, srv)).Append(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*streams.AppendReq{{Content: &streams.AppendReq_Options_{Options: &streams.AppendReq_Options{
		StreamIdentifier:       &shared.StreamIdentifier{StreamName: []byte("big")},
		ExpectedStreamRevision: &streams.AppendReq_Options_Any{Any: &shared.Empty{}},
	}}}}
	for range 2 {
		msgs = append(msgs, &streams.AppendReq{Content: &streams.AppendReq_ProposedMessage_{ProposedMessage: &streams.AppendReq_ProposedMessage{
			Id:             &shared.UUID{Value: &shared.UUID_String_{String_: uuid.NewString()}},
			Metadata:       map[string]string{"type": "E", "content-type": "application/octet-stream"},
			Data:           make([]byte, 450),
			CustomMetadata: make([]byte, 100),
		}}})
	}
	for _, m := range msgs {
		if err := call.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	_, err = call.CloseAndRecv()
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != "Maximum Append Size of 1000 Exceeded." {
		t.Fatalf("oversized append: %v, want InvalidArgument \"Maximum Append Size of 1000 Exceeded.\"", err)
	}
	tr := call.Trailer()
	if fmt.Sprint(tr.Get("exception"), tr.Get("maximum-append-size")) != "[maximum-append-size-exceeded] [1000]" {
		t.Errorf("trailers = %v", tr)
	}
	c := connect(t, srv)
	if _, err := readAllOf(c.ReadStream(ctx, "big", esdb.ReadStreamOptions{}, 10)); errorCode(err) != esdb.ErrorCodeResourceNotFound {
		t.Errorf("oversized append wrote something: read err = %v", err)
	}
	// Exactly at the limit is accepted.
	ev := esdb.EventData{EventID: uuid.New(), EventType: "E", ContentType: esdb.ContentTypeBinary, Data: make([]byte, 1000)}
	if _, err := c.AppendToStream(ctx, "big", esdb.AppendToStreamOptions{}, ev); err != nil {
		t.Errorf("append of exactly 1000 bytes: %v", err)
	}
}

func TestSoftDeleteThenRecreate(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))
	evs := []esdb.EventData{event("A", 0), event("B", 1)}
	first, err := c.AppendToStream(ctx, "order-del", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, evs...)
	if err != nil {
		t.Fatal(err)
	}
	del, err := c.DeleteStream(ctx, "order-del", esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(1)})
	if err != nil || del.Position.Commit <= first.CommitPosition {
		t.Fatalf("delete = %+v, %v; want a position after %d", del, err, first.CommitPosition)
	}
	if _, err := readAllOf(c.ReadStream(ctx, "order-del", esdb.ReadStreamOptions{}, 10)); errorCode(err) != esdb.ErrorCodeResourceNotFound {
		t.Errorf("read after soft delete: %v, want ResourceNotFound", err)
	}
	all, err := readAllOf(c.ReadAll(ctx, esdb.ReadAllOptions{}, 100))
	if err != nil || len(all) < 2 || all[0].Event.EventID != evs[0].EventID {
		t.Errorf("$all after soft delete lost the events (%d, %v)", len(all), err)
	}
	if _, err := c.AppendToStream(ctx, "order-del", esdb.AppendToStreamOptions{ExpectedRevision: esdb.StreamExists{}}, event("X", 9)); errorCode(err) != esdb.ErrorCodeStreamDeleted {
		t.Errorf("StreamExists on soft-deleted stream: %v, want StreamDeleted", err)
	}
	res, err := c.AppendToStream(ctx, "order-del", esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, event("C", 2), event("D", 3))
	if err != nil || res.NextExpectedVersion != 3 {
		t.Fatalf("append after soft delete = %+v, %v; want revision 3", res, err)
	}
	got, err := readAllOf(c.ReadStream(ctx, "order-del", esdb.ReadStreamOptions{}, 10))
	if err != nil || len(got) != 2 || got[0].Event.EventNumber != 2 {
		t.Fatalf("read after re-create: %d events (%v), want revisions 2,3", len(got), err)
	}
	m, err := c.GetStreamMetadata(ctx, "order-del", esdb.ReadStreamOptions{})
	if err != nil || m.TruncateBefore() == nil || *m.TruncateBefore() != 2 {
		t.Errorf("metadata after re-create: %+v, %v; want $tb 2", m, err)
	}
}

func TestDeleteWrongExpectedVersionTrailers(t *testing.T) {
	ctx := testCtx(t)
	srv := start(t, "")
	c := connect(t, srv)
	if _, err := c.AppendToStream(ctx, "s", esdb.AppendToStreamOptions{}, event("A", 0)); err != nil {
		t.Fatal(err)
	}
	var tr metadata.MD
	_, err := streams.NewStreamsClient(rawConn(t, srv)).Delete(ctx, &streams.DeleteReq{Options: &streams.DeleteReq_Options{
		StreamIdentifier:       &shared.StreamIdentifier{StreamName: []byte("s")},
		ExpectedStreamRevision: &streams.DeleteReq_Options_NoStream{NoStream: &shared.Empty{}},
	}}, grpc.Trailer(&tr))
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("delete with NoStream on existing stream: %v, want FailedPrecondition", err)
	}
	got := fmt.Sprint(tr.Get("exception"), tr.Get("stream-name"), tr.Get("expected-version"), tr.Get("actual-version"))
	if got != "[wrong-expected-version] [s] [-1] [0]" {
		t.Errorf("trailers = %s", got)
	}
	if n := streamLen(t, c, "s"); n != 1 {
		t.Errorf("failed delete changed the stream: %d events", n)
	}
}

func TestTombstone(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))
	last, err := c.AppendToStream(ctx, "order-t", esdb.AppendToStreamOptions{}, event("A", 0))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.TombstoneStream(ctx, "order-t", esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Any{}})
	if err != nil || ts.Position.Commit <= last.CommitPosition {
		t.Fatalf("tombstone = %+v, %v; want a position after %d", ts, err, last.CommitPosition)
	}
	for _, exp := range []esdb.ExpectedRevision{esdb.Any{}, esdb.NoStream{}, esdb.StreamExists{}, esdb.Revision(0)} {
		if _, err := c.AppendToStream(ctx, "order-t", esdb.AppendToStreamOptions{ExpectedRevision: exp}, event("B", 1)); errorCode(err) != esdb.ErrorCodeStreamDeleted {
			t.Errorf("append %T after tombstone: %v, want StreamDeleted", exp, err)
		}
	}
	if _, err := readAllOf(c.ReadStream(ctx, "order-t", esdb.ReadStreamOptions{}, 10)); errorCode(err) != esdb.ErrorCodeStreamDeleted {
		t.Errorf("read after tombstone: %v, want StreamDeleted", err)
	}
	if _, err := c.TombstoneStream(ctx, "order-t", esdb.TombstoneStreamOptions{}); errorCode(err) != esdb.ErrorCodeStreamDeleted {
		t.Errorf("second tombstone: %v, want StreamDeleted", err)
	}
	if _, err := c.TombstoneStream(ctx, "never-1", esdb.TombstoneStreamOptions{ExpectedRevision: esdb.NoStream{}}); err != nil {
		t.Errorf("tombstone missing stream with NoStream: %v", err)
	}
	if _, err := c.TombstoneStream(ctx, "never-2", esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Revision(0)}); err == nil {
		t.Error("tombstone missing stream with Revision(0) succeeded, want wrong expected version")
	}
}

func TestStreamMetadataLimitsReads(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))
	for i := range 5 {
		if _, err := c.AppendToStream(ctx, "order-m", esdb.AppendToStreamOptions{}, event("E", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []uint64{3, 2} {
		var m esdb.StreamMetadata
		m.SetMaxCount(n)
		if _, err := c.SetStreamMetadata(ctx, "order-m", esdb.AppendToStreamOptions{}, m); err != nil {
			t.Fatal(err)
		}
	}
	m, err := c.GetStreamMetadata(ctx, "order-m", esdb.ReadStreamOptions{})
	if err != nil || m.MaxCount() == nil || *m.MaxCount() != 2 {
		t.Fatalf("GetStreamMetadata = %+v, %v; want the latest ($maxCount 2)", m, err)
	}
	got, err := readAllOf(c.ReadStream(ctx, "order-m", esdb.ReadStreamOptions{}, 10))
	if err != nil || len(got) != 2 || got[0].Event.EventNumber != 3 {
		t.Errorf("read with $maxCount 2: %d events (%v), want revisions 3,4", len(got), err)
	}
	back, err := readAllOf(c.ReadStream(ctx, "order-m", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 10))
	if err != nil || len(back) != 2 || back[1].Event.EventNumber != 3 {
		t.Errorf("backwards read with $maxCount 2: %d events (%v), want revisions 4,3", len(back), err)
	}
	var tb esdb.StreamMetadata
	tb.SetTruncateBefore(4)
	if _, err := c.SetStreamMetadata(ctx, "order-m", esdb.AppendToStreamOptions{}, tb); err != nil {
		t.Fatal(err)
	}
	if got, err := readAllOf(c.ReadStream(ctx, "order-m", esdb.ReadStreamOptions{}, 10)); err != nil || len(got) != 1 || got[0].Event.EventNumber != 4 {
		t.Errorf("read with $tb 4: %d events (%v), want revision 4", len(got), err)
	}
	var age esdb.StreamMetadata
	age.SetMaxAge(time.Hour)
	if _, err := c.SetStreamMetadata(ctx, "order-m", esdb.AppendToStreamOptions{}, age); err != nil {
		t.Fatal(err)
	}
	if n := streamLen(t, c, "order-m"); n != 5 {
		t.Errorf("read with $maxAge 1h: %d events, want all 5 (they are fresh)", n)
	}
	all, err := readAllOf(c.ReadAll(ctx, esdb.ReadAllOptions{}, 100))
	if err != nil || len(all) != 5+4 {
		t.Errorf("$all holds %d records (%v), want 5 events + 4 metadata events", len(all), err)
	}
}

func TestUnsupportedServices(t *testing.T) {
	ctx := testCtx(t)
	srv := start(t, "")
	c := connect(t, srv)
	err := c.CreatePersistentSubscription(ctx, "s", "g", esdb.PersistentStreamSubscriptionOptions{})
	if errorCode(err) != esdb.ErrorCodeUnsupportedFeature {
		t.Errorf("CreatePersistentSubscription: %v, want UnsupportedFeature", err)
	}
	if _, err := c.SubscribeToPersistentSubscription(ctx, "s", "g", esdb.SubscribeToPersistentSubscriptionOptions{}); errorCode(err) != esdb.ErrorCodeUnsupportedFeature {
		t.Errorf("SubscribeToPersistentSubscription: %v, want UnsupportedFeature", err)
	}
	err = esdb.NewProjectionClientFromExistingClient(c).Create(ctx, "p", "fromAll()", esdb.CreateProjectionOptions{})
	if err == nil || !strings.Contains(err.Error(), "Unimplemented") || !strings.Contains(err.Error(), "projections") {
		t.Errorf("projection Create: %v, want Unimplemented naming projections", err)
	}
	conn := rawConn(t, srv)
	err = conn.Invoke(ctx, "/event_store.client.projections.Projections/Create", &shared.Empty{}, &shared.Empty{})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "projections") {
		t.Errorf("projections Create: %v, want Unimplemented naming projections", err)
	}
	ba, err := streams.NewStreamsClient(conn).BatchAppend(ctx)
	if err == nil {
		_, err = ba.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("BatchAppend: %v, want Unimplemented", err)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "embedded-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLSRequiresBasicAuthOnStreams(t *testing.T) {
	ctx := testCtx(t)
	certFile, keyFile := writeCert(t)
	srv, err := embedded.Start(ctx, embedded.Config{
		Dir: t.TempDir(), TLSCertFile: certFile, TLSKeyFile: keyFile,
		Users: map[string]string{"admin": "changeit"}, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if !strings.Contains(srv.ConnectionString(), "tls=true") {
		t.Fatalf("connection string %q does not enable TLS", srv.ConnectionString())
	}
	client := func(userinfo string) *esdb.Client {
		cfg, err := esdb.ParseConnectionString("esdb://" + userinfo + srv.Addr() + "?tls=true&tlsVerifyCert=false")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Logger = esdb.NoopLogging()
		c, err := esdb.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for _, tc := range []struct {
		name, userinfo string
		want           esdb.ErrorCode
	}{
		{"no credentials", "", esdb.ErrorCodeUnauthenticated},
		{"wrong password", "admin:nope@", esdb.ErrorCodeUnauthenticated},
		{"unknown user", "eve:changeit@", esdb.ErrorCodeUnauthenticated},
	} {
		_, err := client(tc.userinfo).AppendToStream(ctx, "s", esdb.AppendToStreamOptions{}, event("E", 0))
		if errorCode(err) != tc.want {
			t.Errorf("%s: append err = %v, want Unauthenticated", tc.name, err)
		}
	}
	c := client("admin:changeit@")
	if _, err := c.AppendToStream(ctx, "s", esdb.AppendToStreamOptions{}, event("E", 0)); err != nil {
		t.Fatalf("authenticated append: %v", err)
	}
	if n := streamLen(t, c, "s"); n != 1 {
		t.Errorf("stream holds %d events, want only the authenticated one", n)
	}
}

func TestConcurrentAppendsKeepOrderAndLiveDelivery(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))
	sub, err := c.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	own, err := c.SubscribeToStream(ctx, "own-3", esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()

	const writers, rounds = 16, 25
	var wg sync.WaitGroup
	wins := make([]int, rounds)
	var mu sync.Mutex
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				// Everyone races for revision r of one stream, and also
				// appends freely to a stream of its own.
				_, err := c.AppendToStream(ctx, "race", esdb.AppendToStreamOptions{ExpectedRevision: revisionBefore(r)}, event("Race", r))
				switch {
				case err == nil:
					mu.Lock()
					wins[r]++
					mu.Unlock()
				case errorCode(err) != esdb.ErrorCodeWrongExpectedVersion:
					t.Errorf("race append: %v", err)
				}
				if _, err := c.AppendToStream(ctx, fmt.Sprintf("own-%d", w), esdb.AppendToStreamOptions{}, event("Own", r)); err != nil {
					t.Errorf("own append: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	for r, n := range wins {
		if n > 1 {
			t.Errorf("round %d had %d winners, want at most 1", r, n)
		}
	}
	all, err := readAllOf(c.ReadAll(ctx, esdb.ReadAllOptions{}, 100_000))
	if err != nil {
		t.Fatal(err)
	}
	race := streamLen(t, c, "race")
	if want := writers*rounds + race; len(all) != want {
		t.Fatalf("$all holds %d events, want %d", len(all), want)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Event.Position.Commit <= all[i-1].Event.Position.Commit {
			t.Fatalf("$all not strictly increasing at %d", i)
		}
	}
	for i := range all {
		ev := next(t, sub)
		for ev.EventAppeared == nil {
			ev = next(t, sub)
		}
		if got, want := ev.EventAppeared.Event.Position.Commit, all[i].Event.Position.Commit; got != want {
			t.Fatalf("subscription event %d at position %d, $all has %d (gap or duplicate)", i, got, want)
		}
	}
	for want := uint64(0); want < rounds; {
		ev := next(t, own)
		if ev.EventAppeared == nil {
			continue
		}
		if got := ev.EventAppeared.Event.EventNumber; got != want {
			t.Fatalf("stream subscription delivered revision %d, want %d", got, want)
		}
		want++
	}
}

// revisionBefore is the expected revision for appending revision r.
func revisionBefore(r int) esdb.ExpectedRevision {
	if r == 0 {
		return esdb.NoStream{}
	}
	return esdb.Revision(uint64(r - 1))
}

func TestSlowSubscriberDoesNotBlockWriters(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))
	sub, err := c.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Nobody reads the subscription while 20 MB go in: more than gRPC's
	// flow-control windows (at most 16 MB), so the server-side sender stalls.
	const n, perAppend = 2000, 50
	for i := 0; i < n; i += perAppend {
		batch := make([]esdb.EventData, perAppend)
		for j := range batch {
			batch[j] = esdb.EventData{EventID: uuid.New(), EventType: "Big", ContentType: esdb.ContentTypeBinary, Data: make([]byte, 10_000)}
		}
		if _, err := c.AppendToStream(ctx, "burst", esdb.AppendToStreamOptions{}, batch...); err != nil {
			t.Fatalf("append %d while a subscriber stalls: %v", i, err)
		}
	}
	var revs uint64
	for revs < n {
		ev := next(t, sub)
		if ev.EventAppeared != nil {
			if ev.EventAppeared.Event.EventNumber != revs {
				t.Fatalf("slow subscriber got revision %d, want %d", ev.EventAppeared.Event.EventNumber, revs)
			}
			revs++
		}
	}
}

func TestBackupAndIntegrity(t *testing.T) {
	ctx := testCtx(t)
	srv := start(t, "")
	c := connect(t, srv)
	for i := range 50 {
		if _, err := c.AppendToStream(ctx, "order-b", esdb.AppendToStreamOptions{}, event("E", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Keep writing while the backup runs.
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := c.AppendToStream(ctx, "order-b", esdb.AppendToStreamOptions{}, event("E", i)); err != nil {
				done <- err
				return
			}
		}
	}()
	backupDir := t.TempDir()
	err := srv.Backup(ctx, filepath.Join(backupDir, "events.db"))
	close(stop)
	if werr := <-done; werr != nil {
		t.Fatalf("append during backup: %v", werr)
	}
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if err := srv.CheckIntegrity(ctx); err != nil {
		t.Errorf("CheckIntegrity: %v", err)
	}

	restored := start(t, backupDir)
	if err := restored.CheckIntegrity(ctx); err != nil {
		t.Errorf("CheckIntegrity of backup: %v", err)
	}
	live, err := readAllOf(c.ReadAll(ctx, esdb.ReadAllOptions{}, 1_000_000))
	if err != nil {
		t.Fatal(err)
	}
	back, err := readAllOf(connect(t, restored).ReadAll(ctx, esdb.ReadAllOptions{}, 1_000_000))
	if err != nil {
		t.Fatal(err)
	}
	if len(back) < 50 || len(back) > len(live) {
		t.Fatalf("backup holds %d events, live %d; want at least 50 and a prefix", len(back), len(live))
	}
	for i := range back {
		if back[i].Event.EventID != live[i].Event.EventID || back[i].Event.Position != live[i].Event.Position {
			t.Fatalf("backup event %d differs from live $all", i)
		}
	}
}

func TestCloseEndsSubscriptions(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	srv, err := embedded.Start(ctx, embedded.Config{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, srv)
	sub, err := c.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: esdb.End{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if ev := sub.Recv(); ev.CaughtUp == nil {
		t.Fatalf("first event %+v, want caught up", ev)
	}
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	ev := sub.Recv()
	if ev.SubscriptionDropped == nil {
		t.Fatalf("after Close: %+v, want SubscriptionDropped", ev)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Close did not return")
	}
	// The directory is free again.
	again, err := embedded.Start(ctx, embedded.Config{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatalf("restart after Close: %v", err)
	}
	again.Close()
}

func TestStreamSubscriptionDroppedByTombstone(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))
	if _, err := c.AppendToStream(ctx, "order-sd", esdb.AppendToStreamOptions{}, event("E", 0)); err != nil {
		t.Fatal(err)
	}
	sub, err := c.SubscribeToStream(ctx, "order-sd", esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for ev := next(t, sub); ev.CaughtUp == nil; ev = next(t, sub) {
	}
	if _, err := c.TombstoneStream(ctx, "order-sd", esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := sub.Recv()
	// A drop carries the raw gRPC status (the client maps it only on subscribe).
	if ev.SubscriptionDropped == nil || status.Code(ev.SubscriptionDropped.Error) != codes.FailedPrecondition {
		t.Fatalf("after tombstone: %+v, want a drop with FailedPrecondition (stream-deleted)", ev)
	}
	if _, err := c.SubscribeToStream(ctx, "order-sd", esdb.SubscribeToStreamOptions{}); errorCode(err) != esdb.ErrorCodeStreamDeleted {
		t.Errorf("subscribe to tombstoned stream: %v, want StreamDeleted", err)
	}
}

func TestSoftDeleteCorrections(t *testing.T) {
	ctx := testCtx(t)
	c := connect(t, start(t, ""))
	if _, err := c.AppendToStream(ctx, "x", esdb.AppendToStreamOptions{}, event("A", 0), event("B", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteStream(ctx, "x", esdb.DeleteStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	a, b := event("C", 2), event("D", 3)
	first, err := c.AppendToStream(ctx, "x", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, a, b)
	if err != nil || first.NextExpectedVersion != 3 {
		t.Fatalf("NoStream on soft-deleted stream = %+v, %v; want re-created at revision 3", first, err)
	}
	retry, err := c.AppendToStream(ctx, "x", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, a, b)
	if err != nil || *retry != *first {
		t.Errorf("NoStream retry after re-create = %+v, %v; want the original %+v", retry, err, first)
	}
	if n := streamLen(t, c, "x"); n != 2 {
		t.Errorf("stream holds %d visible events, want 2", n)
	}

	// StreamExists is accepted on a stream that only has metadata.
	var m esdb.StreamMetadata
	m.SetMaxCount(10)
	if _, err := c.SetStreamMetadata(ctx, "meta-only", esdb.AppendToStreamOptions{}, m); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppendToStream(ctx, "meta-only", esdb.AppendToStreamOptions{ExpectedRevision: esdb.StreamExists{}}, event("E", 0)); err != nil {
		t.Errorf("StreamExists on a stream with metadata only: %v, want success", err)
	}

	// Soft-deleting a stream that never existed writes nothing.
	before, err := readAllOf(c.ReadAll(ctx, esdb.ReadAllOptions{}, 1000))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteStream(ctx, "never", esdb.DeleteStreamOptions{}); err != nil {
		t.Errorf("delete missing stream with Any: %v", err)
	}
	if _, err := c.DeleteStream(ctx, "never", esdb.DeleteStreamOptions{ExpectedRevision: esdb.StreamExists{}}); err == nil {
		t.Error("delete missing stream with StreamExists succeeded, want wrong expected version")
	}
	after, err := readAllOf(c.ReadAll(ctx, esdb.ReadAllOptions{}, 1000))
	if err != nil || len(after) != len(before) {
		t.Errorf("deleting a missing stream wrote %d records (%v), want none", len(after)-len(before), err)
	}
}

func TestStartRefusesCorruptDatabase(t *testing.T) {
	dir := t.TempDir()
	garbage := make([]byte, 8192)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(dir, "events.db"), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(testCtx(t), embedded.Config{Dir: dir, Logger: quiet})
	if err == nil {
		srv.Close()
		t.Fatal("Start on a corrupt events.db succeeded")
	}
	// The failed start released the directory lock.
	if err := os.WriteFile(filepath.Join(dir, "events.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err = embedded.Start(testCtx(t), embedded.Config{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatalf("Start after the corrupt file was replaced: %v (lock not released?)", err)
	}
	srv.Close()
}
