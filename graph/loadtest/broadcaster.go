package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// broadcasterEnv, when set, makes this program the baseline broadcaster
// instead of the load tool. The tool runs it as a child process so that,
// like the service, it does not share the Go scheduler with the clients
// that measure it.
const broadcasterEnv = "ORDERTRAIL_LOADTEST_BROADCASTER"

// broadcasterMain serves the baseline on a loopback port, prints that
// address on stdout and runs until SIGINT or SIGTERM, or until its stdin
// closes: the tool holds it open, so a killed tool leaves no broadcaster
// behind.
func broadcasterMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "broadcaster:", err)
		return 1
	}
	b := &broadcaster{conns: map[chan []byte]struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", b.serveWS)
	mux.HandleFunc("POST /broadcast", b.serveBroadcast)
	srvCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: mux, BaseContext: func(net.Listener) context.Context { return srvCtx }}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println(ln.Addr().String())
	<-ctx.Done()
	cancel() // ends the websocket handlers, which Shutdown does not track
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	b.handlers.Wait()
	return 0
}

// broadcaster is the baseline: the least a Go websocket server must do to
// push one message to many connections, one writer goroutine per
// connection fed through a buffered channel.
type broadcaster struct {
	mu       sync.Mutex
	conns    map[chan []byte]struct{}
	handlers sync.WaitGroup
}

func (b *broadcaster) serveWS(w http.ResponseWriter, r *http.Request) {
	b.handlers.Add(1)
	defer b.handlers.Done()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := c.CloseRead(r.Context())
	ch := make(chan []byte, 16)
	b.mu.Lock()
	b.conns[ch] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.conns, ch)
		b.mu.Unlock()
	}()
	for range maxMessages {
		select {
		case <-ctx.Done():
			return
		case msg := <-ch:
			if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
				return
			}
		}
	}
}

// serveBroadcast sends the request body to every connection, dropping it
// for a connection 16 messages behind.
func (b *broadcaster) serveBroadcast(w http.ResponseWriter, r *http.Request) {
	msg, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	for ch := range b.conns {
		select {
		case ch <- msg:
		default:
		}
	}
	b.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// broadcasterProc is a running broadcaster child process.
type broadcasterProc struct {
	cmd     *exec.Cmd
	wsURL   string
	postURL string
	exited  chan struct{}
	waitErr error
}

// startBroadcaster runs this program again as the broadcaster and returns
// once it listens.
func startBroadcaster(ctx context.Context) (*broadcasterProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), broadcasterEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if _, err := cmd.StdinPipe(); err != nil { // closed when this process ends
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start broadcaster: %w", err)
	}
	p := &broadcasterProc{cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, out)
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	select {
	case a := <-addr:
		if a == "" {
			_ = p.stop()
			return nil, fmt.Errorf("broadcaster exited before listening: %v", p.waitErr)
		}
		p.wsURL, p.postURL = "ws://"+a+"/ws", "http://"+a+"/broadcast"
		return p, nil
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	_ = p.stop()
	return nil, fmt.Errorf("broadcaster did not start listening")
}

// stop sends SIGINT and waits, killing the process after 10s.
func (p *broadcasterProc) stop() error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("broadcaster did not stop within 10s of SIGINT; killed")
	}
}
