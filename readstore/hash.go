package readstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"math"
)

// hashedTables lists every table a rebuild produces, with its primary key
// order. schema_migrations is left out: it records the schema, not events.
var hashedTables = []struct{ name, orderBy string }{
	{"checkpoints", "projection"},
	{"projection_status", "projection"},
	{"orders", "id"},
	{"order_corrections", "order_id, revision"},
	{"customers", "customer_id"},
	{"customer_values", "customer_id, currency"},
	{"order_trends", "bucket_kind, bucket_start, currency"},
	{"change_log", "position"},
	{"dead_letters", "projection, position"},
}

// Hash returns the hex SHA-256 of a canonical dump of every read-model
// table, read in one snapshot: two stores that applied the same events,
// in any batches, have the same hash.
func (s *Store) Hash(ctx context.Context) (string, error) {
	tx, err := s.r.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	defer tx.Rollback()
	h := sha256.New()
	for _, t := range hashedTables {
		rows, err := tx.QueryContext(ctx, "SELECT * FROM "+t.name+" ORDER BY "+t.orderBy)
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", t.name, err)
		}
		err = dumpRows(h, t.name, rows)
		rows.Close()
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", t.name, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// dumpRows writes the table name, column names and every value, each
// tagged with its type and length-prefixed, so no two dumps collide.
func dumpRows(h hash.Hash, table string, rows *sql.Rows) error {
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	field := func(tag byte, b []byte) {
		var n [9]byte
		n[0] = tag
		binary.BigEndian.PutUint64(n[1:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field('T', []byte(table))
	for _, c := range cols {
		field('C', []byte(c))
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		field('R', nil)
		for _, v := range vals {
			var num [8]byte
			switch v := v.(type) {
			case nil:
				field('N', nil)
			case int64:
				binary.BigEndian.PutUint64(num[:], uint64(v))
				field('I', num[:])
			case float64:
				binary.BigEndian.PutUint64(num[:], math.Float64bits(v))
				field('F', num[:])
			case string:
				field('S', []byte(v))
			case []byte:
				field('B', v)
			default:
				return fmt.Errorf("unexpected column type %T", v)
			}
		}
	}
	return rows.Err()
}
