package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets the test binary serve as the baseline broadcaster, which
// the tool runs as a copy of its own executable.
func TestMain(m *testing.M) {
	if os.Getenv(broadcasterEnv) != "" {
		os.Exit(broadcasterMain())
	}
	os.Exit(m.Run())
}

// TestLoadTestRuns builds the service, starts it on a free loopback port
// with a fresh data directory, runs every measurement against it in a tiny
// configuration and stops it with SIGINT: the figures are not checked, only
// that the tool still measures all of them.
func TestLoadTestRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: builds and runs the service; skipped with -short")
	}
	dir, err := moduleDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "ordertrail")
	if err := buildService(t.Context(), dir, bin); err != nil {
		t.Fatal(err)
	}
	svc, err := startService(t.Context(), bin, filepath.Join(tmp, "data"), filepath.Join(tmp, "service.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := svc.stop(); err != nil {
			t.Errorf("stop service: %v\n%s", err, svc.logTail())
		}
	}()

	var stdout, stderr bytes.Buffer
	args := []string{"-url", svc.url, "-duration", "300ms", "-rounds", "1", "-clients", "2", "-subscribers", "5", "-changes", "1"}
	if err := run(t.Context(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run %v: %v\nstderr:\n%s\nservice log:\n%s", args, err, stderr.String(), svc.logTail())
	}
	out := stdout.String()
	for _, name := range []string{"createOrder throughput", "order(id:) p99", "orders(first: 20) p99", "orderChanged delivery p99"} {
		if !strings.Contains(out, name) {
			t.Errorf("output has no %q line:\n%s", name, out)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("stdout:\n%s\nstderr:\n%s", out, stderr.String())
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080/graphql", true},
		{"http://[::1]:8080/graphql", true},
		{"http://10.0.0.1:8080/graphql", false},
		{"http://example.com/graphql", false},
		{"https://127.0.0.1/graphql", false},
	} {
		if err := checkLoopback(tc.url); (err == nil) != tc.ok {
			t.Errorf("checkLoopback(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}
