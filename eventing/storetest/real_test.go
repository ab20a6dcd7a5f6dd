package storetest_test

import (
	"os"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/ordertrail/ordertrail/eventing/storetest"
)

// TestConformanceRealEventStoreDB runs the suite against a real EventStoreDB
// (24.x) so that the suite itself is checked against the behaviour it
// claims. Every test uses fresh stream names, so a shared server is fine.
func TestConformanceRealEventStoreDB(t *testing.T) {
	conn := os.Getenv("ORDERTRAIL_TEST_EVENTSTORE")
	if conn == "" {
		t.Skip("ORDERTRAIL_TEST_EVENTSTORE is not set: set it to a connection string, e.g. " +
			"esdb://127.0.0.1:2113?tls=false, to run the conformance suite against a real EventStoreDB")
	}
	storetest.Run(t, func(t *testing.T) *esdb.Client { return storetest.NewClient(t, conn) })
}
