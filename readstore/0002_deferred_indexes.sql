-- Secondary indexes a store in bulk-load mode (OpenFresh) has dropped and
-- builds once the load ends. Open builds any it finds, so a file left in
-- bulk-load mode by a crash is whole again when opened.
CREATE TABLE deferred_indexes (
    name TEXT PRIMARY KEY,
    sql  TEXT NOT NULL
);
