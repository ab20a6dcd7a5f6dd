package model

// OrderPayload is a mutation's result. Its order is resolved only when the
// client asks for it, since that waits for the read model to catch up; its
// events are read back from the store when the command's result lacked
// their stored positions and times (Complete false).
type OrderPayload struct {
	OrderID       string          `json:"-"`
	Events        []*HistoryEvent `json:"events"`
	Position      Position        `json:"position"`
	FirstRevision uint64          `json:"-"`
	Complete      bool            `json:"-"`
}
