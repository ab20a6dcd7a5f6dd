package model

// OrderPayload is a mutation's result. Its order is resolved only when the
// client asks for it, since that waits for the read model to catch up.
type OrderPayload struct {
	OrderID  string          `json:"-"`
	Events   []*HistoryEvent `json:"events"`
	Position Position        `json:"position"`
}
