package domain

import (
	"slices"
	"sort"
)

// Snapshot is the complete state of an order after Version events, in a
// form that can be stored and loaded again. Its shape is versioned by the
// snapshot store; change it only together with that version.
type Snapshot struct {
	OrderID      string   `json:"orderId"`
	CustomerID   string   `json:"customerId"`
	Currency     string   `json:"currency"`
	Status       Status   `json:"status"`
	Lines        []Line   `json:"lines"`
	Adjustment   int64    `json:"adjustment"`
	Total        int64    `json:"total"`
	PaidAmount   int64    `json:"paidAmount"`
	CancelReason string   `json:"cancelReason,omitempty"`
	Version      int      `json:"version"`
	Handled      []string `json:"handledCommands,omitempty"`
	// FixedRevisions are the revisions of events without an amount, which
	// a correction may not name.
	FixedRevisions []uint64 `json:"fixedRevisions"`
}

// Snapshot captures the order's state, including uncommitted changes.
func (o *Order) Snapshot() Snapshot {
	handled := make([]string, 0, len(o.handled))
	for id := range o.handled {
		handled = append(handled, id)
	}
	sort.Strings(handled)
	return Snapshot{
		OrderID: o.id, CustomerID: o.customerID, Currency: o.currency,
		Status: o.status, Lines: slices.Clone(o.lines), Adjustment: o.adjustment,
		Total: o.total, PaidAmount: o.paidAmount, CancelReason: o.cancelReason,
		Version: o.version, Handled: handled, FixedRevisions: slices.Clone(o.fixedRevisions),
	}
}

// FromSnapshot rebuilds an order from a snapshot and the events stored
// after it. Like Rehydrate, it raises nothing.
func FromSnapshot(s Snapshot, tail []Recorded) (*Order, error) {
	o := New(s.OrderID)
	o.customerID, o.currency, o.status = s.CustomerID, s.Currency, s.Status
	o.lines = slices.Clone(s.Lines)
	o.adjustment, o.total, o.paidAmount = s.Adjustment, s.Total, s.PaidAmount
	o.cancelReason, o.version = s.CancelReason, s.Version
	o.fixedRevisions = slices.Clone(s.FixedRevisions)
	for _, id := range s.Handled {
		o.handled[id] = true
	}
	if err := o.replay(tail); err != nil {
		return nil, err
	}
	return o, nil
}
