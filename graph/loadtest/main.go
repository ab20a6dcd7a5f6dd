// Command loadtest measures the service's speed goals, each against a
// baseline measured in the same run on the same machine:
//
//   - createOrder throughput from concurrent clients, against the embedded
//     event store appending the same events from as many writers;
//   - p99 latency of order(id:) and orders(first: 20), against the same
//     server answering { __typename }, which touches no storage;
//   - p99 delivery latency of one change to many orderChanged subscribers,
//     from sending the createOrder that makes it to its receipt, against a
//     minimal websocket broadcaster (this program, run as a child process)
//     sending a message of the same size, timed from sending its trigger.
//
// Each figure is the median over -rounds rounds. Without -url the tool
// builds the service, runs it on a loopback port with a temporary data
// directory and stops it with SIGINT at the end.
//
//	go run ./graph/loadtest [-url http://127.0.0.1:8080/graphql] [-duration 5s] [-rounds 3] [-clients 32] [-subscribers 1000]
//
// It prints one table line per figure, with PASS or FAIL against its goal,
// and exits non-zero only when the tool itself could not measure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	if os.Getenv(broadcasterEnv) != "" {
		os.Exit(broadcasterMain())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
		}
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	url         string
	duration    time.Duration
	rounds      int
	clients     int
	subscribers int
	changes     int
	stderr      io.Writer
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.url, "url", "", "GraphQL endpoint of a running service on loopback (http://127.0.0.1:PORT/graphql); empty: build and start one")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "length of each timed phase in each round")
	fs.IntVar(&c.rounds, "rounds", 3, "rounds per figure; the figure is their median")
	fs.IntVar(&c.clients, "clients", 32, "concurrent HTTP clients")
	fs.IntVar(&c.subscribers, "subscribers", 1000, "concurrent orderChanged subscribers (and baseline websocket clients)")
	fs.IntVar(&c.changes, "changes", 3, "changes broadcast to all subscribers per round")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	switch {
	case c.duration <= 0 || c.duration > 10*time.Minute:
		return c, fmt.Errorf("-duration %v: want (0, 10m]", c.duration)
	case c.rounds < 1 || c.rounds > 100:
		return c, fmt.Errorf("-rounds %d: want 1..100", c.rounds)
	case c.clients < 1 || c.clients > 1000:
		return c, fmt.Errorf("-clients %d: want 1..1000", c.clients)
	case c.subscribers < 1 || c.subscribers > 5000:
		return c, fmt.Errorf("-subscribers %d: want 1..5000", c.subscribers)
	case c.changes < 1 || c.changes > 100:
		return c, fmt.Errorf("-changes %d: want 1..100", c.changes)
	}
	if c.url != "" {
		if err := checkLoopback(c.url); err != nil {
			return c, err
		}
	}
	c.stderr = stderr
	return c, nil
}

// checkLoopback keeps the load on this machine: a load test pointed at a
// shared host by mistake is an outage.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("-url %q: want http://127.0.0.1:PORT/graphql", raw)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-url %q: the host must be a loopback IP such as 127.0.0.1", raw)
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	raiseFileLimit(cfg.subscribers*3+cfg.clients+256, stderr)

	tmp, err := os.MkdirTemp("", "ordertrail-loadtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	if cfg.url == "" {
		dir, err := moduleDir(ctx)
		if err != nil {
			return err
		}
		bin := filepath.Join(tmp, "ordertrail")
		fmt.Fprintf(stderr, "building the service in %s\n", dir)
		if err := buildService(ctx, dir, bin); err != nil {
			return err
		}
		svc, err := startService(ctx, bin, filepath.Join(tmp, "data"), filepath.Join(tmp, "service.log"))
		if err != nil {
			return err
		}
		defer func() {
			if err := svc.stop(); err != nil {
				fmt.Fprintln(stderr, "stop service:", err)
			}
			if n, first := svc.logErrors(); n > 0 {
				fmt.Fprintf(stderr, "service logged %d errors, first: %s\n", n, first)
			}
		}()
		cfg.url = svc.url
		fmt.Fprintf(stderr, "service started at %s (pid %d)\n", svc.url, svc.cmd.Process.Pid)
	}

	figs, err := measureAll(ctx, cfg, tmp)
	if err != nil {
		return err
	}
	printTable(stdout, figs)
	return nil
}

// measureAll runs the three goals in order: the orders created by the
// first are what the second reads.
func measureAll(ctx context.Context, cfg config, tmp string) ([]figure, error) {
	gql := newClient(cfg.url, cfg.clients+8)
	defer gql.close()

	wr, err := measureWrites(ctx, cfg, gql, filepath.Join(tmp, "baseline-store"))
	if err != nil {
		return nil, fmt.Errorf("createOrder throughput: %w", err)
	}
	rd, err := measureReads(ctx, cfg, gql, wr.ids)
	if err != nil {
		return nil, fmt.Errorf("read latency: %w", err)
	}
	lv, err := measureLive(ctx, cfg, gql)
	if err != nil {
		return nil, fmt.Errorf("subscription delivery: %w", err)
	}
	return []figure{
		{name: fmt.Sprintf("createOrder throughput, %d clients", cfg.clients), unit: "/s",
			value: wr.rate, base: wr.baseRate, baseName: "embedded store append", atLeast: true, goal: 0.3},
		{name: fmt.Sprintf("order(id:) p99, %d clients", cfg.clients), unit: "ms",
			value: rd.order, base: rd.typename, baseName: "{ __typename }", goal: 3},
		{name: fmt.Sprintf("orders(first: 20) p99, %d clients", cfg.clients), unit: "ms",
			value: rd.orders, base: rd.typename, baseName: "{ __typename }", goal: 6},
		{name: fmt.Sprintf("orderChanged delivery p99, %d subscribers", cfg.subscribers), unit: "ms",
			value: lv.p99, base: lv.baseP99, baseName: "plain websocket broadcast", goal: 3},
	}, nil
}

// figure is one line of the result table.
type figure struct {
	name, unit, baseName string
	value, base          float64
	atLeast              bool    // goal is ratio ≥ goal (throughput); otherwise ratio ≤ goal
	goal                 float64 // on value/base
}

func (f figure) ratio() float64 {
	if f.base == 0 {
		return 0
	}
	return f.value / f.base
}

func (f figure) pass() bool {
	r := f.ratio()
	if f.base == 0 || f.value == 0 {
		return false
	}
	if f.atLeast {
		return r >= f.goal
	}
	return r <= f.goal
}

func printTable(w io.Writer, figs []figure) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\tbaseline\tratio\tgoal\tresult")
	for _, f := range figs {
		op := "<="
		if f.atLeast {
			op = ">="
		}
		res := "FAIL"
		if f.pass() {
			res = "PASS"
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s %s (%s)\t%.2f\t%s %g\t%s\n",
			f.name, num(f.value), f.unit, num(f.base), f.unit, f.baseName, f.ratio(), op, f.goal, res)
	}
	tw.Flush()
}

func num(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// raiseFileLimit lifts the soft open-file limit towards the hard one: every
// websocket costs this process one descriptor, and the baseline two.
func raiseFileLimit(want int, stderr io.Writer) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(stderr, "getrlimit:", err)
		return
	}
	if lim.Cur >= uint64(want) {
		return
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(stderr, "setrlimit:", err)
	}
	if lim.Cur < uint64(want) {
		fmt.Fprintf(stderr, "warning: open-file limit %d is below the %d this run needs\n", lim.Cur, want)
	}
}
