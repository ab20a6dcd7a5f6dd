package readstore

import (
	"context"
	"database/sql"
	"fmt"
)

// Cursor returns the opaque cursor that pages past o in the given order,
// for Relay edges.
func Cursor(o Order, by OrderBy) string {
	if by == "" {
		by = CreatedAtAsc
	}
	return encodeCursor(cursor{Version: 1, OrderBy: by, CreatedAt: o.CreatedAt.UnixNano(), ID: o.ID})
}

// LastChange returns the position of the last event applied to the read
// model (the newest change-log entry), or 0 when there is none. Unlike the
// checkpoint it never points at a scanned event that was not applied.
func (s *Store) LastChange(ctx context.Context) (uint64, error) {
	var pos sql.NullInt64
	if err := s.r.GetContext(ctx, &pos, `SELECT MAX(position) FROM change_log`); err != nil {
		return 0, fmt.Errorf("last change: %w", err)
	}
	return uint64(pos.Int64), nil
}
