package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/goccy/go-yaml"
)

// No Docker engine runs the tests, so these check what can be checked
// without one: that the Dockerfile and compose.yaml agree with each other
// and with the flags and variables the binary actually has.

// TestDockerfile checks the image's stages, user, ports, entrypoint and the
// flags its CMD passes.
func TestDockerfile(t *testing.T) {
	df := parseDockerfile(t, "Dockerfile")
	help := usage(t, "serve")

	froms := df.all("FROM")
	if len(froms) != 2 {
		t.Fatalf("Dockerfile has %d FROM lines, want 2 (builder, runtime): %q", len(froms), froms)
	}
	if f := strings.Fields(froms[0]); len(f) != 3 || !strings.HasPrefix(f[0], "golang:1.26") || !strings.EqualFold(f[1], "AS") {
		t.Errorf("builder stage = FROM %s, want FROM golang:1.26… AS <name>", froms[0])
	}
	builder := strings.Fields(froms[0])[2]
	if froms[1] != "debian:bookworm-slim" {
		t.Errorf("runtime stage = FROM %s, want debian:bookworm-slim", froms[1])
	}
	// cgo links against glibc: the builder must not be newer Debian than
	// the runtime.
	if strings.Contains(froms[0], "trixie") || strings.Contains(froms[0], "alpine") {
		t.Errorf("builder %s does not match the bookworm runtime's libc", froms[0])
	}

	toolchain := goModToolchain(t)
	env := strings.Join(df.all("ENV"), " ")
	for _, want := range []string{"GOTOOLCHAIN=" + toolchain, "CGO_ENABLED=1"} {
		if !strings.Contains(env, want) {
			t.Errorf("Dockerfile ENV %q lacks %s", env, want)
		}
	}
	var build string
	for _, r := range df.all("RUN") {
		if strings.Contains(r, "go build") {
			build = r
		}
	}
	for _, want := range []string{"-trimpath", `-ldflags="-s -w"`} {
		if !strings.Contains(build, want) {
			t.Errorf("go build line %q lacks %s", build, want)
		}
	}

	entry := df.execForm(t, "ENTRYPOINT")
	if len(entry) != 1 {
		t.Fatalf("ENTRYPOINT = %q, want the binary alone", entry)
	}
	copied := false
	for _, c := range df.all("COPY") {
		f := strings.Fields(c)
		if len(f) == 3 && f[0] == "--from="+builder && f[2] == entry[0] {
			copied = true
		}
	}
	if !copied {
		t.Errorf("no COPY --from=%s … %s: the ENTRYPOINT binary does not come from the builder", builder, entry[0])
	}

	if u := df.last("USER"); u == "" || u == "root" || strings.HasPrefix(u, "0:") || u == "0" {
		t.Errorf("USER = %q, want a non-root user", u)
	}

	cmd := df.execForm(t, "CMD")
	if len(cmd) == 0 || cmd[0] != "serve" {
		t.Fatalf("CMD = %q, want serve and its flags", cmd)
	}
	flags := map[string]string{}
	for i := 1; i < len(cmd); i += 2 {
		name := strings.TrimLeft(cmd[i], "-")
		if !strings.Contains(help, "\n  -"+name+" ") {
			t.Errorf("CMD passes %s, which `ordertrail serve --help` does not list", cmd[i])
		}
		if i+1 < len(cmd) {
			flags[name] = cmd[i+1]
		}
	}
	_, port, err := net.SplitHostPort(flags["addr"])
	if err != nil || !strings.HasPrefix(flags["addr"], "0.0.0.0:") {
		t.Errorf("CMD --addr %q, want 0.0.0.0:PORT so the port is reachable from outside the container", flags["addr"])
	}
	if expose := df.last("EXPOSE"); expose != port {
		t.Errorf("EXPOSE %s, but CMD listens on port %s", expose, port)
	}
	if v := df.last("VOLUME"); v != flags["data"] || v == "" {
		t.Errorf("VOLUME %s, but CMD --data is %q", v, flags["data"])
	}

	hc := df.last("HEALTHCHECK")
	_, hcCmd, ok := strings.Cut(hc, "CMD ")
	var probe []string
	if !ok || json.Unmarshal([]byte(hcCmd), &probe) != nil || len(probe) == 0 {
		t.Fatalf("HEALTHCHECK %q, want exec form CMD [\"tool\", …]", hc)
	}
	if want := "http://127.0.0.1:" + port + "/healthz"; !slices.Contains(probe, want) {
		t.Errorf("HEALTHCHECK runs %q, want it to fetch %s", probe, want)
	}
	installed := false
	for _, r := range df.all("RUN") {
		if strings.Contains(r, "apt-get install") && regexp.MustCompile(`\b`+regexp.QuoteMeta(probe[0])+`\b`).MatchString(r) {
			installed = true
		}
	}
	if !installed {
		t.Errorf("HEALTHCHECK runs %s, which no RUN apt-get install puts in the image", probe[0])
	}
}

// composeFile is the part of compose.yaml the test checks.
type composeFile struct {
	Services map[string]struct {
		Image       string
		Build       any
		Command     []string
		Environment map[string]string
		Ports       []string
		Volumes     []string
		DependsOn   map[string]struct{ Condition string } `yaml:"depends_on"`
		Healthcheck struct{ Test []string }
	}
	Volumes map[string]any
}

// TestCompose checks the wiring of compose.yaml: a real EventStoreDB node,
// the service built from the Dockerfile and pointed at it, health checks,
// start order and named volumes.
func TestCompose(t *testing.T) {
	raw, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	es, ok := c.Services["eventstore"]
	if !ok {
		t.Fatal("compose.yaml has no eventstore service")
	}
	if es.Image != "eventstore/eventstore:24.10" {
		t.Errorf("eventstore image = %q, want eventstore/eventstore:24.10", es.Image)
	}
	for k, want := range map[string]string{
		"EVENTSTORE_INSECURE": "true", "EVENTSTORE_RUN_PROJECTIONS": "All", "EVENTSTORE_ENABLE_ATOM_PUB_OVER_HTTP": "true",
	} {
		if got := es.Environment[k]; got != want {
			t.Errorf("eventstore %s = %q, want %q", k, got, want)
		}
	}
	if len(es.Healthcheck.Test) == 0 {
		t.Error("eventstore has no healthcheck, so service_healthy can never hold")
	}

	api, ok := c.Services["ordertrail"]
	if !ok {
		t.Fatal("compose.yaml has no ordertrail service")
	}
	if api.Build == nil {
		t.Error("ordertrail is not built from the Dockerfile (no build:)")
	}
	if d, ok := api.DependsOn["eventstore"]; !ok || d.Condition != "service_healthy" {
		t.Errorf("ordertrail depends_on = %+v, want eventstore with condition service_healthy", api.DependsOn)
	}
	if len(api.Healthcheck.Test) == 0 {
		t.Error("ordertrail has no healthcheck")
	}

	// The connection string names the node's service and gRPC port, and
	// turns TLS off exactly when the node runs insecure.
	conn := api.Environment["ORDERTRAIL_EVENTSTORE"]
	cfg, err := esdb.ParseConnectionString(conn)
	if err != nil {
		t.Fatalf("ORDERTRAIL_EVENTSTORE %q: %v", conn, err)
	}
	if cfg.Address != "eventstore:2113" {
		t.Errorf("ORDERTRAIL_EVENTSTORE points at %s, want the eventstore service on 2113", cfg.Address)
	}
	if cfg.DisableTLS != (es.Environment["EVENTSTORE_INSECURE"] == "true") {
		t.Errorf("ORDERTRAIL_EVENTSTORE has TLS disabled = %v, but EVENTSTORE_INSECURE = %q", cfg.DisableTLS, es.Environment["EVENTSTORE_INSECURE"])
	}

	// Every variable is one the binary reads, and the command does not pass
	// flags that would override them.
	if len(api.Command) != 1 || api.Command[0] != "serve" {
		t.Errorf("ordertrail command = %q, want [serve] so the environment settings are not overridden by the image's CMD flags", api.Command)
	}
	help := usage(t, "serve")
	for k := range api.Environment {
		if !strings.Contains(help, "($"+k+")") {
			t.Errorf("ordertrail sets %s, which `ordertrail serve --help` does not list", k)
		}
	}
	df := parseDockerfile(t, "Dockerfile")
	_, port, err := net.SplitHostPort(api.Environment["ORDERTRAIL_ADDR"])
	if err != nil || port != df.last("EXPOSE") {
		t.Errorf("ORDERTRAIL_ADDR %q, want a port equal to the Dockerfile's EXPOSE %s", api.Environment["ORDERTRAIL_ADDR"], df.last("EXPOSE"))
	}
	if !slices.ContainsFunc(api.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port) }) {
		t.Errorf("ordertrail ports %q publish no host port for %s", api.Ports, port)
	}
	if !slices.ContainsFunc(api.Healthcheck.Test, func(s string) bool {
		u, err := url.Parse(s)
		return err == nil && u.Port() == port && (u.Path == "/healthz" || u.Path == "/readyz")
	}) {
		t.Errorf("ordertrail healthcheck %q does not fetch /healthz or /readyz on port %s", api.Healthcheck.Test, port)
	}

	// Data lives in named volumes, declared at the top level.
	for name, mount := range map[string]string{"eventstore": "/var/lib/eventstore", "ordertrail": api.Environment["ORDERTRAIL_DATA"]} {
		found := false
		for _, v := range c.Services[name].Volumes {
			src, dst, _ := strings.Cut(v, ":")
			if dst == mount {
				found = true
				if _, declared := c.Volumes[src]; !declared {
					t.Errorf("%s mounts %s at %s, which is not a named volume declared under volumes:", name, src, dst)
				}
			}
		}
		if !found || mount == "" {
			t.Errorf("%s has no volume at %q", name, mount)
		}
	}
	if d := api.Environment["ORDERTRAIL_DATA"]; d != df.last("VOLUME") {
		t.Errorf("ORDERTRAIL_DATA %q, but the image's VOLUME is %s", d, df.last("VOLUME"))
	}
}

// usage returns the flag help of a subcommand as `ordertrail CMD --help`
// prints it.
func usage(t *testing.T, cmd string) string {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), []string{cmd, "--help"}, func(string) string { return "" }, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("ordertrail %s --help: %v, want flag.ErrHelp", cmd, err)
	}
	return out.String()
}

// goModToolchain returns the go.mod toolchain line's version (go1.x.y).
func goModToolchain(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^toolchain\s+(\S+)`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("go.mod has no toolchain line")
	}
	return string(m[1])
}

// dockerfile is a Dockerfile's instructions in order, with continuation
// lines joined and comments dropped.
type dockerfile []struct{ op, args string }

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var df dockerfile
	var cur string
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		cur += trimmed
		op, args, _ := strings.Cut(cur, " ")
		df = append(df, struct{ op, args string }{strings.ToUpper(op), strings.Join(strings.Fields(args), " ")})
		cur = ""
	}
	return df
}

// all returns the arguments of every instruction op.
func (df dockerfile) all(op string) []string {
	var out []string
	for _, in := range df {
		if in.op == op {
			out = append(out, in.args)
		}
	}
	return out
}

// last returns the arguments of the last instruction op, the one in effect.
func (df dockerfile) last(op string) string {
	all := df.all(op)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1]
}

// execForm returns the JSON array of the last instruction op.
func (df dockerfile) execForm(t *testing.T, op string) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(df.last(op)), &v); err != nil {
		t.Fatalf("%s %s: want exec form (a JSON array): %v", op, df.last(op), err)
	}
	return v
}
