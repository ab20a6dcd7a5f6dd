// Package storetest is the one conformance suite for the event store: it
// states, through the official client
// (github.com/EventStore/EventStore-Client-Go/v4/esdb) and nothing else, the
// behaviours of EventStoreDB 24.x that ordertrail relies on. The same suite
// runs against the embedded store on every `go test` and against a real
// EventStoreDB when ORDERTRAIL_TEST_EVENTSTORE holds a connection string, so
// a difference between the two is a failing test, not a surprise in
// production.
//
// Every test writes to streams with fresh UUID names and filters $all by
// them, so the suite can share a server with other data and other runs.
// Tests wait on subscription events and read results under deadline
// contexts, never on sleeps.
//
// Dependency rule: storetest imports only the standard library, the esdb
// client and google/uuid.
package storetest
