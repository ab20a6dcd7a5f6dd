package embedded_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/ordertrail/ordertrail/eventing/storetest"
)

// TestNodeClientInterop runs testdata/nodeclient/interop.mjs, which uses
// the official Node client @eventstore/db-client 6.2.1, against the
// embedded store: it reads an event Go wrote, appends, reads and subscribes,
// and exits non-zero on any mismatch. Go then reads what Node wrote.
func TestNodeClientInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("node interop skipped in -short mode")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; the Node client interop test needs Node >= 20")
	}
	dir := filepath.Join("testdata", "nodeclient")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@eventstore", "db-client")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Skip("npm is not installed and testdata/nodeclient/node_modules is missing")
		}
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}

	srv := startServer(t, t.TempDir())
	c := storetest.NewClient(t, srv.ConnectionString())
	prefix := "interop" + strings.ReplaceAll(uuid.NewString(), "-", "")
	goEvent := esdb.EventData{
		EventID:     uuid.New(),
		EventType:   "GoOrderPlaced",
		ContentType: esdb.ContentTypeJson,
		Data:        []byte(`{"orderId":"o-1","lines":[{"sku":"A","qty":2}],"total":12.5}`),
	}
	if _, err := c.AppendToStream(ctx, prefix+"-go", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, goEvent); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(ctx, node, "interop.mjs", srv.ConnectionString(), prefix,
		goEvent.EventID.String(), goEvent.EventType, string(goEvent.Data))
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node interop.mjs: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	var result struct {
		NodeIDs []uuid.UUID `json:"nodeIds"`
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last, ok := strings.CutPrefix(lines[len(lines)-1], "RESULT ")
	if !ok || json.Unmarshal([]byte(last), &result) != nil || len(result.NodeIDs) != 5 {
		t.Fatalf("node interop.mjs printed no valid RESULT line:\n%s", out)
	}

	// What Node appended reads back in Go with the right type and data.
	rs, err := c.ReadStream(ctx, prefix+"-node", esdb.ReadStreamOptions{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for i, id := range result.NodeIDs {
		ev, err := rs.Recv()
		if err != nil {
			t.Fatalf("read event %d of %s-node: %v", i, prefix, err)
		}
		o := ev.OriginalEvent()
		var data struct {
			OrderID string `json:"orderId"`
			N       int    `json:"n"`
		}
		if err := json.Unmarshal(o.Data, &data); err != nil {
			t.Fatalf("event %d data %q: %v", i, o.Data, err)
		}
		if o.EventID != id || o.EventNumber != uint64(i) || o.EventType != "NodeOrderPlaced" || o.ContentType != "application/json" ||
			data.OrderID != prefix+"-order" || data.N != i || string(o.UserMetadata) != `{"by":"node"}` {
			t.Fatalf("event %d written by Node reads as %s@%d id=%s type=%q content-type=%q data=%s meta=%s",
				i, o.StreamID, o.EventNumber, o.EventID, o.EventType, o.ContentType, o.Data, o.UserMetadata)
		}
	}
}
