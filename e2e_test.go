package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// e2eDir holds the Node clients (Apollo Client, subscriptions-transport-ws,
// Playwright) and their package-lock.json.
var e2eDir = filepath.Join("graph", "testdata", "e2e")

// e2eChromium is Debian's chromium package, which ide.mjs drives.
const e2eChromium = "/usr/bin/chromium"

// TestEndToEnd builds the service, runs it on a loopback port with a fresh
// data directory, and drives it with real clients: Apollo Client over HTTP
// and graphql-transport-ws, the legacy graphql-ws protocol, and the GraphiQL
// IDE in headless Chromium. It then stops the service with SIGINT, starts it
// again on the same data and checks that the orders are still there. The
// auth subtest runs a second instance with --tokens.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds the binary and runs Node clients; skipped with -short")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("end-to-end tests need Node.js ≥ 20 on PATH (node: %v); install it or run with -short", err)
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatalf("end-to-end tests need npm on PATH to install %s (npm: %v); install it or run with -short", e2eDir, err)
	}
	e2eInstall(t)

	tmp := t.TempDir()
	bin := serviceBinary(t)
	data := filepath.Join(tmp, "data")

	svc := e2eStart(t, bin, data)
	t.Run("apollo", func(t *testing.T) { e2eRunNode(t, node, "apollo.mjs", svc.url) })
	t.Run("legacy", func(t *testing.T) { e2eRunNode(t, node, "legacy.mjs", svc.url) })
	t.Run("ide", func(t *testing.T) {
		if _, err := os.Stat(e2eChromium); err != nil {
			t.Skipf("%s not found (apt-get install chromium fonts-liberation; .ci/run installs it): %v", e2eChromium, err)
		}
		e2eRunNode(t, node, "ide.mjs", svc.url, filepath.Join(tmp, "ide.png"))
	})
	t.Run("auth", func(t *testing.T) {
		// A second instance with its own data, started with --tokens.
		const token = "e2e-secret-token"
		authSvc := e2eStart(t, bin, filepath.Join(tmp, "data-auth"), "--tokens", token)
		e2eRunNode(t, node, "auth.mjs", authSvc.url, token)
		authSvc.stop(t)
	})

	// Persistence: what was written before a graceful stop is there after a restart.
	var created struct {
		CreateOrder struct {
			Order    struct{ ID string }
			Position string
		}
	}
	svc.do(t, `mutation { createOrder(input: {customerId: "c-restart", currency: "EUR",
		items: [{sku: "R-1", quantity: 2, unitPrice: "4.20"}]}) { order { id } position } }`, nil, &created)
	const ordersQuery = `query($p: Position) { orders(first: 100, filter: {customerId: "c-1"}, minPosition: $p) { edges { node { id status version } } } }`
	var before, after json.RawMessage
	svc.do(t, ordersQuery, map[string]any{"p": created.CreateOrder.Position}, &before)
	svc.stop(t)

	svc = e2eStart(t, bin, data)
	var got struct {
		Order *struct {
			ID      string
			Status  string
			Total   struct{ Amount, Currency string }
			Version int
			History []struct{ Type string }
		}
	}
	svc.do(t, `query($id: ID!, $p: Position) { order(id: $id, minPosition: $p) {
		id status total { amount currency } version history { type } } }`,
		map[string]any{"id": created.CreateOrder.Order.ID, "p": created.CreateOrder.Position}, &got)
	switch o := got.Order; {
	case o == nil:
		t.Errorf("after restart: order(id: %q) is null", created.CreateOrder.Order.ID)
	case o.Status != "OPEN" || o.Total.Amount != "8.40" || o.Total.Currency != "EUR" || o.Version != 1 ||
		len(o.History) != 1 || o.History[0].Type != "OrderCreated":
		t.Errorf("after restart: order = %+v, want OPEN, 8.40 EUR, version 1, history [OrderCreated]", *o)
	}
	svc.do(t, ordersQuery, map[string]any{"p": created.CreateOrder.Position}, &after)
	if !bytes.Equal(before, after) {
		t.Errorf("after restart: customer c-1's orders changed\nbefore: %s\nafter:  %s", before, after)
	}
	svc.stop(t)
}

// e2eInstall runs `npm ci` when node_modules is missing.
func e2eInstall(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(e2eDir, "node_modules")); err == nil {
		return
	}
	start := time.Now()
	cmd := exec.CommandContext(t.Context(), "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = e2eDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", e2eDir, err, out)
	}
	t.Logf("npm ci in %s took %v", e2eDir, time.Since(start).Round(time.Millisecond))
}

// e2eRunNode runs one client script against the service; the script prints a
// line per passed step and exits non-zero with the failed assertion.
func e2eRunNode(t *testing.T, node, script string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Dir = e2eDir
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("node %s (%v):\n%s", script, time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Errorf("node %s %s: %v", script, strings.Join(args, " "), err)
	}
}

// e2eService is one running ordertrail process.
type e2eService struct {
	url    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	log    *procLog
}

// e2eStart starts the binary on a free loopback port, with extra flags
// appended, and waits until /healthz answers 200. The process is killed at
// the end of the test if stop was not called.
func e2eStart(t *testing.T, bin, data string, extra ...string) *e2eService {
	t.Helper()
	addr := freeAddr(t)
	s := &e2eService{url: "http://" + addr, exited: make(chan struct{}), log: new(procLog)}
	s.cmd = exec.Command(bin, append([]string{"--addr", addr, "--data", data}, extra...)...)
	s.cmd.Env = cleanEnv()
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("service log (%s):\n%s", addr, s.log.String())
		}
	})

	// A separate process: poll its health endpoint until a deadline.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("service exited before /healthz answered (%v):\n%s", s.cmd.ProcessState, s.log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s/healthz: no 200 within 30s (last error: %v):\n%s", s.url, err, s.log.String())
		}
	}
}

// stop sends SIGINT and expects a clean exit within 15 seconds.
func (s *e2eService) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("SIGINT: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("service did not exit within 15s of SIGINT:\n%s", s.log.String())
	}
	if !s.cmd.ProcessState.Success() {
		t.Errorf("service exited with %v after SIGINT, want status 0:\n%s", s.cmd.ProcessState, s.log.String())
	}
}

// do POSTs a GraphQL operation and decodes its data into out; any error fails.
func (s *e2eService) do(t *testing.T, query string, vars map[string]any, out any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	resp, err := http.Post(s.url+"/graphql", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	var r struct {
		Data   json.RawMessage
		Errors []json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("POST /graphql: HTTP %d, decode: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("POST /graphql %s: HTTP %d, errors %s", query, resp.StatusCode, r.Errors)
	}
	if err := json.Unmarshal(r.Data, out); err != nil {
		t.Fatalf("POST /graphql: data %s: %v", r.Data, err)
	}
}
