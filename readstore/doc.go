// Package readstore keeps the SQLite read models of ordertrail: orders,
// customers, order trends and a change log, fed by a catch-up subscription
// to the order events.
//
// One projection, named Projection, maintains every table. Apply writes a
// batch of events and the projection checkpoint in one transaction, so
// events at or below the checkpoint are skipped on redelivery and a crash
// never leaves half a batch behind. Every effect on the aggregate tables is
// an additive delta booked by the event that caused it, so the tables do
// not depend on where batches were cut: Hash is the same for any batching.
//
// Changes committed by Apply are fanned out by a broker that owns its state
// and never blocks on a slow subscriber; Subscribe replays the change log
// and then goes live without gap or duplicate. WaitFor gives
// read-your-writes. Live lets a store rebuilt into a fresh file (OpenFresh)
// replace the serving one, moving subscriptions over by position.
//
// Dependency rule: readstore imports domain, the standard library, sqlx and
// the SQLite driver. It does not import eventing or graph; the wiring turns
// subscription envelopes into Events.
package readstore
