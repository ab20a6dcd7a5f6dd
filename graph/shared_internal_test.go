package graph

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// subscriber drives sharedResults as gqlgen's response loop does for one
// subscription: its feed yields the positions given, and its execution
// writes "data@POS" into one buffer reused for every response, as the
// generated code does.
type subscriber struct {
	ctx      context.Context
	pos      []uint64
	buf      bytes.Buffer
	executed int
	fail     map[uint64]bool // positions whose execution returns an error
	execute  graphql.ResponseHandler
}

func newSubscriber(op string, pos ...uint64) *subscriber {
	s := &subscriber{pos: pos, fail: map[uint64]bool{}}
	f := &feed{op: sha256.Sum256([]byte(op))}
	s.ctx = context.WithValue(context.Background(), feedKey{}, f)
	var pending uint64
	ended := false
	f.next = func(context.Context) (uint64, func(), bool) {
		if len(s.pos) == 0 {
			ended = true // gqlgen then finds its channel closed
			return 0, nil, false
		}
		p := s.pos[0]
		s.pos = s.pos[1:]
		return p, func() { pending = p }, true
	}
	s.execute = func(context.Context) *graphql.Response {
		if ended {
			return nil
		}
		s.executed++
		if s.fail[pending] {
			return &graphql.Response{Errors: gqlerror.List{gqlerror.Errorf("failed at %d", pending)}}
		}
		s.buf.Reset()
		fmt.Fprintf(&s.buf, "data@%d", pending)
		return &graphql.Response{Data: s.buf.Bytes()}
	}
	return s
}

func (s *subscriber) respond(t *testing.T, shared *sharedResults) string {
	t.Helper()
	resp := shared.InterceptResponse(s.ctx, s.execute)
	if resp == nil {
		return "<end>"
	}
	if len(resp.Errors) > 0 {
		return "<error>"
	}
	return string(resp.Data)
}

func TestSharedResults(t *testing.T) {
	shared := newSharedResults()
	a := newSubscriber("op", 1, 2, 3)
	b := newSubscriber("op", 1, 2, 3)
	c := newSubscriber("other op", 1)
	a.fail[3] = true

	first := a.respond(t, shared)
	fromB := shared.InterceptResponse(b.ctx, b.execute)
	second := a.respond(t, shared) // overwrites a's buffer
	if first != "data@1" || second != "data@2" || fromB == nil || string(fromB.Data) != "data@1" {
		t.Fatalf("a got %q then %q, b got %+v; want data@1, data@2 and data@1", first, second, fromB)
	}
	if got := b.respond(t, shared); got != "data@2" {
		t.Errorf("b at 2: %q, want data@2", got)
	}
	if a.executed != 2 || b.executed != 0 {
		t.Errorf("executions: a %d, b %d; want 2 and 0", a.executed, b.executed)
	}
	// A failed execution is not shared: b executes on its own.
	if got := a.respond(t, shared); got != "<error>" {
		t.Errorf("a at 3: %q, want an error", got)
	}
	if got := b.respond(t, shared); got != "data@3" || b.executed != 1 {
		t.Errorf("b at 3: %q after %d executions; want data@3 from its own execution", got, b.executed)
	}
	// Another operation does not share a's results.
	if got := c.respond(t, shared); got != "data@1" || c.executed != 1 {
		t.Errorf("other operation: %q after %d executions; want data@1 from its own execution", got, c.executed)
	}
	if got := a.respond(t, shared); got != "<end>" {
		t.Errorf("a after its last change: %q, want the end", got)
	}

	// Results are kept for the most recent sharedResultsKept changes.
	for p := range uint64(sharedResultsKept) {
		newSubscriber("flood", 1000+p).respond(t, shared)
	}
	late := newSubscriber("op", 1)
	if got := late.respond(t, shared); got != "data@1" || late.executed != 1 {
		t.Errorf("after eviction: %q after %d executions; want data@1 from its own execution", got, late.executed)
	}
}
