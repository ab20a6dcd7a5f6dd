// Package embedded runs an in-process EventStoreDB-compatible gRPC server
// backed by SQLite, so the official esdb Go client can be used in tests, demos
// and single-node deployments without a real EventStoreDB.
//
// The server speaks the client protocol of EventStoreDB 24.10 as the esdb v4
// client uses it: server features, gossip, appends with optimistic
// concurrency, stream and $all reads, and catch-up subscriptions with
// server-side filters. Persistent subscriptions, projections and the other
// management services answer codes.Unimplemented.
//
// Storage is one SQLite file (Dir/events.db) in WAL mode with
// synchronous=FULL. A single writer goroutine group-commits concurrent appends
// in one transaction and acknowledges them only after the commit; global
// positions are the events table's INTEGER PRIMARY KEY, assigned in commit
// order, with commit == prepare. Readers use a separate read-only pool and
// never read past the last committed position published in memory.
//
// Live subscriptions read at their own pace from an in-memory tail of recent
// commits or from SQLite, woken by a broadcast on each commit, so a slow
// consumer never blocks writers or other subscribers.
//
// Known limits: no persistent subscriptions, projections, link resolution,
// ACLs or scavenging ($all keeps events of deleted streams, as the real
// server does until a scavenge); $maxCount, $maxAge and $tb apply to stream
// reads only, not to subscriptions; de-duplication of Any/StreamExists
// retries covers the last 100,000 event ids and does not survive a restart;
// the stream index is held in memory.
//
// Dependency rule: this package imports only the standard library, the esdb
// client protos, grpc and protobuf, google/uuid, go-sqlite3 and golang.org/x/sys; it does
// not import other ordertrail packages.
package embedded
