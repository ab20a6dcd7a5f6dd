package readstore_test

import (
	"testing"
)

// BenchmarkApply projects about 100k events in batches of 500 into a fresh
// store per iteration and reports events/s.
func BenchmarkApply(b *testing.B) {
	events := history(99, 17000)
	for len(events) > 100_000 {
		events = events[:100_000]
	}
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		s := openStore(b, quietLoggerOptions())
		b.StartTimer()
		applyBatches(b, s, events, 500)
	}
	b.ReportMetric(float64(len(events)*b.N)/b.Elapsed().Seconds(), "events/s")
}
