// Package eventing is the application's door to the event store: event
// serialization and upcasting, the order repository with snapshots and
// retry-safe commands, history and time travel, and catch-up subscriptions.
// It talks to EventStoreDB only through the official client
// (github.com/EventStore/EventStore-Client-Go/v4/esdb); the embedded store
// in eventing/embedded speaks the same protocol.
//
// Dependency rule: eventing imports domain and nothing else from this
// module except its own subpackages.
package eventing
