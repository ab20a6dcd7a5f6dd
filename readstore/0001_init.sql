-- Read models of the "readmodel" projection. Times are INTEGER Unix
-- nanoseconds in UTC, so (created_at, id) sorts and compares exactly.

CREATE TABLE orders (
    id                 TEXT PRIMARY KEY,
    customer_id        TEXT    NOT NULL,
    currency           TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    total              INTEGER NOT NULL,
    adjustment         INTEGER NOT NULL, -- total minus the item sum (legacy totals, corrections)
    items              TEXT    NOT NULL, -- JSON array of items
    created_at         INTEGER NOT NULL,
    confirmed_at       INTEGER,
    paid_at            INTEGER,
    shipped_at         INTEGER,
    delivered_at       INTEGER,
    cancelled_at       INTEGER,
    cancel_reason      TEXT    NOT NULL DEFAULT '',
    carrier            TEXT    NOT NULL DEFAULT '',
    tracking_reference TEXT    NOT NULL DEFAULT '',
    corrections_count  INTEGER NOT NULL DEFAULT 0,
    revision           INTEGER NOT NULL,
    last_position      INTEGER NOT NULL
);
CREATE INDEX orders_by_created ON orders (created_at, id);
CREATE INDEX orders_by_customer ON orders (customer_id, created_at, id);
CREATE INDEX orders_by_status ON orders (status, created_at, id);

CREATE TABLE order_corrections (
    order_id           TEXT    NOT NULL REFERENCES orders (id),
    revision           INTEGER NOT NULL, -- revision of the correction event
    corrected_revision INTEGER NOT NULL, -- revision of the event it corrects
    old_amount         INTEGER NOT NULL,
    new_amount         INTEGER NOT NULL,
    reason             TEXT    NOT NULL,
    at                 INTEGER NOT NULL,
    PRIMARY KEY (order_id, revision)
) WITHOUT ROWID;

CREATE TABLE customers (
    customer_id    TEXT PRIMARY KEY,
    order_count    INTEGER NOT NULL,
    open_orders    INTEGER NOT NULL,
    first_order_at INTEGER NOT NULL,
    last_order_at  INTEGER NOT NULL
);

CREATE TABLE customer_values (
    customer_id TEXT    NOT NULL REFERENCES customers (customer_id),
    currency    TEXT    NOT NULL,
    value       INTEGER NOT NULL,
    PRIMARY KEY (customer_id, currency)
) WITHOUT ROWID;

CREATE TABLE order_trends (
    bucket_kind  TEXT    NOT NULL CHECK (bucket_kind IN ('HOUR', 'DAY')),
    bucket_start INTEGER NOT NULL,
    currency     TEXT    NOT NULL,
    created      INTEGER NOT NULL,
    confirmed    INTEGER NOT NULL,
    shipped      INTEGER NOT NULL,
    cancelled    INTEGER NOT NULL,
    revenue      INTEGER NOT NULL,
    PRIMARY KEY (bucket_kind, bucket_start, currency)
) WITHOUT ROWID;

CREATE TABLE change_log (
    position    INTEGER PRIMARY KEY,
    order_id    TEXT    NOT NULL,
    customer_id TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    revision    INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    snapshot    TEXT    NOT NULL -- the order as the API shows it after the change
);
CREATE INDEX change_log_by_order ON change_log (order_id, position);
CREATE INDEX change_log_by_customer ON change_log (customer_id, position);

CREATE TABLE checkpoints (
    projection TEXT PRIMARY KEY,
    position   INTEGER NOT NULL
);

CREATE TABLE dead_letters (
    projection TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    stream     TEXT    NOT NULL,
    revision   INTEGER NOT NULL,
    event_type TEXT    NOT NULL,
    error      TEXT    NOT NULL,
    data       BLOB,
    parked_at  INTEGER NOT NULL, -- the event's RecordedAt, so rebuilds are identical
    PRIMARY KEY (projection, position)
);

CREATE TABLE projection_status (
    projection      TEXT PRIMARY KEY,
    state           TEXT    NOT NULL CHECK (state IN ('RUNNING', 'HALTED')),
    halted_position INTEGER,
    error           TEXT    NOT NULL DEFAULT ''
);
