package domain

import "errors"

// Error kinds. Every rule error below matches exactly one of them with
// errors.Is, so callers can map a whole family to one response.
var (
	// ErrInvalidInput is the kind of errors caused by bad command arguments.
	ErrInvalidInput = errors.New("invalid input")
	// ErrIllegalTransition is the kind of errors raised when a command does
	// not fit the order's current status.
	ErrIllegalTransition = errors.New("illegal transition")
	// ErrDuplicate is the kind of errors raised for something already done.
	ErrDuplicate = errors.New("duplicate")
)

// ruleError is a sentinel condition that also belongs to a kind.
type ruleError struct {
	msg  string
	kind error
}

func (e *ruleError) Error() string        { return e.msg }
func (e *ruleError) Is(target error) bool { return target == e.kind }

func rule(kind error, msg string) error { return &ruleError{msg: msg, kind: kind} }

// Rule violations raised by Order commands.
var (
	ErrMissingOrderID     = rule(ErrInvalidInput, "order: order ID is required")
	ErrMissingCustomer    = rule(ErrInvalidInput, "order: customer ID is required")
	ErrUnknownCurrency    = rule(ErrInvalidInput, "order: unknown ISO 4217 currency")
	ErrInvalidAmount      = rule(ErrInvalidInput, "order: invalid amount")
	ErrEmptyOrder         = rule(ErrInvalidInput, "order: an order needs at least one item")
	ErrMissingSKU         = rule(ErrInvalidInput, "order: item SKU is required")
	ErrInvalidQuantity    = rule(ErrInvalidInput, "order: quantity must be positive")
	ErrInvalidPrice       = rule(ErrInvalidInput, "order: unit price must be positive")
	ErrNonPositiveTotal   = rule(ErrInvalidInput, "order: amount must be positive")
	ErrMixedCurrencies    = rule(ErrInvalidInput, "order: amount is in a different currency than the order")
	ErrUnknownItem        = rule(ErrInvalidInput, "order: no item with that SKU")
	ErrMissingReason      = rule(ErrInvalidInput, "order: a reason is required")
	ErrMissingShipment    = rule(ErrInvalidInput, "order: carrier and tracking reference are required")
	ErrPaymentMismatch    = rule(ErrInvalidInput, "order: payment does not match the order total")
	ErrNoSuchEvent        = rule(ErrInvalidInput, "order: the corrected event does not exist or carries no amount")
	ErrUnchangedAmount    = rule(ErrInvalidInput, "order: the corrected amount equals the current amount")
	ErrAlreadyCreated     = rule(ErrIllegalTransition, "order: already created")
	ErrNotCreated         = rule(ErrIllegalTransition, "order: not created")
	ErrNotOpen            = rule(ErrIllegalTransition, "order: items can change only while the order is open")
	ErrCannotConfirm      = rule(ErrIllegalTransition, "order: only an open order can be confirmed")
	ErrCannotPay          = rule(ErrIllegalTransition, "order: only a confirmed order can be paid")
	ErrCannotShip         = rule(ErrIllegalTransition, "order: only a paid order can be shipped")
	ErrCannotDeliver      = rule(ErrIllegalTransition, "order: only a shipped order can be delivered")
	ErrCannotCancel       = rule(ErrIllegalTransition, "order: a shipped, delivered or cancelled order cannot be cancelled")
	ErrCannotCorrect      = rule(ErrIllegalTransition, "order: only a confirmed, paid, shipped or delivered order can be corrected")
	ErrDuplicateItem      = rule(ErrDuplicate, "order: an item with that SKU is already in the order")
	ErrDuplicateCommand   = rule(ErrDuplicate, "order: command already handled")
	ErrUnknownEventType   = errors.New("order: unknown event")
	ErrWrongOrderForEvent = errors.New("order: event belongs to another order")
)
