package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// moduleDir returns the root of the module this tool belongs to.
func moduleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// buildService builds the service binary from the module root dir to bin.
func buildService(ctx context.Context, dir, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -o %s .: %w\n%s", bin, err, out)
	}
	return nil
}

// service is a service process this tool started.
type service struct {
	cmd     *exec.Cmd
	url     string // GraphQL endpoint
	logPath string
	exited  chan struct{}
	waitErr error
}

// startService runs bin on a free loopback port with data as its data
// directory, logging to logPath, and returns once /readyz answers 200.
func startService(ctx context.Context, bin, data, logPath string) (*service, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--addr", addr, "--data", data, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &service{cmd: cmd, url: "http://" + addr + "/graphql", logPath: logPath, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	if err := s.waitReady(ctx, "http://"+addr+"/readyz", time.Minute); err != nil {
		_ = s.stop()
		return nil, fmt.Errorf("%w\nservice log:\n%s", err, s.logTail())
	}
	return s, nil
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the service binds it; the service then fails to start.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *service) waitReady(ctx context.Context, readyz string, limit time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if resp, err := hc.Get(readyz); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.exited:
			return fmt.Errorf("service exited before it was ready: %v", s.waitErr)
		case <-tick.C:
		}
	}
	return fmt.Errorf("service not ready after %v", limit)
}

// stop sends SIGINT and waits for a graceful exit, killing the process if
// it takes longer than 20s.
func (s *service) stop() error {
	select {
	case <-s.exited:
		return s.waitErr
	default:
	}
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		return fmt.Errorf("signal service: %w", err)
	}
	select {
	case <-s.exited:
		return s.waitErr
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("service did not stop within 20s of SIGINT; killed")
	}
}

// logErrors returns the number of error lines in the service's log and
// the first of them.
func (s *service) logErrors() (int, string) {
	b, _ := os.ReadFile(s.logPath)
	n, first := 0, ""
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "level=ERROR") {
			if n == 0 {
				first = strings.TrimSpace(line)
			}
			n++
		}
	}
	return n, first
}

func (s *service) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// client posts GraphQL operations over keep-alive HTTP/1.1 connections.
type client struct {
	url string
	hc  *http.Client
}

func newClient(url string, conns int) *client {
	tr := &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
	}
	return &client{url: url, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// gqlError is the first error of a GraphQL response.
type gqlError struct {
	Message    string
	Extensions struct{ Code string }
}

func (e *gqlError) Error() string {
	if e.Extensions.Code != "" {
		return e.Extensions.Code + ": " + e.Message
	}
	return e.Message
}

// do posts one operation and decodes its data into out; a response with
// errors is an error even when it carries data.
func (c *client) do(ctx context.Context, query string, vars map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return err
	}
	return c.post(ctx, c.url, "application/json", body, func(b []byte) error {
		var resp struct {
			Data   json.RawMessage
			Errors []*gqlError
		}
		if err := json.Unmarshal(b, &resp); err != nil {
			return fmt.Errorf("decode response: %w", err)
		}
		if len(resp.Errors) > 0 {
			return resp.Errors[0]
		}
		if out == nil {
			return nil
		}
		return json.Unmarshal(resp.Data, out)
	})
}

func (c *client) post(ctx context.Context, url, contentType string, body []byte, decode func([]byte) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
	}
	if decode == nil {
		return nil
	}
	return decode(b)
}

// errCounter keeps the number of failed operations and the first failure.
type errCounter struct {
	n     int
	first error
}

func (e *errCounter) add(err error) {
	if e.n == 0 {
		e.first = err
	}
	e.n++
}

func (e *errCounter) merge(o errCounter) {
	if e.n == 0 {
		e.first = o.first
	}
	e.n += o.n
}

func (e errCounter) String() string {
	if e.n == 0 {
		return "0 errors"
	}
	return fmt.Sprintf("%d errors, first: %v", e.n, e.first)
}
