package graph

import (
	"context"
	"errors"
	"log/slog"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ordertrail/ordertrail/domain"
	"github.com/ordertrail/ordertrail/eventing"
	"github.com/ordertrail/ordertrail/graph/model"
	"github.com/ordertrail/ordertrail/readstore"
)

// Error codes put in a GraphQL error's extensions.code.
const (
	CodeInvalidInput      = "INVALID_INPUT"
	CodeNotFound          = "NOT_FOUND"
	CodeConflict          = "CONFLICT"
	CodeIllegalTransition = "ILLEGAL_TRANSITION"
	CodeStaleRead         = "STALE_READ"
	CodeUnauthenticated   = "UNAUTHENTICATED"
	CodeUnavailable       = "UNAVAILABLE"
	CodeInternal          = "INTERNAL"
)

// ErrUnauthenticated is returned when a mutation or subscription arrives
// without a valid token while auth is on.
var ErrUnauthenticated = errors.New("a valid bearer token is required")

// inputError is a bad argument caught before any command ran.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

func badInput(msg string) error { return &inputError{msg: msg} }

type requestIDKey struct{}

// WithRequestID returns a context that carries the request ID used in logs
// and error responses.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request ID carried by ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// codeOf maps a known error to its extensions.code; "" means unknown.
func codeOf(err error) string {
	var input *inputError
	switch {
	case errors.As(err, &input), errors.Is(err, domain.ErrInvalidInput),
		errors.Is(err, readstore.ErrBadCursor), errors.Is(err, model.ErrInvalidScalar):
		return CodeInvalidInput
	case errors.Is(err, domain.ErrIllegalTransition):
		return CodeIllegalTransition
	case errors.Is(err, eventing.ErrNotFound), errors.Is(err, readstore.ErrNotFound):
		return CodeNotFound
	case errors.Is(err, eventing.ErrConflict), errors.Is(err, domain.ErrDuplicate):
		return CodeConflict
	case errors.Is(err, readstore.ErrStale):
		return CodeStaleRead
	case errors.Is(err, ErrUnauthenticated):
		return CodeUnauthenticated
	case errors.Is(err, eventing.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return CodeUnavailable
	}
	return ""
}

// ErrorPresenter turns resolver errors into GraphQL errors: known errors
// keep their message and get an extensions.code; anything else is logged
// with the request ID and answered with a generic message, so no SQL,
// stack trace or file path ever reaches a client.
func ErrorPresenter(logger *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gerr := graphql.DefaultErrorPresenter(ctx, err)
		if gerr.Extensions == nil {
			gerr.Extensions = map[string]any{}
		}
		reqID := RequestID(ctx)
		if reqID != "" {
			gerr.Extensions["requestId"] = reqID
		}
		if _, ok := gerr.Extensions["code"]; ok && gerr.Err == nil {
			return gerr // parse, validation and limit errors from gqlgen
		}
		var already *gqlerror.Error
		if errors.As(err, &already) && already.Err == nil && already.Extensions["code"] != nil {
			return gerr
		}
		if code := codeOf(err); code != "" {
			gerr.Extensions["code"] = code
			return gerr
		}
		logger.ErrorContext(ctx, "internal error", "requestId", reqID, "path", gerr.Path.String(), "err", err)
		gerr.Message = "internal server error"
		gerr.Extensions["code"] = CodeInternal
		return gerr
	}
}

// RecoverFunc turns a resolver panic into an internal error and logs it.
func RecoverFunc(logger *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "resolver panic", "requestId", RequestID(ctx), "panic", p)
		return errors.New("internal server error")
	}
}
