package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The process-level tests (end to end, replicas, projections) share one
// build of the service binary and these helpers.

var serviceBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// TestMain removes the shared service binary after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if serviceBuild.dir != "" {
		os.RemoveAll(serviceBuild.dir)
	}
	os.Exit(code)
}

// serviceBinary builds the service once per test run and returns its path.
func serviceBinary(t *testing.T) string {
	t.Helper()
	serviceBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "ordertrail-test-bin-")
		if err != nil {
			serviceBuild.err = err
			return
		}
		serviceBuild.dir, serviceBuild.bin = dir, filepath.Join(dir, "ordertrail")
		if out, err := exec.Command("go", "build", "-o", serviceBuild.bin, ".").CombinedOutput(); err != nil {
			serviceBuild.err = fmt.Errorf("go build -o %s .: %v\n%s", serviceBuild.bin, err, out)
		}
	})
	if serviceBuild.err != nil {
		t.Fatal(serviceBuild.err)
	}
	return serviceBuild.bin
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// cleanEnv is the test's environment without ORDERTRAIL_* settings, so a
// developer's configuration (tokens, an external event store) does not
// leak into the processes a test starts.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ORDERTRAIL_") {
			env = append(env, kv)
		}
	}
	return env
}

// procLog collects a process's output, safe for its writers and the test.
type procLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *procLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *procLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lastLines returns the last n lines of the log.
func (l *procLog) lastLines(n int) string {
	lines := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// lastBytes returns at most the last n bytes of the log.
func (l *procLog) lastBytes(n int) string {
	s := l.String()
	return s[max(0, len(s)-n):]
}

// TestDebugEndpoints checks that --debug-addr serves the profiling
// endpoints on their own listener and that the API's listener does not.
func TestDebugEndpoints(t *testing.T) {
	debugAddr := freeAddr(t)
	svc := e2eStart(t, serviceBinary(t), filepath.Join(t.TempDir(), "data"), "--debug-addr", debugAddr)
	defer svc.stop(t)
	get := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if code := get("http://" + debugAddr + "/debug/pprof/cmdline"); code != http.StatusOK {
		t.Errorf("GET /debug/pprof/cmdline on --debug-addr: %d, want 200", code)
	}
	if code := get(svc.url + "/debug/pprof/cmdline"); code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/cmdline on the API address: %d, want 404", code)
	}
}
