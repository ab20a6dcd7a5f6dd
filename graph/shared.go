package graph

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// sharedResults lets subscribers that run the same subscription operation
// (the same document, operation name and variables) share one execution
// per change. A dashboard opened by a thousand users runs one subscription
// a thousand times; without sharing, gqlgen resolves and marshals every
// field of every change once per subscriber.
//
// The first subscriber to reach a change executes the operation; the
// others wait for it and reply with its data. A result with errors or
// extensions is not shared: each subscriber then executes on its own, as
// without sharing. A subscriber behind the others (replaying from an old
// position) misses the recent results and executes on its own too.
//
// It must be the innermost response interceptor: a shared reply skips the
// interceptors inside it.
type sharedResults struct {
	mu      sync.Mutex
	results map[resultKey]*sharedResult
	order   []resultKey // ring of the keys in results, oldest at next
	next    int
}

// sharedResultsKept bounds the results kept, across operations and changes.
const sharedResultsKept = 1024

type resultKey struct {
	op  opDigest // of the document, operation name and variables
	pos uint64   // the change's position
}

// opDigest identifies an operation by a SHA-256 of its document, name and
// variables: the kept keys stay small whatever the documents' size, and no
// document can be crafted to get another operation's results.
type opDigest [sha256.Size]byte

type sharedResult struct {
	done chan struct{}   // closed once data is set
	data json.RawMessage // nil: the execution failed or may not be shared
}

// feed is one subscription operation's source of changes. The operation's
// resolver sets next; the response interceptor calls it before each
// response, so it knows which change the response is for.
type feed struct {
	op opDigest
	// next waits for the operation's next change and returns its position
	// and push, which hands the change to gqlgen for execution. It returns
	// ok false when the stream has ended; gqlgen's own execution then ends
	// the subscription.
	next func(ctx context.Context) (pos uint64, push func(), ok bool)
}

type feedKey struct{}

// attachFeed makes next the source of the operation's changes, so that its
// responses can share results, and reports whether it did: only when ctx
// carries a feed (sharedResults is installed) that has no source yet.
func attachFeed(ctx context.Context, next func(ctx context.Context) (uint64, func(), bool)) bool {
	f, _ := ctx.Value(feedKey{}).(*feed)
	if f == nil || f.next != nil {
		return false
	}
	f.next = next
	return true
}

func newSharedResults() *sharedResults {
	return &sharedResults{results: map[resultKey]*sharedResult{}, order: make([]resultKey, sharedResultsKept)}
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
	graphql.ResponseInterceptor
} = (*sharedResults)(nil)

func (*sharedResults) ExtensionName() string                   { return "SharedResults" }
func (*sharedResults) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptOperation gives every subscription operation a feed.
func (s *sharedResults) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
		return next(ctx)
	}
	vars, err := json.Marshal(oc.Variables) // map keys sorted: equal variables, equal bytes
	if err != nil {
		return next(ctx)
	}
	h := sha256.New()
	for _, part := range []string{oc.RawQuery, oc.OperationName, string(vars)} {
		fmt.Fprintf(h, "%d:%s", len(part), part) // length-prefixed: no two splits hash alike
	}
	f := &feed{}
	h.Sum(f.op[:0])
	return next(context.WithValue(ctx, feedKey{}, f))
}

// InterceptResponse answers a subscription's response from the shared
// result of its change when there is one, and executes otherwise.
func (s *sharedResults) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	f, _ := ctx.Value(feedKey{}).(*feed)
	if f == nil || f.next == nil {
		return next(ctx)
	}
	pos, push, ok := f.next(ctx)
	if !ok {
		return next(ctx)
	}
	r, owner := s.claim(resultKey{op: f.op, pos: pos})
	if !owner {
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil
		}
		if r.data != nil {
			return &graphql.Response{Data: r.data}
		}
	}
	var resp *graphql.Response
	if owner {
		defer func() { s.finish(r, resp) }() // also when execution panics
	}
	push()
	resp = next(ctx)
	return resp
}

// claim returns the result for key, and whether the caller is its owner:
// the first to ask, who must execute and finish it.
func (s *sharedResults) claim(key resultKey) (*sharedResult, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.results[key]; ok {
		return r, false
	}
	r := &sharedResult{done: make(chan struct{})}
	if old := s.order[s.next]; old != (resultKey{}) {
		delete(s.results, old)
	}
	s.order[s.next] = key
	s.next = (s.next + 1) % len(s.order)
	s.results[key] = r
	return r, true
}

// finish publishes the owner's response to the waiting subscribers.
func (s *sharedResults) finish(r *sharedResult, resp *graphql.Response) {
	if resp != nil && len(resp.Errors) == 0 && len(resp.Extensions) == 0 && resp.Data != nil {
		r.data = bytes.Clone(resp.Data) // gqlgen reuses the owner's buffer for its next response
	}
	close(r.done)
}
